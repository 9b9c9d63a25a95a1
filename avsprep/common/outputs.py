"""Writing outputs safely, for every command of both CLIs (docs/RELIABILITY.md, issue 23).

Three rules, one place:

- **One writer per output folder.** ``output_lock(folder)`` creates ``folder/.avs-lock`` (holder's
  pid, host, command line, start time) atomically; a second writer is refused in one line naming
  the holder while that process lives, and takes the lock over (with a note) when it is dead.
  The lock is removed when the block ends, on errors and Ctrl-C too.
- **Write failures are one line.** A full disk, a quota, a read-only or forbidden location
  (``ENOSPC``, ``EDQUOT``, ``EROFS``, ``EACCES``, ``EPERM``) becomes ``OutputWriteError``: the path,
  the reason, what to do, and what was kept.
- **No partial output.** ``guarded_writes(targets)`` notes what exists under each target first;
  when the block fails, everything it created there is removed (all or nothing), unless the
  command has its own resume rule (``keep=``: build, extract, train), which the message states.

``writing(folder, what=...)`` is all three in one line, for a command's output folder::

    with writing(out, what="OUT"):
        ...
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shlex
import socket
import sys
import time
from pathlib import Path
from typing import Iterable, Optional

from avsprep.common.errors import AvsError, OutputExistsError

log = logging.getLogger("avsprep")

LOCK_NAME = ".avs-lock"

# errno -> (reason, fix); the fix is completed with the output's name
WRITE_ERRNOS = {
    errno.ENOSPC: ("No space left on device", "free space or choose another {what}"),
    errno.EDQUOT: ("disk quota exceeded", "free space or choose another {what}"),
    errno.EFBIG: ("file too large for this file system", "choose another {what}"),
    errno.EROFS: ("read-only file system", "choose a writable {what}"),
    errno.EACCES: ("permission denied", "choose a writable {what} or fix its permissions"),
    errno.EPERM: ("operation not permitted", "choose a writable {what} or fix its permissions"),
}
# HDF5 reports its own I/O failures as text only ("errno = 28, error message = 'No space left ...'")
_TEXT_ERRNOS = {"errno = 28": errno.ENOSPC, "No space left": errno.ENOSPC, "errno = 30": errno.EROFS,
                "Read-only file system": errno.EROFS, "errno = 13": errno.EACCES}


class OutputWriteError(AvsError):
    """An output could not be written (disk full, read-only, permissions): exit 1, one line."""


class OutputLockedError(AvsError):
    """Another live process is writing the same output folder."""


# --------------------------------------------------------------------------- write failures

def write_errno(exc: BaseException) -> Optional[int]:
    """The errno of a write failure (disk full, read-only, permission), else None."""
    code = getattr(exc, "errno", None)
    if code in WRITE_ERRNOS:
        return code
    if isinstance(exc, (OSError, RuntimeError)):
        text = str(exc)
        return next((c for marker, c in _TEXT_ERRNOS.items() if marker in text), None)
    return None


def write_message(exc: BaseException, where, what: str = "output folder", rule: str = "",
                  noun: str = "") -> str:
    """``PATH: cannot write[ NOUN]: REASON; FIX[, then RULE]`` for a write failure ``exc``."""
    code = write_errno(exc)
    reason, fix = WRITE_ERRNOS.get(code, (getattr(exc, "strerror", None) or str(exc), "check {what}"))
    path = getattr(exc, "filename", None) or where
    text = f"{path}: cannot write{' ' + noun if noun else ''}: {reason}; {fix.format(what=what)}"
    return text + (f", then {rule}" if rule else "")


def os_error_message(exc: OSError) -> str:
    """The last resort for a write failure no command guarded: the path, the reason, the fix."""
    reason, fix = WRITE_ERRNOS[write_errno(exc)]
    return f"{exc.filename or 'a file'}: {reason}; {fix.format(what='location')}, then rerun"


# --------------------------------------------------------------------------- no partial output

def _snapshot(target: Path) -> Optional[set]:
    """What exists at ``target`` now: None when nothing, else the set of paths (a file: itself)."""
    if not target.exists():
        return None
    if not target.is_dir():
        return {target}
    return {target, *target.rglob("*")}


def _rollback(target: Path, before: Optional[set]) -> int:
    """Remove what was created under ``target`` since ``before``; returns the files removed."""
    removed = 0
    if not target.exists() and not target.is_symlink():
        return 0
    before = before or set()
    if not target.is_dir():
        if target not in before:
            with contextlib.suppress(OSError):
                target.unlink()
                removed += 1
        return removed
    new = [p for p in target.rglob("*") if p not in before]
    for p in sorted(new, key=lambda q: len(q.parts), reverse=True):  # files and sub-folders, deepest first
        with contextlib.suppress(OSError):
            if p.is_dir() and not p.is_symlink():
                p.rmdir()  # only when empty: a folder that held files before keeps them
            else:
                p.unlink()
                removed += 1
    if target not in before:
        with contextlib.suppress(OSError):
            target.rmdir()
    return removed


@contextlib.contextmanager
def guarded_writes(targets: Iterable, what: str = "output folder", keep: Optional[str] = None,
                   noun: str = ""):
    """Run the block; if it fails, remove what it created under ``targets`` (files or folders)
    and turn a write failure into ``OutputWriteError``.

    ``keep``: the command's own resume rule (e.g. ``"rerun with --resume (finished shards are
    kept)"``); then nothing is removed and the message says the rule. ``SystemExit`` (a command's
    normal exit code) is not a failure.
    """
    targets = [Path(t) for t in targets]
    before = {t: _snapshot(t) for t in targets} if keep is None else {}
    try:
        yield
    except (Exception, KeyboardInterrupt) as exc:
        if keep is None:
            removed = sum(_rollback(t, before[t]) for t in targets)
            rule = ("rerun (nothing was kept" + (f": the {removed} file(s) written were removed)"
                                                 if removed else ")"))
        else:
            rule = keep
        if write_errno(exc) is not None and not isinstance(exc, AvsError):
            raise OutputWriteError(write_message(exc, targets[0] if targets else "", what, rule, noun)) from exc
        raise


# --------------------------------------------------------------------------- one writer per folder

def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except (OverflowError, ValueError):
        return False
    return True


def read_lock(lock: Path) -> Optional[dict]:
    """The holder recorded in a lock file, or None when it cannot be read."""
    try:
        doc = json.loads(lock.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("pid"), int) else None


def _holder_text(h: dict) -> str:
    return (f"{h.get('command', '?')!r} (pid {h['pid']} on {h.get('host', '?')}, "
            f"started {h.get('started', '?')})")


def _stale(h: Optional[dict]) -> bool:
    """A lock nobody holds: unreadable, or its pid is dead on this host (another host: assume alive)."""
    if h is None:
        return True
    return h.get("host") == socket.gethostname() and not _alive(h["pid"])


def command_line() -> str:
    """This process's command as typed (``python -m avsprep`` shown as ``avsprep``)."""
    argv = sys.argv or ["?"]
    prog = Path(argv[0]).parent.name if argv[0].endswith("__main__.py") else Path(argv[0]).name
    return shlex.join([prog, *argv[1:]])


