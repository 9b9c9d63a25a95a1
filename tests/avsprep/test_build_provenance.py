"""Feature: what each shard was built from (issue 23): ``build --resume`` rebuilds a shard whose
inputs or options changed and says why; ``verify --inputs ROOT`` lists clips whose files changed.

A copy of the demo's test split (2 clips, one shard each) keeps every build small.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from avsprep.build import BuildOptions, build_shards
from avsprep.build.provenance import SUFFIX, read_record
from avsprep.cli import cli
from avsprep.datasets.avsbench import AVSBenchLayout


@pytest.fixture(scope="module")
def table(demo_root, tmp_path_factory) -> Path:
    from avsprep.importer import run_import

    out = tmp_path_factory.mktemp("prov") / "boxes.csv"
    run_import(demo_root, out, quiet=True)
    return out


@pytest.fixture()
def root(demo_root, tmp_path) -> Path:
    out = tmp_path / "root"
    shutil.copytree(demo_root, out)
    return out


def _build(table, root, out, resume=False, **kw) -> dict:
    opts = BuildOptions(splits=["test"], clips_per_shard=1, resume=resume, **kw)
    return build_shards(table, root, out, opts, quiet=True)


def _bytes(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != "verified.json"}


def _test_clips(root: Path):
    layout = AVSBenchLayout.from_root(root)
    return layout, layout.clips(["test"])


def test_every_shard_has_an_input_record_naming_its_files(table, root, tmp_path):
    out = tmp_path / "s"
    _build(table, root, out)
    layout, clips = _test_clips(root)
    for n, clip in enumerate(clips):
        rec = read_record(out / "test" / f"shard-{n:05d}.h5")
        assert rec is not None and list(rec["clips"]) == [clip.name]
        files = {e["role"]: e for e in rec["clips"][clip.name]["files"]}
        assert set(files) == {f"frame {k}" for k in range(1, 6)} | {f"mask {k}" for k in range(1, 6)} | {"audio"}
        frame1 = files["frame 1"]
        assert frame1["path"] == layout.frame_path(clip, 1).relative_to(root).as_posix()
        assert frame1["bytes"] == layout.frame_path(clip, 1).stat().st_size
        assert rec["options"]["crop_size"] == 224


def test_resume_rebuilds_only_the_shard_whose_frame_changed(table, root, tmp_path):
    out = tmp_path / "s"
    _build(table, root, out)
    before = _bytes(out)
    layout, clips = _test_clips(root)
    victim = layout.frame_path(clips[1], 3)
    victim.write_bytes(layout.frame_path(clips[1], 2).read_bytes())  # a frame replaced in the release
    summary = _build(table, root, out, resume=True)
    assert summary["kept_shards"] == 1 and summary["built_clips"] == 1
    assert [r["shard"] for r in summary["rebuilt_shards"]] == ["test/shard-00001.h5"]
    reason = summary["rebuilt_shards"][0]["reason"]
    assert clips[1].name in reason and victim.relative_to(root).as_posix() in reason
    assert "rebuilt 1 finished shard(s)" in summary["text"] and "rebuilt test/shard-00001.h5: " in summary["text"]
    after = _bytes(out)
    assert {k for k in after if after[k] != before.get(k)} >= {"test/shard-00001.h5", "manifest.json"}
    assert all(after[k] == before[k] for k in after if "shard-00000" in k)  # the untouched shard kept as is
    clean = tmp_path / "clean"
    _build(table, root, clean)
    assert _bytes(clean) == after  # the resumed folder is a clean build of the changed release


def test_resume_keeps_shards_when_only_mtimes_moved(table, root, tmp_path):
    out = tmp_path / "s"
    _build(table, root, out)
    before = _bytes(out)
    for p in root.rglob("*"):
        if p.is_file():
            os.utime(p, ns=(p.stat().st_atime_ns, p.stat().st_mtime_ns + 10**9))
    summary = _build(table, root, out, resume=True)
    assert summary["kept_shards"] == 2 and summary["rebuilt_shards"] == [] and summary["built_clips"] == 0
    assert _bytes(out) == before


@pytest.mark.parametrize("change, expect", [
    ("pickle", "audio"), ("record", "no input record"), ("crop", "options changed: crop_size 224 -> 32"),
])
def test_resume_says_why_a_shard_is_rebuilt(table, root, tmp_path, change, expect):
    out = tmp_path / "s"
    _build(table, root, out)
    layout, clips = _test_clips(root)
    kw = {}
    if change == "pickle":  # the log-mel pickle goes: the audio now comes from the wav
        layout.logmel_path(clips[0]).unlink()
    elif change == "record":
        (out / "test" / f"shard-00000.h5{SUFFIX}").unlink()
    else:
        kw = {"crop_size": 32}
    summary = _build(table, root, out, resume=True, **kw)
    reasons = {r["shard"]: r["reason"] for r in summary["rebuilt_shards"]}
    assert "test/shard-00000.h5" in reasons and expect in reasons["test/shard-00000.h5"], reasons
    assert (out / "test" / f"shard-00000.h5{SUFFIX}").is_file()


def test_shard_bytes_do_not_depend_on_input_mtimes(table, root, tmp_path):
    """Two clean builds of the same bytes at the same root: shards, .sha256 and manifest identical;
    only the input records differ (their mtimes)."""
    _build(table, root, tmp_path / "a")
    for p in sorted(root.rglob("*")):
        if p.is_file():
            data = p.read_bytes()
            p.unlink()
            p.write_bytes(data)  # the same bytes, a new file with a new mtime (a re-generated release)
    _build(table, root, tmp_path / "b")
    a, b = _bytes(tmp_path / "a"), _bytes(tmp_path / "b")
    assert a.keys() == b.keys()
    differ = sorted(k for k in a if a[k] != b[k])
    assert differ and all(k.endswith(SUFFIX) for k in differ)
    ra, rb = (json.loads(x[differ[0]]) for x in (a, b))
    strip = lambda r: [{k: v for k, v in e.items() if k != "mtime_ns"}  # noqa: E731
                       for c in r["clips"].values() for e in c["files"]]
    assert strip(ra) == strip(rb)


def test_verify_inputs_lists_each_changed_clip_and_fails(table, root, tmp_path):
    out = tmp_path / "s"
    _build(table, root, out)
    res = CliRunner().invoke(cli, ["verify", str(out), "--inputs", str(root)])
    assert res.exit_code == 0 and "OK: every shard matches the manifest and the release's files." in res.output
    layout, clips = _test_clips(root)
    layout.mask_path(clips[0], 2).write_bytes(layout.mask_path(clips[0], 1).read_bytes() + b"\0")
    layout.wav_path(clips[1]).unlink()
    res = CliRunner().invoke(cli, ["verify", str(out), "--inputs", str(root)])
    assert res.exit_code == 1
    lines = [ln for ln in res.output.splitlines() if "input-changed" in ln]
    assert len(lines) == 2
    assert f"clip={clips[0].name}" in lines[0] and "mask 2" in lines[0] and "build --resume" in lines[0]
    assert f"clip={clips[1].name}" in lines[1] and "audio" in lines[1] and "missing" in lines[1]
    doc = json.loads(CliRunner().invoke(cli, ["verify", str(out), "--inputs", str(root), "--json"]).stdout)
    assert doc["ok"] is False and {f["clip"] for f in doc["findings"]} == {c.name for c in clips}
    # without --inputs, verify checks the shards against the manifest only, as before
    assert CliRunner().invoke(cli, ["verify", str(out)]).exit_code == 0


def test_verify_inputs_without_a_record_is_an_error(table, root, tmp_path):
    out = tmp_path / "s"
    _build(table, root, out)
    (out / "test" / f"shard-00001.h5{SUFFIX}").unlink()
    res = CliRunner().invoke(cli, ["verify", str(out), "--inputs", str(root)])
    assert res.exit_code == 1 and "input-record-missing" in res.output and "shard-00001.h5" in res.output
