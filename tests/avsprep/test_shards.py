"""Feature: shard writer, ShardSet reader and verify on small synthetic arrays (no dataset needed)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from avsprep.common.errors import DataError
from avsprep.shards import (
    SCHEMA_VERSION, ShardSet, ShardWriter, check_shard_file, dataset_schema, verify_shards,
)

C = 16


def _clip(rng, name, label):
    return {
        "video": name, "label": np.int16(label),
        "frames": rng.integers(0, 256, (5, 224, 224, 3), dtype=np.uint8),
        "masks": (rng.random((5, 224, 224)) > 0.9).astype(np.uint8),
        "mask_valid": np.array([1, 0, 0, 0, 0], bool),
        "crops": rng.integers(0, 256, (5, C, C, 3), dtype=np.uint8),
        "crop_valid": np.array([1, 1, 0, 1, 1], bool),
        "audio_logmel": rng.normal(size=(5, 96, 64)).astype(np.float32),
    }


def _attrs(names, split="train"):
    return {"schema_version": SCHEMA_VERSION, "toolkit_version": "t", "split": split, "setting": "s4",
            "frames": 5, "frame_size": 224, "crop_size": C, "crop_policy": "largest", "audio_source": "pickle",
            "resampler": "", "vggish_sha256": "", "clips": json.dumps(names), "build_options": "{}",
            "skipped": "[]", "mask_decoding": json.dumps({"pil_mode": "1", "scale": 1})}


def _write(path: Path, clips, planned=None, split="train"):
    w = ShardWriter(path, planned or len(clips), C, vggish=False)
    boxes = []
    for c in clips:
        row = w.add(c)
        boxes.append([row, 1, c["label"], 1, 2, 30, 40])
        boxes.append([row, 4, c["label"], 5, 6, 7, 8])
    w.close(np.array(boxes, np.float32), _attrs([c["video"] for c in clips], split))


def _folder(tmp_path, n=3):
    """A one-shard folder with a hand-written manifest in the build's format."""
    rng = np.random.default_rng(0)
    clips = [_clip(rng, f"-clip_{i}", i) for i in range(n)]
    (tmp_path / "train").mkdir()
    shard = tmp_path / "train" / "shard-00000.h5"
    _write(shard, clips, planned=n + 2)  # two planned clips "skipped": rows shrink to n
    digest = hashlib.sha256(shard.read_bytes()).hexdigest()
    names = [c["video"] for c in clips]
    man = {"schema_version": SCHEMA_VERSION, "toolkit_version": "t", "setting": "s4", "classes": ["a", "b", "c"],
           "options": {"vggish_sha256": ""},
           "splits": {"train": {"clips": n, "shards": [{"file": "train/shard-00000.h5", "count": n,
                                                         "bytes": shard.stat().st_size, "sha256": digest,
                                                         "clips": names}]}},
           "index": {nm: ["train", "shard-00000.h5", i] for i, nm in enumerate(names)}, "skipped": []}
    (tmp_path / "manifest.json").write_text(json.dumps(man))
    return clips, shard


def test_writer_is_byte_reproducible(tmp_path):
    rng = np.random.default_rng(1)
    clips = [_clip(rng, f"c{i}", i) for i in range(2)]
    _write(tmp_path / "a.h5", clips)
    _write(tmp_path / "b.h5", clips)
    assert (tmp_path / "a.h5").read_bytes() == (tmp_path / "b.h5").read_bytes()


def test_reader_round_trip_and_boxes_per_clip(tmp_path):
    clips, _ = _folder(tmp_path)
    ds = ShardSet(tmp_path, verify=True)
    assert len(ds) == 3 and ds.names == ["-clip_0", "-clip_1", "-clip_2"] and ds.classes == ["a", "b", "c"]
    assert not ds.has_vggish and ds.index("-clip_1") == 1
    for i, c in enumerate(clips):
        item = ds[i]
        for k in ("frames", "masks", "mask_valid", "crops", "crop_valid", "audio_logmel"):
            np.testing.assert_array_equal(item[k], c[k])
        assert item["video"] == c["video"] and item["label"] == i
        assert item["boxes"][:, 0].tolist() == [i, i] and item["boxes"][:, 1].tolist() == [1, 4]
    assert ds[-1]["video"] == "-clip_2"
    with pytest.raises(TypeError, match="index"):
        ds["-clip_0"]


