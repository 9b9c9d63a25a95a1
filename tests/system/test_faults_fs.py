"""File-system faults and concurrency (issue 23, docs/RELIABILITY.md "Faults and concurrency").

Contract under test, for every command that writes: a full disk or a read-only / forbidden output
is one ``Error:`` line naming the path and what to do (exit 1, no traceback), and leaves no
partial output (what the run created is removed, or the command's resume rule is stated: build,
extract, train); one writer per output folder (``.avs-lock``: a live holder refuses the second
writer in one line, a dead one is taken over with a note, the lock goes at exit); nothing is
written over an input of the same run, nor over an existing file without ``--overwrite``.

The full disk is simulated in-process (``tests.helpers.faults.disk_full``: every atomic writer
raises ENOSPC after N files); ``test_faults_build.py`` fills a real tmpfs for build.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers.faults import (
    ENV, dead_pid, disk_full, hold_lock, invoke, leftovers, one_line_error, read_only_dir, tree_bytes,
)


@pytest.fixture(scope="module")
def table(demo_root, tmp_path_factory):
    from avsprep.importer import run_import

    path = tmp_path_factory.mktemp("fsfaults") / "boxes.csv"
    assert run_import(demo_root, path, quiet=True)["exit_code"] == 0
    return path


def prep(args):
    from avsprep.cli import cli

    return invoke(cli, args)


def train_cli(args):
    from avstrain.cli import cli

    return invoke(cli, args)


# ----------------------------------------------------------------------------- disk full, avsprep

def test_propose_disk_full_writes_nothing(demo_root, tmp_path):
    """Today's main leaves 9 proposals behind; now all or nothing."""
    ann = tmp_path / "ann"
    with disk_full(after=9, match="*.xml") as opened:
        rc, err = prep(["propose", "--root", demo_root, "-a", ann, "-q"])
    assert len(opened) == 10
    line = one_line_error(rc, err, "No space left on device", "the 9 file(s) written were removed")
    assert str(ann) in line
    assert not ann.exists() and leftovers(tmp_path) == []
    rc, err = prep(["propose", "--root", demo_root, "-a", ann, "-q"])  # after freeing space: all of them
    assert rc == 0 and len(list(ann.rglob("*.xml"))) > 9


def test_propose_disk_full_next_to_frames_keeps_release_intact(demo_root, tmp_path):
    import shutil

    root = tmp_path / "root"
    shutil.copytree(demo_root, root)
    for xml in root.rglob("*.xml"):  # frames without annotations, so propose has work to do
        xml.unlink()
    before = tree_bytes(root)
    with disk_full(after=3, match="*.xml"):
        rc, err = prep(["propose", "--root", root, "-q"])
    one_line_error(rc, err, "No space left on device")
    assert tree_bytes(root) == before


@pytest.mark.parametrize("after", [0, 1])  # the table, then its findings sidecar
def test_import_disk_full(demo_root, tmp_path, after):
    out = tmp_path / "boxes.csv"
    with disk_full(after=after):
        rc, err = prep(["import", "--root", demo_root, "-o", out, "-q"])
    one_line_error(rc, err, "No space left on device", str(out))
    assert list(tmp_path.iterdir()) == []


def test_export_disk_full(table, tmp_path):
    out = tmp_path / "exported"
    with disk_full(after=5):
        rc, err = prep(["export", table, out])
    one_line_error(rc, err, "No space left on device", "removed")
    assert not out.exists()


def test_demo_disk_full(tmp_path):
    out = tmp_path / "demo"
    with disk_full(after=20):
        rc, err = prep(["demo", out, "--clips", "6", "-q"])
    one_line_error(rc, err, "No space left on device", "free space or choose another OUT")
    assert not out.exists()


# ----------------------------------------------------------------------------- read-only, avsprep

@pytest.fixture
def ro(tmp_path):
    with read_only_dir(tmp_path / "ro") as how:
        if how is None:
            pytest.skip("cannot make a read-only folder here (root without mount)")
        yield tmp_path / "ro"


def _ro_cases(demo_root, table, ro):
    return {
        "build": ["build", table, "--root", demo_root, "-o", ro / "shards", "--split", "test", "-q"],
        "import": ["import", "--root", demo_root, "-o", ro / "boxes.csv", "-q"],
        "import-new-folder": ["import", "--root", demo_root, "-o", ro / "sub" / "boxes.csv", "-q"],
        "export": ["export", table, ro / "exported"],
        "propose": ["propose", "--root", demo_root, "-a", ro / "ann", "-q"],
        "demo": ["demo", ro / "demo", "--clips", "3", "-q"],
        "export-into-it": ["export", table, ro],
    }


