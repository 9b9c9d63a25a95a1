"""Shared CLI pieces for both tools: option decorators, error conversion, progress.

Conventions (docs/architecture.md, conventions): exit 0 on success, 1 on data errors (or
warnings under ``--strict``), 2 on usage errors; ``--json`` prints exactly one
JSON document on stdout, logs and progress go to stderr; progress bars are off
under ``--quiet`` or when stderr is not a terminal.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from pathlib import Path
from typing import Iterable, Optional

import click

from avsprep.common.errors import AvsError, OutputExistsError
from avsprep.common.outputs import has_entries, os_error_message, write_errno

log = logging.getLogger("avsprep")


# --------------------------------------------------------------------------- options

def json_option(f):
    return click.option("--json", "as_json", is_flag=True,
                        help="Print one JSON document on stdout and nothing else.")(f)


def quiet_option(f):
    return click.option("--quiet", "-q", is_flag=True,
                        help="No progress bars or info logs (errors still go to stderr).")(f)


def strict_option(f):
    return click.option("--strict", is_flag=True,
                        help="Treat warnings as errors (exit 1).")(f)


def overwrite_option(f):
    return click.option("--overwrite", is_flag=True,
                        help="Replace a non-empty output instead of refusing.")(f)


# --------------------------------------------------------------------------- errors

def handle_errors(f):
    """Turn domain exceptions into one-line ``Error: ...`` messages with exit 1; a write failure
    (disk full, read-only, permission) that no command guarded (``common.outputs``) too."""

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        try:
            return f(*args, **kwargs)
        except AvsError as exc:
            raise click.ClickException(str(exc)) from exc
        except OSError as exc:
            if write_errno(exc) is None:
                raise
            raise click.ClickException(os_error_message(exc)) from exc
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            sys.exit(130)

    return wrapper


def check_output_dir(path: os.PathLike | str, overwrite: bool = False,
                     resume: bool = False, what: str = "OUTPUT") -> Path:
    """Refuse a non-empty output directory unless ``--overwrite`` / ``--resume``."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputExistsError(f"{path} exists and is not a directory; choose another {what}")
    if has_entries(path) and not (overwrite or resume):
        hint = "use --overwrite" + (" or --resume" if what == "SHARDS" else "")
        raise OutputExistsError(f"{what} {path} is not empty; {hint}")
    return path


# --------------------------------------------------------------------------- output

def echo_json(doc) -> None:
    """The one JSON document of a ``--json`` run, on stdout."""
    click.echo(json.dumps(doc, indent=2, sort_keys=False, default=_json_default))


def echo_result(summary: dict, as_json: bool) -> None:
    """A command's result: the whole ``summary`` as the JSON document with ``--json``, else its
    ``"text"``."""
    if as_json:
        echo_json(summary)
    else:
        click.echo(summary["text"])


def _json_default(o):
    try:
        import numpy as np
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def setup_logging(quiet: bool = False, verbose: bool = False) -> None:
    """Logs go to stderr; ``--quiet`` keeps only warnings and errors."""
    level = logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO)
    root = logging.getLogger()
    if not any(getattr(h, "_avs", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler._avs = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level)


# --------------------------------------------------------------------------- progress

class NullBar:
    """A progress bar that does nothing (``--quiet`` or stderr not a terminal)."""

    def __init__(self, iterable: Optional[Iterable] = None, **_):
        self.iterable = iterable

    def __iter__(self):
        return iter(self.iterable if self.iterable is not None else ())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, *a, **k) -> None:
        pass

    def set_description(self, *a, **k) -> None:
        pass

    def close(self) -> None:
        pass


def progress(iterable: Optional[Iterable] = None, *, quiet: bool = False, **kwargs):
    """tqdm on stderr when it is a terminal and not ``quiet``; else a ``NullBar``.

    Callers never branch on whether progress is shown.
    """
    if quiet or not sys.stderr.isatty() or os.environ.get("AVS_NO_PROGRESS"):
        return NullBar(iterable, **kwargs)
    from tqdm.auto import tqdm

    kwargs.setdefault("file", sys.stderr)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kwargs)
