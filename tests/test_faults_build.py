"""Fault injection for ``avsprep build`` (DESIGN.md 7, 11): kills, a full disk, bad input files.

Contract under test: a killed build never leaves a file that looks finished
(no manifest; any shard with a sha256 sidecar really is whole), ``--resume``
then gives byte-for-byte the shards and manifest of a clean build; a full disk
is a one-line error with nothing finished-looking left behind; a corrupt
frame, wav or pickle is reported naming the file, and the clip is skipped or
the build stops as ``--on-bad-input`` says.

The kill-trial helpers are shared with ``tools/robustness.py`` (20+ trials).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ENV = dict(os.environ, OMP_NUM_THREADS="1", AVS_NO_PROGRESS="1", PYTHONUNBUFFERED="1")


# ----------------------------------------------------------------------------- helpers (shared)

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
    from avsprep.shards import ShardSet, check_shard_file, file_sha256, verify_shards

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


# ----------------------------------------------------------------------------- fixtures

SMALL = ("--split", "test", "--clips-per-shard", "1")  # 2 clips, 2 shards: fast on 2 busy cores


@pytest.fixture(scope="module")
def imported(demo_root, tmp_path_factory):
    """(root, table) for the session's demo dataset."""
    from avsprep.importer import run_import

    table = tmp_path_factory.mktemp("faults") / "boxes.csv"
    summary = run_import(demo_root, table, quiet=True)
    assert summary["exit_code"] == 0
    return demo_root, table


@pytest.fixture(scope="module")
def clean_build(imported, tmp_path_factory):
    root, table = imported
    out = tmp_path_factory.mktemp("clean") / "shards"
    t0 = time.monotonic()
    res = run_build(table, root, out, *SMALL)  # a subprocess, so the kill delay includes start-up
    secs = time.monotonic() - t0
    assert res.returncode == 0, res.stderr
    return out, secs


def build_in_process(table, root, out, on_bad_input="stop", resume=False, clips_per_shard=1):
    from avsprep.build import BuildOptions, build_shards

    return build_shards(table, root, out, BuildOptions(splits=["test"], clips_per_shard=clips_per_shard,
                                                       on_bad_input=on_bad_input, resume=resume), quiet=True)


# ----------------------------------------------------------------------------- kills

@pytest.mark.parametrize("fraction", [0.6])
def test_sigkill_then_resume_is_byte_identical(imported, clean_build, tmp_path, fraction):
    root, table = imported
    clean, secs = clean_build
    out = tmp_path / "shards"
    r = kill_trial(table, root, out, delay=fraction * secs, extra=SMALL)
    assert r["problems"] == []
    assert r["resume_rc"] == 0, r["resume_stderr"]
    assert tree_bytes(out) == tree_bytes(clean)


def test_killed_before_any_shard(imported, clean_build, tmp_path):
    """A kill during start-up leaves nothing that looks finished, and resume still works."""
    root, table = imported
    clean, _ = clean_build
    out = tmp_path / "shards"
    r = kill_trial(table, root, out, delay=0.05, extra=SMALL)
    assert r["problems"] == [] and not r["manifest"]
    assert r["resume_rc"] == 0, r["resume_stderr"]
    assert tree_bytes(out) == tree_bytes(clean)


# (--resume on a tampered finished shard: tests/test_build_cli.py::test_resume_rebuilds_a_corrupted_shard)


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


def test_disk_full_is_one_line_error(imported, clean_build, tmp_path):
    """A real full filesystem (tmpfs) when mount works, else ENOSPC injected into the shard writer."""
    root, table = imported
    clean, _ = clean_build
    first = (clean / "test" / "shard-00000.h5").stat().st_size
    mnt = tmp_path / "small"
    with small_tmpfs(mnt, f"{int(first * 1.5) // 1024}k") as mounted:
        if mounted:
            out = mnt / "shards"
            res = run_build(table, root, out, *SMALL)
            check_disk_full_outcome(res.returncode, res.stderr, out)
            return
    _disk_full_by_monkeypatch(root, table, tmp_path / "shards")


