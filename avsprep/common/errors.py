"""Domain exceptions, raised by the modules and converted once in ``cli.py``.

``AvsError`` (and subclasses) become exit 1 with a one-line message; messages
name the file (and clip/frame) and say what to do.
"""


class AvsError(Exception):
    """A problem with the user's data or files: exit 1."""


class DataError(AvsError):
    """Input data is missing, unreadable or inconsistent (names the file)."""


class OutputExistsError(AvsError):
    """The output path is not empty and neither --overwrite nor --resume was given."""


class IntegrityError(AvsError):
    """A shard, manifest or checkpoint failed its hash, count or schema check."""