def test_reader_reopens_after_fork(tmp_path):
    clips, _ = _folder(tmp_path)
    ds = ShardSet(tmp_path)
    assert ds[0]["video"] == "-clip_0"  # parent opens its handle
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: must open its own handle and read correct data
        ok = ds[2]["video"] == "-clip_2" and np.array_equal(ds[1]["frames"], clips[1]["frames"])
        os.write(w, b"1" if ok else b"0")
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(r, 1) == b"1"
    assert ds[1]["video"] == "-clip_1"


def test_reader_items_are_fresh_arrays_and_raw_chunk_reads_equal_hdf5(tmp_path):
    """Cached handles / whole-read small datasets: items never share memory with the cache."""
    from avsprep.shards.reader import _OpenShard, _read_row

    clips, shard = _folder(tmp_path)
    ds = ShardSet(tmp_path)
    first = ds[0]
    for k in ("frames", "masks", "mask_valid", "crops", "crop_valid", "audio_logmel", "boxes"):
        first[k][...] = 0  # the caller may write into what it got
    again = ds[0]
    for k in ("frames", "masks", "mask_valid", "crops", "crop_valid", "audio_logmel"):
        np.testing.assert_array_equal(again[k], clips[0][k])
    assert again["boxes"][:, 1].tolist() == [1, 4]
    opened = _OpenShard(shard)
    try:
        raw = {name: r for name, _, _, _, r in opened.rows}
        assert raw == {"frames": True, "masks": False, "crops": True, "audio_logmel": True}
        with h5py.File(shard, "r") as f:
            for name in ("frames", "crops", "audio_logmel"):
                for row in range(len(clips)):
                    got = _read_row(f[name], row, f[name].shape[1:], f[name].dtype)
                    assert got.flags.writeable and got.dtype == f[name].dtype
                    np.testing.assert_array_equal(got, f[name][row])
    finally:
        opened.close()


def test_reader_reads_other_chunk_layouts(tmp_path):
    """A shard whose per-clip datasets are compressed or chunked differently is read through HDF5."""
    clips, shard = _folder(tmp_path)
    with h5py.File(shard, "a") as f:
        for name in ("frames", "audio_logmel"):
            data = f[name][()]
            del f[name]
            f.create_dataset(name, data=data, compression="gzip" if name == "frames" else None)
    ds = ShardSet(tmp_path)
    for i, c in enumerate(clips):
        np.testing.assert_array_equal(ds[i]["frames"], c["frames"])
        np.testing.assert_array_equal(ds[i]["audio_logmel"], c["audio_logmel"])


def test_no_manifest_is_refused_clearly(tmp_path):
    _folder(tmp_path)
    (tmp_path / "manifest.json").unlink()
    with pytest.raises(DataError, match="did not finish; run avsprep build --resume"):
        ShardSet(tmp_path)
    f = verify_shards(tmp_path)
    assert [x.code for x in f] == ["manifest-missing"]


def test_verify_clean_then_missing_and_truncated(tmp_path):
    _, shard = _folder(tmp_path)
    assert [x for x in verify_shards(tmp_path) if x.severity == "error"] == []
    shard.write_bytes(shard.read_bytes()[:-100])
    codes = {x.code for x in verify_shards(tmp_path)}
    assert {"shard-size", "shard-sha256"} <= codes
    shard.unlink()
    f = verify_shards(tmp_path)
    assert [x.code for x in f] == ["shard-missing"] and f[0].file == str(shard)


def test_schema_check_names_the_problem(tmp_path):
    _, shard = _folder(tmp_path)
    assert check_shard_file(shard, split="train") == []
    assert check_shard_file(shard, split="val")[0].code == "shard-split"
    assert check_shard_file(shard, clips=["x"])[0].code == "shard-clips"
    with h5py.File(shard, "a") as f:
        del f["crop_valid"]
        f.create_dataset("crop_valid", data=np.zeros((3, 4), bool))
    f = check_shard_file(shard)
    assert [x.code for x in f] == ["shard-shape"] and "crop_valid" in f[0].message


def test_dataset_schema_vggish_optional():
    assert "audio_vggish" not in dataset_schema(2, 32, False)
    assert dataset_schema(2, 32, True)["audio_vggish"][0] == (2, 5, 128)
