"""The ``avstrain`` command line (train, evaluate, predict). Being built."""

import click

from avsprep import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="avstrain")
def cli():
    """Train and evaluate the AVSBench TPAVI model (with crop losses) from avsprep shards."""
