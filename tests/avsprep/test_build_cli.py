"""Feature: `avsprep build / verify / inspect` on the demo dataset, end to end.

Determinism across --workers, crash safety (SIGKILL + --resume), corruption
detection, bad-input policy, mask/crop validity patterns, inspect outputs.
"""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from avsprep.cli import cli
from avsprep.common.errors import DataError, OutputExistsError
from avsprep.build import BuildOptions, build_shards
from avsprep.shards import ShardSet

ENV = dict(os.environ, OMP_NUM_THREADS="1", AVS_NO_PROGRESS="1")


@pytest.fixture(scope="module")
def table(demo_root, tmp_path_factory) -> Path:
    from avsprep.importer import run_import

    out = tmp_path_factory.mktemp("table") / "boxes.csv"
    run_import(demo_root, out, quiet=True)
    return out


@pytest.fixture(scope="module")
def built(demo_root, table, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shards") / "s1"
    build_shards(table, demo_root, out, BuildOptions(clips_per_shard=2, workers=1), quiet=True)
    return out


def _same_tree(a: Path, b: Path) -> list[str]:
    """Relative paths whose bytes differ (or exist on one side only); verified.json binds inodes
    and ctimes, so it is the one file that differs between two folders by design."""
    fa = {p.relative_to(a) for p in a.rglob("*") if p.is_file() and p.name != "verified.json"}
    fb = {p.relative_to(b) for p in b.rglob("*") if p.is_file() and p.name != "verified.json"}
    diff = sorted(str(p) for p in fa ^ fb)
    diff += sorted(str(p) for p in fa & fb if not filecmp.cmp(a / p, b / p, shallow=False))
    return diff


def _run(*args, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "avsprep", *map(str, args)], capture_output=True,
                          text=True, env=ENV, timeout=timeout)


def test_workers_do_not_change_bytes(built, demo_root, table, tmp_path):
    out2 = tmp_path / "s2"
    res = CliRunner().invoke(cli, ["build", str(table), "--root", str(demo_root), "-o", str(out2),
                                   "--clips-per-shard", "2", "--workers", "2", "-q"])
    assert res.exit_code == 0, res.output
    assert _same_tree(built, out2) == []
    assert len(list(out2.rglob("shard-*.h5"))) >= 6


def test_manifest_and_reader(built, demo_root):
    from avsprep.datasets.avsbench import AVSBenchLayout

    man = json.loads((built / "manifest.json").read_text())
    layout = AVSBenchLayout.from_root(demo_root)
    clips = layout.clips()
    assert man["classes"] == layout.classes() and man["setting"] == "s4"
    assert sorted(man["index"]) == sorted(c.name for c in clips)
    assert man["skipped"] == []
    ds = ShardSet(built, verify=True)
    assert len(ds) == len(clips) and ds.names == [c.name for s in ("train", "val", "test")
                                                  for c in clips if c.split == s]
    by_name = {c.name: c for c in clips}
    for split in ("train", "val", "test"):
        sub = ShardSet(built, split=split)
        for i in range(len(sub)):
            item = sub[i]
            clip = by_name[item["video"]]
            assert clip.split == split
            assert sub.index(clip.name) == i
            assert man["classes"][item["label"]] == clip.category
            assert item["frames"].shape == (5, 224, 224, 3) and item["frames"].dtype == np.uint8
            assert item["audio_logmel"].shape == (5, 96, 64) and item["audio_logmel"].dtype == np.float32
            assert set(np.unique(item["masks"])) <= {0, 1}
            # S4 train: GT for frame 1 only; val/test: all 5
            expect = [True, False, False, False, False] if split == "train" else [True] * 5
            assert item["mask_valid"].tolist() == expect
            assert not item["masks"][~item["mask_valid"]].any()
            assert item["masks"][item["mask_valid"]].any()  # the demo masks are not empty
            # every demo frame has a box -> crop valid, crop not blank; boxes rows belong to this clip
            assert item["crop_valid"].all() and item["crops"].reshape(5, -1).std(axis=1).min() > 0
            assert item["boxes"].shape[1] == 7 and sorted(set(item["boxes"][:, 1])) == [1, 2, 3, 4, 5]
            assert (item["boxes"][:, 3:] >= 0).all() and (item["boxes"][:, 3:] <= 224).all()
    with pytest.raises(KeyError, match="nope"):
        ds.index("nope")
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_frames_and_masks_match_the_pngs(built, demo_root):
    from PIL import Image

    from avsprep.datasets.avsbench import AVSBenchLayout

    layout = AVSBenchLayout.from_root(demo_root)
    clip = [c for c in layout.clips(["val"])][0]
    item = ShardSet(built)[ShardSet(built).index(clip.name)]
    for k in range(1, 6):
        png = np.asarray(Image.open(layout.frame_path(clip, k)).convert("RGB"))
        np.testing.assert_array_equal(item["frames"][k - 1], png)
        mask = np.asarray(Image.open(layout.mask_path(clip, k)).convert("L")) > 127
        np.testing.assert_array_equal(item["masks"][k - 1], mask.astype(np.uint8))