def _acquire(lock: Path, what: str) -> None:
    me = {"pid": os.getpid(), "host": socket.gethostname(), "command": command_line(),
          "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    for old in lock.parent.glob(f"{LOCK_NAME}.tmp-*"):  # left by a process killed while taking the lock
        pid = old.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            with contextlib.suppress(OSError):
                old.unlink()
    tmp = lock.with_name(f"{LOCK_NAME}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(me) + "\n", encoding="utf-8")
    try:
        for _ in range(5):
            try:
                os.link(tmp, lock)  # atomic, fails if a lock exists, and never shows half a file
                return
            except FileExistsError:
                pass
            holder = read_lock(lock)
            if holder is None and lock.exists():  # being written by a process still starting? look again
                time.sleep(0.05)
                holder = read_lock(lock)
            if not _stale(holder):
                raise OutputLockedError(
                    f"{lock.parent} is being written by {_holder_text(holder)}; wait for it to finish or "
                    f"choose another {what} (if that process is gone, remove {lock})")
            log.warning("note: %s: taking over the lock of %s, which is no longer running",
                        lock.parent, _holder_text(holder) if holder else "an unreadable lock file")
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()
        raise OutputLockedError(f"{lock}: could not take the lock (it keeps changing hands); retry")
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


@contextlib.contextmanager
def output_lock(folder, what: str = "output folder"):
    """Hold ``folder/.avs-lock`` for the block (the folder is created if needed, and removed
    again at the end if this created it and it is still empty)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputExistsError(f"{folder} exists and is not a folder; choose another {what}")
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / LOCK_NAME
    _acquire(lock, what)
    try:
        yield lock
    finally:
        if (read_lock(lock) or {}).get("pid") == os.getpid():
            with contextlib.suppress(OSError):
                lock.unlink()
        if created:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only when the run left nothing in it


def has_entries(folder) -> bool:
    """True when ``folder`` holds anything besides a lock (the emptiness test of ``--overwrite``)."""
    folder = Path(folder)
    return folder.is_dir() and any(p.name != LOCK_NAME and not p.name.startswith(f"{LOCK_NAME}.tmp-")
                                   for p in folder.iterdir())


@contextlib.contextmanager
def writing(folder, what: str = "output folder", keep: Optional[str] = None, lock: bool = True,
            also: Iterable = (), noun: str = ""):
    """A command's output folder in one line: the lock (unless ``lock=False``), and
    ``guarded_writes`` over the folder and ``also`` (more files or folders it writes)."""
    with guarded_writes([folder, *also], what=what, keep=keep, noun=noun):
        with (output_lock(folder, what) if lock else contextlib.nullcontext()):
            yield Path(folder)


# --------------------------------------------------------------------------- outputs vs inputs

def _same(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_new_file(path, inputs: Iterable = (), overwrite: bool = False, what: str = "output file") -> Path:
    """Before any work: refuse writing ``path`` over one of the run's ``inputs`` (an input file, or
    an existing file inside an input folder; ``--overwrite`` does not change that), over an
    existing file without ``overwrite``, or where no file can be made (a file in the way, a
    read-only folder). Its folder is created when missing."""
    path = Path(path)
    for inp in map(Path, inputs):
        inside_input = inp.is_dir() and path.exists() and path.resolve().is_relative_to(inp.resolve())
        if _same(path, inp) or inside_input:
            raise OutputExistsError(f"{path} is an input of this run ({inp}); choose another {what}")
    if path.is_dir():
        raise OutputExistsError(f"{path} is a folder; give a file name for the {what}")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} exists; use --overwrite to replace it")
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputExistsError(f"{parent} is a file, not a folder; choose another {what}") from None
    except OSError as exc:
        raise OutputWriteError(write_message(exc, parent, what, "rerun")) from exc
    if not os.access(parent, os.W_OK):
        raise OutputWriteError(f"{parent}: cannot write: permission denied; choose a writable {what}")
    return path