@pytest.mark.parametrize("case", ["build", "import", "import-new-folder", "export", "propose", "demo",
                                  "export-into-it"])
def test_read_only_output_is_one_line(demo_root, table, ro, case):
    rc, err = prep(_ro_cases(demo_root, table, ro)[case])
    line = one_line_error(rc, err, str(ro))
    assert "read-only" in line or "permission denied" in line, line
    assert list(ro.iterdir()) == []


# ----------------------------------------------------------------------------- avstrain

@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    from tests.helpers.report import random_checkpoint

    return random_checkpoint(tmp_path_factory.getbasetemp())


EVAL = ["--device", "cpu", "--batch-videos", "2"]


def test_per_clip_over_the_checkpoint_is_refused_before_evaluating(ckpt):
    checkpoint, shards = ckpt
    before = checkpoint.read_bytes()
    for extra in ([], ["--overwrite"]):
        rc, err = train_cli(["evaluate", checkpoint, shards, "--per-clip", checkpoint, *EVAL, *extra])
        one_line_error(rc, err, "is an input of this run")
    assert checkpoint.read_bytes() == before


def test_per_clip_over_an_existing_file_needs_overwrite(ckpt, tmp_path):
    checkpoint, shards = ckpt
    old = tmp_path / "old.csv"
    old.write_text("keep me\n")
    rc, err = train_cli(["evaluate", checkpoint, shards, "--per-clip", old, *EVAL])
    one_line_error(rc, err, str(old), "--overwrite")
    assert old.read_text() == "keep me\n"


def test_per_clip_into_a_missing_folder(ckpt, tmp_path):
    checkpoint, shards = ckpt
    out = tmp_path / "new" / "folder" / "clips.csv"
    rc, err = train_cli(["evaluate", checkpoint, shards, "--per-clip", out, *EVAL, "--json"])
    assert rc == 0, err
    assert out.read_text().startswith("video,")


def test_per_clip_disk_full(ckpt, tmp_path):
    checkpoint, shards = ckpt
    out = tmp_path / "clips.csv"
    with disk_full(match="*.csv"):
        rc, err = train_cli(["evaluate", checkpoint, shards, "--per-clip", out, *EVAL])
    one_line_error(rc, err, "No space left on device", str(out))
    assert list(tmp_path.iterdir()) == []


def test_inspect_png_into_a_missing_folder_and_over_a_file(ckpt, tmp_path):
    _, shards = ckpt
    png = tmp_path / "new" / "sheet.png"
    rc, err = prep(["inspect", shards, "--png", png])
    assert rc == 0, err
    assert png.read_bytes()[:4] == b"\x89PNG"
    rc, err = prep(["inspect", shards, "--png", png])
    one_line_error(rc, err, "--overwrite")
    rc, err = prep(["inspect", shards, "--png", shards / "manifest.json", "--overwrite"])
    one_line_error(rc, err, "is an input of this run")


# convert: read-only below and in tools/robustness.py (the tiny model has no official form to write)
@pytest.mark.parametrize("command", ["predict", "report"])
def test_avstrain_writers_disk_full(ckpt, tmp_path, command):
    checkpoint, shards = ckpt
    out = tmp_path / "out"
    args = {"predict": ["predict", checkpoint, shards, "-o", out, "--device", "cpu", "--quiet"],
            "report": ["report", checkpoint, shards, "-o", out, *EVAL, "--quiet"]}[command]
    with disk_full(after=2):
        rc, err = train_cli(args)
    one_line_error(rc, err, "No space left on device")
    assert not out.exists()


@pytest.mark.parametrize("command", ["predict", "report", "convert", "train"])
def test_avstrain_writers_read_only(ckpt, ro, command):
    checkpoint, shards = ckpt
    out = ro / "out"
    args = {"predict": ["predict", checkpoint, shards, "-o", out, "--device", "cpu", "--quiet"],
            "report": ["report", checkpoint, shards, "-o", out, *EVAL, "--quiet"],
            "convert": ["convert", checkpoint, "-o", out, "--to", "official"],
            "train": ["train", shards, "-o", out, "--preset", "demo", "--device", "cpu", "--quiet"]}[command]
    line = one_line_error(*train_cli(args), str(ro))
    assert "read-only" in line or "permission denied" in line, line