def test_shards_are_chunked_per_clip_and_untimed(built):
    import h5py

    shard = sorted((built / "train").glob("shard-*.h5"))[0]
    with h5py.File(shard, "r") as f:
        for name in ("frames", "masks", "crops", "audio_logmel", "label", "mask_valid"):
            assert f[name].chunks[0] == 1, name
        assert f["masks"].compression == "gzip"
        assert f.attrs["split"] == "train" and f.attrs["crop_policy"] == "largest"
        assert f.attrs["audio_source"] == "pickle"


def test_non_empty_output_refused(built, demo_root, table):
    res = CliRunner().invoke(cli, ["build", str(table), "--root", str(demo_root), "-o", str(built), "-q"])
    assert res.exit_code == 1 and "--overwrite" in res.output and "--resume" in res.output
    with pytest.raises(OutputExistsError):
        build_shards(table, demo_root, built, BuildOptions(), quiet=True)


def test_overwrite_rebuilds_only_our_files(demo_root, table, tmp_path):
    out = tmp_path / "s"
    build_shards(table, demo_root, out, BuildOptions(clips_per_shard=4, splits=["test"]), quiet=True)
    (out / "notes.txt").write_text("mine")
    build_shards(table, demo_root, out, BuildOptions(clips_per_shard=1, splits=["val"], overwrite=True),
                 quiet=True)
    assert (out / "notes.txt").read_text() == "mine"
    assert not (out / "test").exists()
    assert list(json.loads((out / "manifest.json").read_text())["splits"]) == ["val"]


