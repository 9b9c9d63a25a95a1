"""Feature: `avsprep propose` writes labelImg box proposals for frames with a GT mask and no annotation,
never touching human work; import reads them back within IoU 0.9 of the generator's boxes."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from avsprep.cli import cli
from avsprep.annotations.labelimg_xml import PROPOSAL_DATABASE
from avsprep.build.crops import box_iou as iou
from avsprep.importer import run_import
from avsprep.datasets.avsbench import AVSBenchLayout
from avsprep.annotations.propose import mask_boxes, run_propose, write_new
from avsprep.annotations.table import read_table
from avsprep.validate import run_validate


def test_mask_boxes_largest_and_all_blobs():
    m = np.zeros((20, 30), np.uint8)
    m[2:5, 3:6] = 255       # 9 px
    m[10:18, 12:25] = 255   # 104 px
    m[18, 25] = 255         # touches the big blob diagonally: same blob under 8-connectivity
    assert mask_boxes(m) == [(12, 10, 26, 19)]
    assert mask_boxes(m, all_blobs=True) == [(12, 10, 26, 19), (3, 2, 6, 5)]
    assert mask_boxes(np.zeros((4, 4))) == []


def test_write_new_never_replaces(tmp_path):
    p = tmp_path / "a" / "x.xml"
    assert write_new(p, b"one") and not write_new(p, b"two")
    assert p.read_bytes() == b"one" and [q.name for q in p.parent.iterdir()] == ["x.xml"]


@pytest.fixture
def root(demo_root, tmp_path):
    r = tmp_path / "root"
    shutil.copytree(demo_root, r)
    return r


def test_propose_from_masks_replaces_deleted_boxes(root, tmp_path):
    layout = AVSBenchLayout.from_root(root)
    run_import(root, tmp_path / "orig.csv", quiet=True)
    orig = read_table(tmp_path / "orig.csv")
    mask_frames = {(c.name, k) for c in layout.clips() for k in layout.mask_frames(c)}
    for c in layout.clips():
        for k in layout.mask_frames(c):
            layout.frame_path(c, k).with_suffix(".xml").unlink()
    # human work of other formats for two mask frames: never overwritten, never duplicated
    c0, c1 = layout.clips()[0], layout.clips()[1]
    keep_txt = layout.frame_path(c0, 1).with_suffix(".txt")
    keep_txt.write_text("")
    keep_json = layout.frame_path(c1, 1).with_suffix(".json")
    keep_json.write_text(json.dumps([{"image": f"{c1.name}_1.png", "annotations": []}]))
    before = sorted(root.rglob("*.xml"))
    dry = run_propose(root, dry_run=True, quiet=True)
    assert sorted(root.rglob("*.xml")) == before  # a dry run writes nothing
    assert dry["proposed"] == {"masks": len(mask_frames) - 2} and dry["skipped_existing"] == 2
    s = run_propose(root, quiet=True)
    assert s["proposed"] == {"masks": len(mask_frames) - 2} and s["skipped_existing"] == 2
    assert keep_txt.read_text() == "" and json.loads(keep_json.read_text())[0]["annotations"] == []
    written = {(c.name, k) for c in layout.clips() for k in range(1, 6)
               if layout.frame_path(c, k).with_suffix(".xml").exists()} & mask_frames
    assert written == mask_frames - {(c0.name, 1), (c1.name, 1)}
    again = run_propose(root, quiet=True)
    assert again["proposed"] == {"masks": 0} and again["skipped_existing"] == len(mask_frames)
    # import: proposals come back as boxes close to the deleted ones
    keep_txt.unlink()
    keep_json.unlink()
    run_import(root, tmp_path / "new.csv", quiet=True)
    new = read_table(tmp_path / "new.csv")
    assert set(new.source_convention) == {"labelimg-1based"}
    ious = []
    for video, k in sorted(written):
        a = orig[(orig.video == video) & (orig.frame == k)].iloc[0]
        b = new[(new.video == video) & (new.frame == k)].iloc[0]
        assert b.xml_database == f"{PROPOSAL_DATABASE}:masks" and not b.verified and b.label == a.label
        ious.append(iou((a.xmin, a.ymin, a.xmax, a.ymax), (b.xmin, b.ymin, b.xmax, b.ymax)))
    assert sum(v >= 0.9 for v in ious) / len(ious) >= 0.95
    rep = run_validate(tmp_path / "new.csv", root)
    assert rep.summary["unchecked_proposals"] == len(written)
    f = [x for x in rep.findings if x.code == "frame-unchecked-proposal"]
    assert len(f) == 1 and f[0].severity == "info" and rep.exit_code(strict=False) == 0
    strict = run_validate(tmp_path / "new.csv", root, strict=True)
    assert [x.severity for x in strict.findings if x.code == "frame-unchecked-proposal"] == ["warning"]
    assert strict.exit_code(strict=True) == 1


def test_propose_cli_json_and_dry_run(root):
    res = CliRunner().invoke(cli, ["propose", "--root", str(root), "--dry-run", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["dry_run"] and doc["proposed"] == {"masks": 0}  # every frame of the demo has its XML
    res = CliRunner().invoke(cli, ["propose", "--help"])
    assert "--all-blobs" in res.output and "--dry-run" in res.output


def test_scale_boxes_rounds_outwards_and_clamps():
    from avsprep.annotations.propose import scale_boxes

    assert scale_boxes([(10, 20, 30, 41)], (100, 100), (200, 50)) == [(20, 10, 60, 21)]
    assert scale_boxes([(0, 0, 3, 3)], (3, 3), (4, 4)) == [(0, 0, 4, 4)]


def test_a_mask_of_another_size_than_its_frame_gives_a_scaled_box_and_a_warning(root, tmp_path):
    """Issue 21: a GT mask of another size than its frame wrote the mask's box with the frame's size in
    the XML (wrong pixel space), without a word."""
    from PIL import Image

    from avsprep.annotations.convention import LABELIMG_1BASED
    from avsprep.annotations.voc import read_voc

    layout = AVSBenchLayout.from_root(root)
    clip = next(c for c in layout.clips() if c.split == "train")
    frame, mpath = layout.frame_path(clip, 1), layout.mask_path(clip, 1)
    fw, fh = Image.open(frame).size
    mask = np.zeros((fh // 2, fw // 2), np.uint8)  # half the frame's size: the object at (10..30, 5..25)
    mask[5:25, 10:30] = 255
    Image.fromarray(mask).save(mpath)
    frame.with_suffix(".xml").unlink()
    res = run_propose(root, splits=["train"], quiet=True)
    warn = [f for f in res["findings"] if f["code"] == "propose-size-mismatch"]
    assert len(warn) == 1 and str(mpath) in warn[0]["message"] and str(frame) in warn[0]["message"]
    assert str(mpath) in res["text"] and str(frame) in res["text"]
    doc = read_voc(frame.with_suffix(".xml").read_bytes(), frame.with_suffix(".xml").name, convention=LABELIMG_1BASED)
    (box,) = doc.boxes
    assert (doc.width, doc.height) == (fw, fh)
    assert (box.xmin, box.ymin, box.xmax, box.ymax) == (20, 10, 60, 50)  # the mask's box x2, in pixel edges


def test_propose_label_studio_tasks_skip_annotated_frames(root, tmp_path):
    """--format label-studio: one task per mask frame without an annotation file, boxes as predictions;
    frames submitted in an earlier Label Studio export count as annotated."""
    layout = AVSBenchLayout.from_root(root)
    for c in layout.clips():
        for k in layout.mask_frames(c):
            layout.frame_path(c, k).with_suffix(".xml").unlink()
    c0 = layout.clips()[0]
    done = [{"id": 1, "data": {"image": f"/data/upload/1/0a1b2c3d-{c0.name}_1.png"},
             "annotations": [{"completed_by": 1, "result": []}]}]
    (layout.frames_dir() / "export.json").write_text(json.dumps(done))
    out = tmp_path / "ls"
    r = CliRunner().invoke(cli, ["propose", "--root", str(root), "--format", "label-studio", "--out", str(out),
                                 "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    tasks = json.loads((out / "tasks.json").read_text())
    want = {(c.name, k) for c in layout.clips() for k in layout.mask_frames(c)} - {(c0.name, 1)}
    assert {(t["data"]["avs_video"], t["data"]["avs_frame"]) for t in tasks} == want
    assert doc["skipped_existing"] == 1 and doc["proposed"]["masks"] == len(want)
    assert tasks[0]["predictions"][0]["model_version"] == "avsprep propose --from masks"
    assert (out / "labeling_config.xml").is_file() and "label-studio start" in (out / "README.md").read_text()
    r = CliRunner().invoke(cli, ["propose", "--root", str(root), "--format", "label-studio"])
    assert r.exit_code == 2 and "--out" in r.output
