"""Fault-injection helpers for ``avsprep build``: run, kill and resume builds, check that nothing
looks finished when it is not, fill a disk, damage a clip's files.

Shared by tests/system/test_faults_build.py and tools/robustness.py (which runs many more trials).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from avsprep.datasets.avsbench import AVSBenchLayout

ENV = dict(os.environ, OMP_NUM_THREADS="1", AVS_NO_PROGRESS="1", PYTHONUNBUFFERED="1")


def build_argv(table, root, out, *extra) -> list[str]:
    return [sys.executable, "-m", "avsprep", "build", str(table), "--root", str(root), "-o", str(out),
            "--quiet", *map(str, extra)]


def run_build(table, root, out, *extra, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run(build_argv(table, root, out, *extra), env=ENV, capture_output=True, text=True,
                          timeout=timeout)


def tree_bytes(folder: Path) -> dict[str, str]:
    """relative path -> sha256 of every file under ``folder`` (temp files included, so leftovers show);
    verified.json binds inodes and ctimes, so its bytes differ between folders by design."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "verified.json"}


def finished_looking_problems(out: Path) -> tuple[list[str], dict]:
    """Everything under ``out`` that claims to be finished but is not; plus what was there.

    A build's claims of completion are the manifest and a shard's ``.sha256``
    sidecar. Without a finished build, readers must refuse the folder.
    """
    from avsprep.common.errors import AvsError
    from avsprep.common.atomic import file_sha256
    from avsprep.shards import ShardSet, check_shard_file, verify_shards

    problems = []
    state = {"manifest": (out / "manifest.json").exists(), "shards_claimed": 0, "shards_unclaimed": 0,
             "tmp_files": 0}
    if not out.exists():
        return problems, state
    for p in sorted(out.rglob("*")):
        if not p.is_file():
            continue
        if ".tmp-" in p.name:
            state["tmp_files"] += 1
            if not p.name.startswith("."):
                problems.append(f"{p}: temporary file without the leading dot (globs would see it)")
        elif p.name.endswith(".h5"):
            side = p.with_name(p.name + ".sha256")
            if side.exists():
                state["shards_claimed"] += 1
                if side.read_text().strip() != file_sha256(p):
                    problems.append(f"{p}: sidecar sha256 does not match the shard")
                elif check_shard_file(p):
                    problems.append(f"{p}: claimed finished but fails its check")
            else:
                state["shards_unclaimed"] += 1
                if check_shard_file(p):  # under the final name it must at least be a whole shard
                    problems.append(f"{p}: a broken shard under its final name")
    errors = [f for f in verify_shards(out) if f.severity == "error"]
    if state["manifest"]:  # written last: the kill came after the build had finished its work
        if errors:
            problems.append(f"manifest.json present but verify fails: {errors[0].format()}")
    else:
        if not errors:
            problems.append("verify_shards accepts a folder without a manifest")
        try:
            ShardSet(out)
            problems.append("ShardSet opened a folder without a manifest")
        except AvsError:
            pass
    return problems, state


def kill_trial(table, root, out: Path, delay: float, extra=(), resume_extra=()) -> dict:
    """Start a build, SIGKILL it (whole process group) after ``delay`` s, check, then ``--resume``."""
    proc = subprocess.Popen(build_argv(table, root, out, *extra), env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    t0 = time.monotonic()
    while proc.poll() is None and time.monotonic() - t0 < delay:
        time.sleep(0.01)
    completed = proc.poll() == 0
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    problems, state = finished_looking_problems(out)
    resumed = run_build(table, root, out, *extra, *resume_extra, "--resume")
    return {"delay": round(delay, 3), "completed_before_kill": completed, "problems": problems,
            "resume_rc": resumed.returncode, "resume_stderr": resumed.stderr[-2000:], **state}


def hostile_pickle(marker: Path) -> bytes:
    """A pickle whose ``__reduce__`` would create ``marker`` when loaded unsafely."""
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    return pickle.dumps(Evil())


# ----------------------------------------------------------------------------- full disk

@contextlib.contextmanager
def small_tmpfs(path: Path, size: str):
    """A real size-capped filesystem at ``path`` (needs root and mount); yields False if unavailable."""
    path.mkdir(parents=True, exist_ok=True)
    try:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                           capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        r = None
    if r is None or r.returncode != 0:
        yield False
        return
    try:
        yield True
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=20)


def check_disk_full_outcome(rc: int, stderr: str, out: Path) -> None:
    """One-line error (exit 1, no traceback) and nothing finished-looking left."""
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert rc == 1, f"exit {rc}: {stderr[-1500:]}"
    assert lines and lines[-1].startswith("Error:"), stderr[-1500:]
    assert "space" in lines[-1].lower() or "ENOSPC" in lines[-1], lines[-1]
    problems, state = finished_looking_problems(out)
    assert problems == [] and not state["manifest"]
    assert state["tmp_files"] == 0, "temporary files left behind after a failed build"


# ----------------------------------------------------------------------------- bad input files