def test_train_disk_full_at_the_first_checkpoint(ckpt, tmp_path):
    from tests.helpers.train import TINY

    _, shards = ckpt
    run = tmp_path / "run"
    with disk_full(match="*.pt"):
        rc, err = train_cli(["train", shards, "-o", run, *TINY, "--epochs", "1", "--device", "cpu",
                             "--set", "max_steps_per_epoch=1", "--set", "max_eval_clips=1"])
    one_line_error(rc, err, "No space left on device", "--resume")
    assert not list(run.glob("*.pt")) and leftovers(run) == []


def test_convert_onto_its_source_is_refused(ckpt, tmp_path):
    import shutil

    checkpoint, _ = ckpt
    src = tmp_path / "src.pt"
    shutil.copy(checkpoint, src)
    before = src.read_bytes()
    one_line_error(*train_cli(["convert", src, "-o", src, "--to", "official", "--overwrite"]), "is an input")
    assert src.read_bytes() == before


# ----------------------------------------------------------------------------- one writer at a time

def test_lock_held_by_a_live_process_refuses(table, demo_root, tmp_path):
    out = tmp_path / "shards"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = hold_lock(out, holder.pid, "avsprep build boxes.csv -o shards --clips-per-shard 1")
        rc, err = prep(["build", table, "--root", demo_root, "-o", out, "--split", "test", "-q"])
        one_line_error(rc, err, f"pid {holder.pid}", "--clips-per-shard 1", str(lock))
        assert json.loads(lock.read_text())["pid"] == holder.pid  # the holder's lock is left alone
    finally:
        holder.kill()
        holder.wait()


def test_stale_lock_is_taken_over_with_a_note(table, demo_root, tmp_path, caplog):
    out = tmp_path / "shards"
    pid = dead_pid()
    hold_lock(out, pid)
    rc, err = prep(["build", table, "--root", demo_root, "-o", out, "--split", "test"])
    assert rc == 0, err
    assert "taking over the lock" in caplog.text and f"pid {pid}" in caplog.text
    assert (out / "manifest.json").is_file() and leftovers(out) == []


def test_train_into_a_locked_run_is_refused(ckpt, tmp_path):
    _, shards = ckpt
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        hold_lock(run, holder.pid, "avstrain train shards -o run")
        rc, err = train_cli(["train", shards, "-o", run, "--preset", "demo", "--device", "cpu", "--quiet"])
        one_line_error(rc, err, "is being written by", f"pid {holder.pid}")
        assert [p.name for p in run.iterdir()] == [".avs-lock"]
    finally:
        holder.kill()
        holder.wait()


def test_lock_removed_after_an_error(demo_root, tmp_path):
    """A build that fails after taking the lock (a bad table) leaves no lock and no folder."""
    bad = tmp_path / "bad.csv"
    bad.write_text("not,a,box,table\n1,2,3,4\n")
    out = tmp_path / "shards"
    rc, err = prep(["build", bad, "--root", demo_root, "-o", out, "-q"])
    one_line_error(rc, err, str(bad))
    assert not out.exists()


def test_two_builds_started_together(table, demo_root, tmp_path):
    """Different options, same -o: exactly one writes; the other is refused in one line."""
    out = tmp_path / "shards"
    argv = [[sys.executable, "-m", "avsprep", "build", str(table), "--root", str(demo_root), "-o", str(out),
             "--split", "test", "-q", *extra] for extra in ([], ["--clips-per-shard", "1"])]
    procs = [subprocess.Popen(a, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for a in argv]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    codes = sorted(rc for rc, _ in results)
    assert codes == [0, 1], results
    rc, err = next(r for r in results if r[0] == 1)
    line = one_line_error(rc, err)
    assert "is being written by" in line or "is not empty" in line, line
    manifest = json.loads((out / "manifest.json").read_text())
    winner = argv[[r[0] for r in results].index(0)]
    shards = sorted(p.name for p in (out / "test").glob("*.h5"))
    assert len(shards) == (2 if "--clips-per-shard" in winner else 1) == len(manifest["splits"]["test"]["shards"])
    assert prep(["verify", out])[0] == 0 and leftovers(out) == []


@pytest.mark.slow
def test_two_trains_started_together(ckpt, tmp_path):
    """Two ``avstrain train`` into one RUN: one trains, the other is refused in one line."""
    from tests.helpers.faults import classify_pair, cli_argv, two_together
    from tests.helpers.train import TINY

    _, shards = ckpt
    run = tmp_path / "run"
    argv = cli_argv("avstrain", "train", shards, "-o", run, *TINY, "--epochs", "1", "--device", "cpu",
                    "--set", "max_steps_per_epoch=1", "--set", "max_eval_clips=1")
    results = two_together([argv, argv])
    assert classify_pair(results) == "clean", results
    assert (run / "last.pt").is_file() and leftovers(run) == []
