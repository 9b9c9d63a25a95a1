"""Issue 21 (and 23): a shard edited by hand and re-hashed passes no check that only compares hashes.
``avsprep verify`` checks the values the schema promises (one line per problem naming shard, clip and
dataset), and every reader refuses a shard whose datasets, shapes or dtypes are off the schema when it
opens it, in one line, before a DataLoader worker reads a clip."""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from avsprep.cli import cli
from avsprep.common.errors import IntegrityError
from avsprep.shards import ShardSet, verify_shards
from tests.helpers.hostile import edit_first_shard, replace_dataset
from tests.helpers.train import tiny_shards


@pytest.fixture
def shards(tmp_path_factory, tmp_path):
    out = tmp_path / "shards"
    shutil.copytree(tiny_shards(tmp_path_factory.getbasetemp()), out)
    return out


def first_shard(shards):
    doc = json.loads((shards / "manifest.json").read_text())
    entry = doc["splits"]["train"]["shards"][0]
    return shards / entry["file"], entry["clips"]


edit = edit_first_shard


def verify_lines(shards):
    r = CliRunner().invoke(cli, ["verify", str(shards)])
    return r.exit_code, [line for line in r.output.splitlines() if line.startswith("error")]


def test_untouched_shards_pass_every_value_check(shards):
    assert verify_shards(shards) == []


def test_s4_masks_of_2_fail_verify_naming_shard_clip_and_dataset(shards):
    path, clips = edit(shards, lambda f: f["masks"].__setitem__((1, 0, 5, 5), 2))
    code, lines = verify_lines(shards)
    assert code == 1 and len(lines) == 1, lines
    assert "shard-mask-values" in lines[0] and str(path) in lines[0] and f"clip={clips[1]}" in lines[0]
    assert "masks: value 2 above 1" in lines[0]


def test_a_label_of_999_fails_verify(shards):
    def change(f):
        lab = f["label"][()]
        lab[0] = 999
        f["label"][...] = lab

    path, clips = edit(shards, change)
    code, lines = verify_lines(shards)
    assert code == 1 and len(lines) == 1, lines
    assert "shard-label" in lines[0] and f"clip={clips[0]}" in lines[0] and "label: class index 999" in lines[0]


def test_a_manifest_with_3_classes_for_labels_up_to_15_fails_verify(shards):
    def change(f):
        lab = f["label"][()]
        lab[:] = 15
        f["label"][...] = lab

    edit(shards, change)
    mpath = shards / "manifest.json"
    doc = json.loads(mpath.read_text())
    doc["classes"] = doc["classes"][:3]
    mpath.write_text(json.dumps(doc))
    findings = verify_shards(shards)
    label = [f.message for f in findings if f.code == "shard-label"]
    assert any(m.startswith("label: class index 15 outside 0..2 (the manifest lists 3 class(es))") for m in label)
    assert any(m.startswith("boxes: class") and "outside -1..2" in m for m in label)  # the demo's box classes too


def test_a_box_outside_the_frame_fails_verify(shards):
    path, _ = first_shard(shards)
    with h5py.File(path, "r") as f:
        assert len(f["boxes"]), "the demo shard has boxes"

    def change(f):
        b = f["boxes"][()]
        b[0, 5] = 300.0  # xmax beyond the 224 px stored frame
        f["boxes"][...] = b

    edit(shards, change)
    code, lines = verify_lines(shards)
    assert code == 1 and len(lines) == 1 and "shard-boxes" in lines[0] and "not inside the 224x224 frame" in lines[0]


# --------------------------------------------------------------------------- readers (issue 23)


replace = replace_dataset


@pytest.mark.parametrize("change, named", [
    (replace("frames", shape=None, dtype=np.float32), "frames has dtype float32, expected uint8"),
    (lambda f: replace("frames", shape=(f["frames"].shape[0], 5, 112, 112, 3))(f), "frames has shape"),
    (lambda f: f.move("masks", "mask"), "no 'masks' dataset"),
    (lambda f: f.move("crop_valid", "crops_valid"), "no 'crop_valid' dataset"),
])
def test_an_off_schema_shard_is_refused_at_open_in_one_line(shards, change, named):
    path, _ = edit(shards, change)
    with pytest.raises(IntegrityError) as exc:
        ShardSet(shards, "train", verify=True)
    msg = str(exc.value)
    assert "\n" not in msg and str(path) in msg and named in msg
    with pytest.raises(IntegrityError, match=named):  # no verify: refused when the shard is first read
        ShardSet(shards, "train")[0]
    code, lines = verify_lines(shards)
    assert code == 1 and any(named in line for line in lines)


def test_train_on_an_off_schema_shard_exits_1_in_one_line(shards, tmp_path):
    from avstrain.cli import cli as avstrain_cli
    from tests.helpers.train import TINY

    path, _ = edit(shards, replace("frames", dtype=np.float32))
    r = CliRunner().invoke(avstrain_cli, ["train", str(shards), "-o", str(tmp_path / "run"), "--epochs", "1", *TINY])
    assert r.exit_code == 1, r.output
    assert str(path) in r.output and "frames has dtype float32" in r.output and "Traceback" not in r.output