def first_test_clip(root: Path):
    """(layout, the first clip of the test split) of an S4 root."""
    layout = AVSBenchLayout.from_root(root)
    return layout, layout.clips(["test"])[0]


def corrupt(root: Path, kind: str, marker: Path) -> tuple[str, Path]:
    """Damage one file of the first test clip; returns (clip name, damaged file)."""
    layout, clip = first_test_clip(root)
    if kind == "frame-truncated":
        p = Path(layout.frame_path(clip, 3))
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 3])
    elif kind == "frame-not-png":
        p = Path(layout.frame_path(clip, 1))
        p.write_bytes(os.urandom(2000))
    elif kind == "mask-truncated":
        p = Path(layout.mask_path(clip, 1))
        p.write_bytes(p.read_bytes()[:40])
    elif kind == "pickle-garbage":
        p = Path(layout.logmel_path(clip))
        p.write_bytes(b"\x80\x04\x95garbage" + os.urandom(300))
    elif kind == "pickle-hostile":
        p = Path(layout.logmel_path(clip))
        p.write_bytes(hostile_pickle(marker))
    elif kind == "wav-truncated":  # no pickle, so the wav is the audio source
        Path(layout.logmel_path(clip)).unlink()
        p = Path(layout.wav_path(clip))
        p.write_bytes(p.read_bytes()[:30])
    else:  # pragma: no cover
        raise ValueError(kind)
    return clip.name, p


BAD_KINDS = ["frame-truncated", "frame-not-png", "mask-truncated", "pickle-garbage", "pickle-hostile",
             "wav-truncated"]


# ----------------------------------------------------------------------------- file-system faults (issue 23)

class _FullFile:
    """A file object whose writes fail with ENOSPC (the disk filled up under it)."""

    def __init__(self, fh):
        self._fh = fh

    def write(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name):
        return getattr(self._fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._fh.close()
        return False

    def __iter__(self):
        return iter(self._fh)


@contextlib.contextmanager
def disk_full(after: int = 0, match: str = "*"):
    """In this process, the disk is full for every file written through ``avsprep.common.atomic``
    (every writer but HDF5's and extract's frames) once ``after`` files matching ``match`` were
    written: the next one's first write raises ``OSError(ENOSPC)``. Yields the list of paths opened."""
    import fnmatch

    from avsprep.common import atomic

    opened: list[str] = []
    real_open = open

    def fake_open(file, mode="r", *args, **kwargs):
        fh = real_open(file, mode, *args, **kwargs)
        final = Path(file).name.split(".tmp-")[0].lstrip(".")
        if any(c in mode for c in "wax+") and fnmatch.fnmatch(final, match):
            opened.append(str(file))
            if len(opened) > after:
                return _FullFile(fh)
        return fh

    atomic.open = fake_open  # module global shadows the builtin inside atomic.py
    try:
        yield opened
    finally:
        del atomic.open


def can_mount() -> bool:
    return os.geteuid() == 0 and sys.platform.startswith("linux")


@contextlib.contextmanager
def read_only_dir(path: Path):
    """``path`` as an empty read-only folder: a tmpfs remounted read-only where root can mount (root
    ignores file modes), else ``chmod 0o555``. Yields how (``"ro-mount"``/``"chmod"``), or None when
    neither can make it read-only (root without mount)."""
    path.mkdir(parents=True, exist_ok=True)
    if can_mount():
        ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(path)],
                            capture_output=True, timeout=20).returncode == 0
        try:
            yield "ro-mount" if ok else None
        finally:
            if ok:
                subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=20)
        return
    path.chmod(0o555)
    try:
        yield "chmod"
    finally:
        path.chmod(0o755)


def invoke(cli, args: list) -> tuple[int, str]:
    """Run a Click command in this process: (exit code, stderr with any traceback appended)."""
    import traceback

    from click.testing import CliRunner

    res = CliRunner().invoke(cli, [str(a) for a in args])
    err = res.stderr
    if res.exc_info and not isinstance(res.exc_info[1], SystemExit):
        err += "Traceback (most recent call last):\n" + "".join(traceback.format_exception(res.exc_info[1]))
    return res.exit_code, err


def one_line_error(rc: int, stderr: str, *needles: str) -> str:
    """Exit 1, no traceback, the last stderr line an ``Error:`` naming each of ``needles``."""
    assert "Traceback" not in stderr, stderr[-3000:]
    assert rc == 1, f"exit {rc}: {stderr[-1500:]}"
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("Error:"), stderr[-1500:]
    for n in needles:
        assert n in lines[-1], (n, lines[-1])
    return lines[-1]


def leftovers(folder: Path) -> list[str]:
    """Temporary files and locks left under ``folder`` (none may outlive a command)."""
    if not folder.exists():
        return []
    return sorted(str(p) for p in folder.rglob("*") if ".tmp-" in p.name or p.name == ".avs-lock")


