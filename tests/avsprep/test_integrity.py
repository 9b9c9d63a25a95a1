"""Integrity without the per-open sha256 toll: the verification record (avsprep.shards.integrity)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from avsprep.shards import integrity
from avsprep.common.errors import IntegrityError

ENTRY = {"file": "train/shard-00000.h5", "sha256": "ab" * 32}
IDENT = {"bytes": 10, "inode": 7, "mtime_ns": 1, "ctime_ns": 2}


def test_trusted_rule_is_exact():
    record = {ENTRY["file"]: dict(IDENT, sha256=ENTRY["sha256"])}
    assert integrity.trusted(ENTRY, record, IDENT)
    for key in integrity.IDENTITY_KEYS:
        assert not integrity.trusted(ENTRY, record, dict(IDENT, **{key: IDENT[key] + 1})), key
    assert not integrity.trusted(dict(ENTRY, sha256="cd" * 32), record, IDENT)  # record of another build
    assert not integrity.trusted(ENTRY, {}, IDENT)
    assert not integrity.trusted(ENTRY, {ENTRY["file"]: "junk"}, IDENT)


def test_unreadable_record_trusts_nothing(tmp_path):
    (tmp_path / integrity.VERIFIED).write_text("{not json")
    assert integrity.read_record(tmp_path) == {}
    (tmp_path / integrity.VERIFIED).write_text(json.dumps({"version": 99, "shards": {}}))
    assert integrity.read_record(tmp_path) == {}


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    from tests.helpers.train import tiny_shards

    return tiny_shards(tmp_path_factory.getbasetemp())


def _copy(shards: Path, tmp: Path) -> Path:
    out = tmp / "copy"
    shutil.copytree(shards, out)
    return out


def _flip_in_place(path: Path, keep_mtime: bool = True) -> None:
    """One byte of frame data flipped inside the file, its mtime put back (as a careful tamperer would)."""
    import h5py

    st = path.stat()
    with h5py.File(path, "r") as f:
        offset = f["frames"].id.get_chunk_info(0).byte_offset
    with open(path, "r+b") as fh:
        fh.seek(offset + 321)
        b = fh.read(1)
        fh.seek(offset + 321)
        fh.write(bytes([b[0] ^ 0x01]))
    if keep_mtime:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size


def test_build_records_every_shard_and_open_hashes_none(shards, monkeypatch):
    from avsprep.shards import reader as shards_mod  # where ShardSet hashes
    from avstrain.data import ShardDataset

    record = integrity.read_record(shards)
    manifest = json.loads((shards / "manifest.json").read_text())
    files = [e["file"] for v in manifest["splits"].values() for e in v["shards"]]
    assert sorted(record) == sorted(files)
    assert all(record[e["file"]]["sha256"] == e["sha256"] for v in manifest["splits"].values() for e in v["shards"])

    def no_hashing(path, *a, **k):
        raise AssertionError(f"hashed {path} at open")

    monkeypatch.setattr(shards_mod, "file_sha256", no_hashing)
    ds = ShardDataset(shards, "train")
    assert ds._reader.unhashed == [] and len(ds) == 8
    assert ds[0]["frames"].shape[0] == 5  # reading does not hash either


def test_flipped_byte_with_mtime_restored_is_still_named(shards, tmp_path):
    from avsprep.shards import ShardSet
    from avstrain.data import ShardDataset

    out = _copy(shards, tmp_path)
    assert ShardSet(out, verify=True).unhashed  # a copy has new inodes: not trusted
    from click.testing import CliRunner

    from avsprep.cli import cli

    res = CliRunner().invoke(cli, ["verify", str(out)])
    assert res.exit_code == 0, res.output
    assert ShardSet(out, verify=True).unhashed == []  # verify re-bound the record to the copy
    victim = out / "train" / "shard-00000.h5"
    _flip_in_place(victim)
    reader = ShardSet(out, verify=True)
    assert [reader.shards[i]["file"] for i in reader.unhashed] == ["train/shard-00000.h5"]  # ctime moved
    with pytest.raises(IntegrityError) as exc:
        reader[0]
    assert str(victim) in str(exc.value) and "\n" not in str(exc.value)
    with pytest.raises(IntegrityError, match="shard-00000.h5"):
        ShardDataset(out, "train")


def test_truncated_shard_is_named_at_open(shards, tmp_path):
    from avsprep.shards import ShardSet

    out = _copy(shards, tmp_path)
    victim = out / "val" / "shard-00000.h5"
    victim.write_bytes(victim.read_bytes()[:-10])
    with pytest.raises(IntegrityError, match="truncated"):
        ShardSet(out, verify=True)


def test_training_stops_naming_the_flipped_shard(shards, tmp_path):
    """End to end at small scale: verified folder, one byte flipped in place (mtime kept) -> train refuses."""
    from click.testing import CliRunner

    from avsprep.cli import cli as prep
    from avstrain.cli import cli as train

    out = _copy(shards, tmp_path)
    assert CliRunner().invoke(prep, ["verify", str(out)]).exit_code == 0
    victim = out / "train" / "shard-00000.h5"
    _flip_in_place(victim)
    res = CliRunner().invoke(train, ["train", str(out), "-o", str(tmp_path / "run"), "--epochs", "1",
                                     "--preset", "demo", "--device", "cpu", "--batch-size", "1",
                                     "--set", "channel=8", "--set", "max_steps_per_epoch=1",
                                     "--set", "workers=0", "--quiet"])
    assert res.exit_code == 1, (res.output, res.exception)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and str(victim) in lines[0] and "corrupt" in lines[0]