def _disk_full_by_monkeypatch(root, table, out):
    from click.testing import CliRunner

    from avsprep import shards
    from avsprep.cli import cli

    calls = {"n": 0}
    real_add = shards.ShardWriter.add

    def add(self, arrays):
        calls["n"] += 1
        if calls["n"] > 1:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))
        return real_add(self, arrays)

    mp = pytest.MonkeyPatch()
    mp.setattr(shards.ShardWriter, "add", add)
    try:
        res = CliRunner().invoke(cli, ["build", str(table), "--root", str(root), "-o", str(out), "-q", *SMALL])
    finally:
        mp.undo()
    stderr = res.stderr + ("".join(__import__("traceback").format_exception(res.exc_info[1]))
                           if res.exc_info and not isinstance(res.exc_info[1], SystemExit) else "")
    check_disk_full_outcome(res.exit_code, stderr, out)


def test_disk_full_injected_enospc(imported, tmp_path):
    """ENOSPC raised inside the shard writer (the path that works without mount)."""
    root, table = imported
    _disk_full_by_monkeypatch(root, table, tmp_path / "shards")


# ----------------------------------------------------------------------------- bad input files

def _test_clip(root: Path):
    from avsprep.datasets.avsbench import AVSBenchLayout

    layout = AVSBenchLayout.from_root(root)
    return layout, layout.clips(["test"])[0]


def _corrupt(root: Path, kind: str, marker: Path) -> tuple[str, Path]:
    """Damage one file of the first test clip; returns (clip name, damaged file)."""
    layout, clip = _test_clip(root)
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
# tests/test_build_cli.py covers the truncated frame; the default run adds the rest (tools/robustness.py runs all)
TEST_KINDS = BAD_KINDS[1:]


@pytest.fixture
def damaged(imported, tmp_path, request):
    root, table = imported
    copy = tmp_path / "root"
    shutil.copytree(root, copy)
    marker = tmp_path / "PWNED"
    clip, path = _corrupt(copy, request.param, marker)
    return copy, table, clip, path, marker


@pytest.mark.parametrize("damaged", TEST_KINDS, indirect=True)
def test_bad_input_stop_names_the_file(damaged, tmp_path):
    from avsprep.common.errors import AvsError

    root, table, clip, path, marker = damaged
    out = tmp_path / "shards"
    with pytest.raises(AvsError) as exc:
        build_in_process(table, root, out, on_bad_input="stop", clips_per_shard=2)
    msg = str(exc.value)
    assert path.name in msg and "\n" not in msg, msg
    assert not (out / "manifest.json").exists()
    assert not marker.exists(), "the hostile pickle ran code"
    assert finished_looking_problems(out)[0] == []


@pytest.mark.parametrize("damaged", TEST_KINDS, indirect=True)
def test_bad_input_skip_lists_the_clip(damaged, tmp_path):
    from avsprep.shards import ShardSet, verify_shards

    root, table, clip, path, marker = damaged
    out = tmp_path / "shards"
    summary = build_in_process(table, root, out, on_bad_input="skip", clips_per_shard=2)
    manifest = json.loads((out / "manifest.json").read_text())
    skipped = {s["clip"]: s for s in manifest["skipped"]}
    assert clip in skipped and path.name in skipped[clip]["reason"]
    assert path.name in summary["text"]
    shards = ShardSet(out)
    assert clip not in shards.names and len(shards) == 1  # the other test clip is kept
    assert [f for f in verify_shards(out) if f.severity == "error"] == []
    assert not marker.exists(), "the hostile pickle ran code"


def test_bad_input_cli_one_line(imported, tmp_path):
    """Through the CLI: exit 1, one ``Error:`` line naming the damaged file, no traceback."""
    root, table = imported
    copy = tmp_path / "root"
    shutil.copytree(root, copy)
    _, path = _corrupt(copy, "wav-truncated", tmp_path / "m")
    res = run_build(table, copy, tmp_path / "shards", "--split", "test")
    assert res.returncode == 1
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in res.stderr
    assert len(lines) == 1 and lines[0].startswith("Error:") and path.name in lines[0], res.stderr
