"""avstrain: train and evaluate the AVSBench TPAVI model with crop losses from avsprep shards."""

from avsprep import __version__  # one version for both packages

__all__ = ["__version__"]