def hold_lock(folder: Path, pid: int, command: str = "avsprep build X -o OUT") -> Path:
    """Write ``folder/.avs-lock`` as the process ``pid`` of this host would hold it."""
    import json
    import socket

    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / ".avs-lock"
    lock.write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "command": command,
                                "started": "2026-01-01T00:00:00"}) + "\n")
    return lock


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


# ----------------------------------------------------------------------------- file-system cases (robustness)

def cli_argv(tool: str, *args) -> list[str]:
    return [sys.executable, "-m", tool, *map(str, args)]


def run_cli(tool: str, *args, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run(cli_argv(tool, *args), env=ENV, capture_output=True, text=True, timeout=timeout)


def fs_commands(inputs: dict) -> dict:
    """name -> (tool, argv with OUT where the output goes, whether the command keeps its partial output
    (its own resume rule: build, extract, train)). ``inputs``: root, table, shards, ckpt, videos."""
    r, t, s, c = inputs["root"], inputs["table"], inputs["shards"], inputs["ckpt"]
    tiny = ["--preset", "demo", "--device", "cpu", "--batch-size", "2", "--set", "channel=8",
            "--set", "image_size=64", "--set", "workers=0", "--set", "max_steps_per_epoch=1",
            "--set", "max_eval_clips=1", "--epochs", "1", "--quiet"]
    return {
        "avsprep import": ("avsprep", ["import", "--root", r, "-o", "OUT/boxes.csv", "-q"], False),
        "avsprep export": ("avsprep", ["export", t, "OUT/export"], False),
        "avsprep propose": ("avsprep", ["propose", "--root", r, "-a", "OUT/ann", "-q"], False),
        "avsprep demo": ("avsprep", ["demo", "OUT/demo", "--clips", "6", "-q"], False),
        "avsprep build": ("avsprep", ["build", t, "--root", r, "-o", "OUT/shards", "--clips-per-shard", "1",
                                      "-q"], True),
        "avsprep extract": ("avsprep", ["extract", inputs["videos"], "-o", "OUT/release", "-q"], True),
        "avsprep inspect --png": ("avsprep", ["inspect", s, "--png", "OUT/sheet.png"], False),
        "avstrain train": ("avstrain", ["train", s, "-o", "OUT/run", *tiny], True),
        "avstrain evaluate --per-clip": ("avstrain", ["evaluate", c, s, "--per-clip", "OUT/clips.csv",
                                                      "--device", "cpu", "--quiet"], False),
        "avstrain predict": ("avstrain", ["predict", c, s, "-o", "OUT/masks", "--device", "cpu", "--quiet",
                                          "--overlay"], False),
        "avstrain report": ("avstrain", ["report", c, s, "-o", "OUT/report", "--device", "cpu", "--quiet"], False),
        "avstrain convert": ("avstrain", ["convert", inputs["official"], "-o", "OUT/ckpt.pt"], False),
    }


def with_out(argv: list, out: Path) -> list[str]:
    return [str(a).replace("OUT", str(out)) if str(a).startswith("OUT") else str(a) for a in argv]


def classify_failure(res: subprocess.CompletedProcess, out: Path, keeps: bool, reasons: tuple[str, ...]) -> str:
    """``traceback`` / ``silent`` / ``clean`` for a command run where it cannot write everything:
    clean = exit 1, a last ``Error:`` line naming the reason, no temporary file or lock left, and
    nothing left under ``out`` unless the command keeps its work (then the line says how to go on)."""
    if "Traceback" in res.stderr:
        return "traceback"
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    last = lines[-1] if lines else ""
    if res.returncode != 1 or not last.startswith("Error:") or not any(r in last for r in reasons):
        return "silent"
    if leftovers(out):
        return "silent"
    files = [p for p in out.rglob("*") if p.is_file()] if out.exists() else []
    if files and not keeps:
        return "silent"
    if keeps and "rerun" not in last:
        return "silent"
    return "clean"


def fill_to(mount: Path, free_bytes: int) -> None:
    """Fill the file system at ``mount`` until about ``free_bytes`` stay free."""
    st = os.statvfs(mount)
    have = st.f_bavail * st.f_frsize
    if have > free_bytes:
        with open(mount / ".filler", "wb") as fh:
            fh.write(b"\0" * (have - free_bytes))


def two_together(argvs: list[list[str]]) -> list[tuple[int, str]]:
    """Start the commands at the same moment; (exit code, stderr) of each."""
    procs = [subprocess.Popen(a, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for a in argvs]
    out = []
    for p in procs:
        _, err = p.communicate(timeout=900)
        out.append((p.returncode, err))
    return out


def classify_pair(results: list[tuple[int, str]]) -> str:
    """Two writers of one output: clean when exactly one ran and the other was refused in one line."""
    if any("Traceback" in err for _, err in results):
        return "traceback"
    codes = sorted(rc for rc, _ in results)
    if codes != [0, 1]:
        return "silent"
    err = next(err for rc, err in results if rc == 1)
    last = [ln for ln in err.splitlines() if ln.strip()][-1]
    return "clean" if last.startswith("Error:") and ("is being written by" in last or "not empty" in last) \
        else "silent"
