"""Fault injection for ``avsprep build`` (docs/RELIABILITY.md): kills, a full disk, bad input files.

Contract under test: a killed build never leaves a file that looks finished
(no manifest; any shard with a sha256 sidecar really is whole), ``--resume``
then gives byte-for-byte the shards and manifest of a clean build; a full disk
is a one-line error with nothing finished-looking left behind; a corrupt
frame, wav or pickle is reported naming the file, and the clip is skipped or
the build stops as ``--on-bad-input`` says.

The helpers (tests/helpers/faults.py) are shared with ``tools/robustness.py`` (20+ trials).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import time

import pytest

from tests.helpers.faults import (
    BAD_KINDS, check_disk_full_outcome, corrupt, finished_looking_problems, kill_trial, run_build, small_tmpfs,
    tree_bytes,
)


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


# (--resume on a tampered finished shard: tests/avsprep/test_build_cli.py::test_resume_rebuilds_a_corrupted_shard)


# ----------------------------------------------------------------------------- full disk

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

# tests/avsprep/test_build_cli.py covers the truncated frame; the default run adds the rest (tools/robustness.py runs all)
TEST_KINDS = BAD_KINDS[1:]


@pytest.fixture
def damaged(imported, tmp_path, request):
    root, table = imported
    copy = tmp_path / "root"
    shutil.copytree(root, copy)
    marker = tmp_path / "PWNED"
    clip, path = corrupt(copy, request.param, marker)
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
    _, path = corrupt(copy, "wav-truncated", tmp_path / "m")
    res = run_build(table, copy, tmp_path / "shards", "--split", "test")
    assert res.returncode == 1
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in res.stderr
    assert len(lines) == 1 and lines[0].startswith("Error:") and path.name in lines[0], res.stderr
