"""Atomic file writes (temporary name in the same folder, flush, fsync, rename) and file hashing.

A killed process never leaves a file under its final name that looks finished.
Temporary files are named ``.{name}.tmp-{pid}`` so readers and globs skip them.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path


def tmp_path_for(path: os.PathLike | str) -> Path:
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def fsync_dir(directory: os.PathLike | str) -> None:
    """Make a rename in ``directory`` durable (no-op where unsupported)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def commit(tmp: os.PathLike | str, final: os.PathLike | str) -> None:
    """fsync ``tmp`` and rename it to ``final``."""
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, final)
    fsync_dir(Path(final).parent)


@contextlib.contextmanager
def atomic_write(path: os.PathLike | str, mode: str = "w", **kwargs):
    """``with atomic_write(p, "w") as fh: ...`` writes ``p`` all or nothing."""
    path = Path(path)
    tmp = tmp_path_for(path)
    try:
        with open(tmp, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as exc:
        with contextlib.suppress(OSError):  # absent, or a read-only folder that never held it
            os.unlink(tmp)
        _rename_error(exc, tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _rename_error(exc: OSError, tmp: Path, path: Path):
    """Re-raise ``exc`` naming the file the user asked for, not its temporary name."""
    if exc.errno is not None and (exc.filename is None or os.fspath(exc.filename) == os.fspath(tmp)):
        raise OSError(exc.errno, exc.strerror, str(path)) from exc
    raise exc


def write_new(path: os.PathLike | str, data: bytes) -> bool:
    """Create ``path`` with ``data`` unless it exists (never replaces a file). True when written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path_for(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.link(tmp, path)  # fails if path exists, atomically
    except FileExistsError:
        return False
    except OSError as exc:
        _rename_error(exc, tmp, path)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    fsync_dir(path.parent)
    return True


def write_bytes(path: os.PathLike | str, data: bytes) -> None:
    with atomic_write(path, "wb") as fh:
        fh.write(data)


def write_text(path: os.PathLike | str, text: str) -> None:
    with atomic_write(path, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(text)


def file_sha256(path: os.PathLike | str, block: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in ``block``-byte chunks (shards, tables, weight files)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(block), b""):
            digest.update(chunk)
    return digest.hexdigest()