def test_flipped_byte_fails_verify_naming_the_shard(built, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(built, out)
    res = CliRunner().invoke(cli, ["verify", str(out)])
    assert res.exit_code == 0, res.output
    victim = sorted((out / "val").glob("shard-*.h5"))[0]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    res = CliRunner().invoke(cli, ["verify", str(out)])
    assert res.exit_code == 1
    assert str(victim) in res.output and "shard-sha256" in res.output
    res = CliRunner().invoke(cli, ["verify", str(out), "--json"])
    doc = json.loads(res.stdout)
    assert doc["ok"] is False and {f["file"] for f in doc["findings"] if f["severity"] == "error"} == {str(victim)}
    from avsprep.common.errors import IntegrityError

    with pytest.raises(IntegrityError, match=victim.name):
        ShardSet(out, verify="full")
    lazy = ShardSet(out, verify=True)  # verify recorded the shards; the flip changed the victim's identity
    assert [lazy.shards[i]["file"] for i in lazy.unhashed] == [victim.relative_to(out).as_posix()]
    with pytest.raises(IntegrityError, match=victim.name):
        lazy[lazy.names.index(lazy.shards[lazy.unhashed[0]]["clips"][0])]


def test_kill_then_resume_is_byte_identical(built, demo_root, table, tmp_path):
    out = tmp_path / "killed"
    args = [sys.executable, "-m", "avsprep", "build", str(table), "--root", str(demo_root), "-o", str(out),
            "--clips-per-shard", "2", "-q"]
    proc = subprocess.Popen(args, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    first = out / "train" / "shard-00000.h5"
    done = out / "train" / "shard-00000.h5.sha256"  # the first shard is finished: kill the build mid-way
    while not done.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert first.exists() and done.exists(), "the build never wrote a shard: " + proc.stderr.read().decode()[-500:]
    # nothing that looks finished: no manifest; readers and verify refuse the folder
    assert not (out / "manifest.json").exists()
    res = _run("verify", out)
    assert res.returncode == 1 and "did not finish" in res.stdout + res.stderr
    with pytest.raises(DataError, match="--resume"):
        ShardSet(out)
    res = _run("build", table, "--root", demo_root, "-o", out, "--clips-per-shard", "2", "--resume", "--json")
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads(res.stdout)["kept_shards"] >= 1
    assert _same_tree(built, out) == []
    assert not [p for p in out.rglob(".*tmp-*")]


def test_resume_rebuilds_a_corrupted_shard(built, demo_root, table, tmp_path):
    out = tmp_path / "r"
    shutil.copytree(built, out)
    victim = out / "train" / "shard-00001.h5"
    victim.write_bytes(victim.read_bytes()[:1000])  # a half-written file under the final name
    summary = build_shards(table, demo_root, out, BuildOptions(clips_per_shard=2, resume=True), quiet=True)
    n = len(list(built.rglob("shard-*.h5")))
    assert summary["kept_shards"] == n - 1 and summary["built_clips"] == 2
    assert _same_tree(built, out) == []


def _broken_root(demo_root, tmp_path):
    from avsprep.datasets.avsbench import AVSBenchLayout

    root = tmp_path / "root"
    shutil.copytree(demo_root, root)
    layout = AVSBenchLayout.from_root(root)
    clip = layout.clips(["test"])[0]
    frame = layout.frame_path(clip, 3)
    frame.write_bytes(frame.read_bytes()[:200])  # truncated PNG
    return root, clip, frame


def test_truncated_frame_stop_names_the_file(demo_root, table, tmp_path):
    root, clip, frame = _broken_root(demo_root, tmp_path)
    with pytest.raises(DataError) as exc:
        build_shards(table, root, tmp_path / "s", BuildOptions(splits=["test"]), quiet=True)
    assert str(frame) in str(exc.value) and clip.name in str(exc.value)
    assert not (tmp_path / "s" / "manifest.json").exists()
    assert not list((tmp_path / "s").rglob("*.h5")) and not list((tmp_path / "s").rglob(".*tmp*"))
    res = CliRunner().invoke(cli, ["build", str(table), "--root", str(root), "-o", str(tmp_path / "s"),
                                   "--split", "test", "--overwrite", "-q"])
    assert res.exit_code == 1 and str(frame) in res.output


def test_truncated_frame_skip_lists_the_clip(demo_root, table, tmp_path):
    root, clip, frame = _broken_root(demo_root, tmp_path)
    out = tmp_path / "s"
    summary = build_shards(table, root, out, BuildOptions(splits=["test"], clips_per_shard=2, on_bad_input="skip"),
                           quiet=True)
    man = json.loads((out / "manifest.json").read_text())
    assert [s["clip"] for s in man["skipped"]] == [clip.name] and str(frame) in man["skipped"][0]["reason"]
    assert clip.name not in man["index"] and summary["skipped"][0]["clip"] == clip.name
    ds = ShardSet(out, verify=True)
    assert clip.name not in ds.names and len(ds) == man["splits"]["test"]["clips"]
    for i in range(len(ds)):  # rows and boxes still line up after the skipped clip
        assert ds[i]["video"] == ds.names[i] and len(ds[i]["boxes"]) >= 5
    assert _run("verify", out).returncode == 0


def test_crop_size_and_policy_are_recorded(demo_root, table, tmp_path):
    out = tmp_path / "s"
    build_shards(table, demo_root, out, BuildOptions(splits=["val"], crop_size=32, crop_policy="union"), quiet=True)
    item = ShardSet(out)[0]
    assert item["crops"].shape == (5, 32, 32, 3)
    man = json.loads((out / "manifest.json").read_text())
    assert man["options"]["crop_size"] == 32 and man["options"]["crop_policy"] == "union"


def test_inspect_text_json_and_png(built, tmp_path):
    name = ShardSet(built).names[0]
    res = CliRunner().invoke(cli, ["inspect", str(built), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["clips"] == len(ShardSet(built)) and doc["splits"]["train"]["shards"] >= 1
    png = tmp_path / "sheet.png"
    res = CliRunner().invoke(cli, ["inspect", str(built), f"--clip={name}", "--png", str(png)])
    assert res.exit_code == 0, res.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    assert min(Image.open(png).size) > 200
    res = CliRunner().invoke(cli, ["inspect", str(built), "--clip", "no-such-clip"])
    assert res.exit_code == 1 and "no-such-clip" in res.output
