"""Feature: YOLO and CreateML annotations on AVSS frames (frames/{i}.txt, frames/{i}.json) import like the XMLs.

The demo release's labelImg XMLs are converted in the test, on each frame's real (non-224) size,
into the files labelImg / CVAT / Roboflow write; the import must give the VOC import's box table.
The VOC files are labelImg 1-based integers (read as xmin-1, ymin-1, xmax, ymax); YOLO and CreateML
are edge-based, so they are written from those edges and must read back within 1e-6 px.
"""

from __future__ import annotations

import json
import os
import re
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from avsprep.datasets.avss import AVSSLayout, PlaceMatcher, annotation_files, is_release_file, match_path
from avsprep.cli import cli
from avsprep.annotations.convention import LABELIMG_1BASED, ZERO_BASED
from avsprep.annotations.table import read_table
from avsprep.annotations.voc import read_voc_file

COORDS = ["xmin", "ymin", "xmax", "ymax"]


def codes(findings):
    return {(f["code"], f["clip"], f["frame"]) for f in findings}


def test_match_path_all_formats():
    assert match_path(("v2", "u_1", "frames", "3.txt")) == ("u_1", 3)
    assert match_path(("v1s", "u", "frames", "0.json")) == ("u", 0)
    assert match_path(("/", "data", "v2", "u", "frames", "9.JPG")) == ("u", 9)  # a CreateML image path
    assert match_path(("v2", "u", "frames", "classes.txt")) is None
    assert match_path(("v2", "u", "frames", "03.txt")) is None  # the release names frames 0..9, no padding


def test_release_files_are_not_annotations():
    assert is_release_file(("metadata.csv",)) and is_release_file(("label2idx.json",))
    assert is_release_file(("v2", "u", "audio.wav"))
    assert is_release_file(("v1m", "u", "labels_rgb", "0.png"))
    assert is_release_file(("v1s", "u", "labels_semantic", "0.png"))
    assert not is_release_file(("v2", "u", "frames", "0.json"))
    assert not is_release_file(("data.yaml",)) and not is_release_file(("v2", "classes.txt"))
    assert not is_release_file(("v2", "u", "notes.json"))


# ------------------------------------------------------------------ the demo release and its VOC table

@pytest.fixture(scope="module")
def base(tmp_path_factory):
    from avsprep.demo.avss import write_avss_demo

    root = tmp_path_factory.mktemp("avssfmt") / "rel"
    write_avss_demo(root, clips=3, seed=2, quiet=True)
    layout = AVSSLayout.from_root(root)
    v1m = next(c for c in layout.clips() if c.subset == "v1m")
    xml = layout.frame_path(v1m, 1).with_suffix(".xml")  # labelImg saves a frame with no box too
    xml.write_text(re.sub(r"\s*<object>.*</object>", "", xml.read_text(), flags=re.S))
    return root


@pytest.fixture(scope="module")
def voc_table(base, tmp_path_factory):
    out = tmp_path_factory.mktemp("voc") / "voc.csv"
    r = CliRunner().invoke(cli, ["import", "--root", str(base), "-o", str(out), "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["box_convention"]["convention"] == LABELIMG_1BASED and doc["frames_no_box"] == 1
    return read_table(out)


def derive(base, dst):
    """A copy of the release (frames hard-linked) without its XMLs."""
    shutil.copytree(base, dst, copy_function=os.link)
    for xml in dst.glob("*/*/frames/*.xml"):
        xml.unlink()
    return dst


def frames_of(base):
    """(subset, uid, i, (w, h) of the real JPEG, boxes as edges) for every XML of the release."""
    from PIL import Image

    out = []
    for xml in sorted(base.glob("*/*/frames/*.xml")):
        res = read_voc_file(xml)
        with Image.open(xml.with_suffix(".jpg")) as im:
            size = im.size
        boxes = [(b.label, b.xmin, b.ymin, b.xmax, b.ymax) for b in res.boxes_as(LABELIMG_1BASED)]
        out.append((xml.parts[-4], xml.parts[-3], int(xml.stem), size, boxes))
    return out


def same_boxes(got, want, tol):
    key = ["video", "frame"]
    got = got.sort_values(key, kind="stable").reset_index(drop=True)
    want = want.sort_values(key, kind="stable").reset_index(drop=True)
    assert len(got) == len(want)
    for col in ("split", "category", "video", "frame", "label"):
        assert got[col].tolist() == want[col].tolist(), col
    a, b = got[COORDS].to_numpy(float), want[COORDS].to_numpy(float)
    assert np.array_equal(np.isnan(a), np.isnan(b))
    ok = ~np.isnan(b)
    assert np.abs(a[ok] - b[ok]).max() <= tol


def run_import(root, out, *extra):
    r = CliRunner().invoke(cli, ["import", "--root", str(root), "-o", str(out), "--json", *extra])
    return r.exit_code, (json.loads(r.output) if r.output.lstrip().startswith("{") else r.output)


# ------------------------------------------------------------------ YOLO

@pytest.fixture(scope="module")
def yolo_tree(base, tmp_path_factory):
    """v1s: labelImg's frames/{i}.txt + frames/classes.txt (labelling order, per clip);
    v1m: CVAT's obj.names above, in v1m/; v2: Roboflow's data.yaml at the root."""
    root = derive(base, tmp_path_factory.mktemp("yolo") / "rel")
    frames = frames_of(base)
    everything = sorted({b[0] for *_, boxes in frames for b in boxes})
    per_clip: dict = {}
    for subset, uid, i, (w, h), boxes in frames:
        names = everything if subset != "v1s" else per_clip.setdefault(uid, [])
        rows = []
        for label, x0, y0, x1, y1 in boxes:
            if label not in names:
                names.append(label)
            cx, cy, bw, bh = (x0 + x1) / 2 / w, (y0 + y1) / 2 / h, (x1 - x0) / w, (y1 - y0) / h
            rows.append(f"{names.index(label)} {cx!r} {cy!r} {bw!r} {bh!r}\n")
        (root / subset / uid / "frames" / f"{i}.txt").write_text("".join(rows))
    for uid, names in per_clip.items():
        (root / "v1s" / uid / "frames" / "classes.txt").write_text("".join(n + "\n" for n in names))
    (root / "v1m" / "obj.names").write_text("\n".join(everything) + "\n")
    (root / "data.yaml").write_text("nc: %d\nnames: [%s]\n" % (len(everything), ", ".join(everything)))
    return root


def test_yolo_on_avss_frames_equals_voc_import(yolo_tree, voc_table, tmp_path):
    out = tmp_path / "yolo.csv"
    rc, doc = run_import(yolo_tree, out)
    assert rc == 0, doc
    assert doc["by_format"] == {"voc": 0, "yolo": doc["frames"], "createml": 0, "label-studio": 0}
    assert doc["frames"] == voc_table[["video", "frame"]].drop_duplicates().shape[0] == 60
    assert doc["by_severity"]["error"] == doc["by_severity"]["warning"] == 0, doc["findings"]
    assert set(doc["yolo_classes"]) >= {"data.yaml", "v1m/obj.names"}
    df = read_table(out)
    same_boxes(df, voc_table, 1e-6)
    assert set(df["source_convention"]) == {ZERO_BASED}
    assert df["xml"].str.endswith(".txt").all() and df["xml_width"].isna().all()  # sizes from the JPEGs
    # each v1s clip has its own labelImg classes.txt: expected, so only info
    differ = [f for f in doc["findings"] if f["code"] == "yolo-classes-differ"]
    assert [f["severity"] for f in differ] == ["info"]


def test_yolo_labels_checked_against_a_obj(yolo_tree, tmp_path):
    """A class file naming a class the clip's a_obj does not list: validate flags the box."""
    root = tmp_path / "rel"
    shutil.copytree(yolo_tree, root, copy_function=os.link)
    layout = AVSSLayout.from_root(root)
    clip = next(c for c in layout.clips() if c.subset == "v1s")
    cf = root / "v1s" / clip.name / "frames" / "classes.txt"
    other = next(n for n in ("dog", "horse", "piano", "helicopter", "cat", "car") if n not in clip.a_obj)
    names = cf.read_text().splitlines()
    cf.unlink()  # a new file, not the hard link
    cf.write_text("\n".join([other] + names[1:]) + "\n")
    table = tmp_path / "b.csv"
    assert run_import(root, table)[0] == 0
    r = CliRunner().invoke(cli, ["validate", str(table), "--root", str(root), "--json", "--subset", "v1s"])
    assert r.exit_code == 1
    found = codes(json.loads(r.output)["findings"])
    assert {("label-not-in-a-obj", clip.name, i) for i in range(5)} <= found
    assert not {f for f in found if f[0] == "label-not-in-a-obj" and f[1] != clip.name}


def test_yolo_validate_clean(yolo_tree, tmp_path):
    table = tmp_path / "b.csv"
    assert run_import(yolo_tree, table)[0] == 0
    r = CliRunner().invoke(cli, ["validate", str(table), "--root", str(yolo_tree), "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    assert rep["summary"]["coverage"]["full"] == rep["summary"]["coverage"]["clips"] == 9
    assert rep["summary"]["findings"]["error"] == 0


def test_export_to_yolo_and_back_within_labelimg_rounding(base, voc_table, tmp_path):
    """`avsprep export --to yolo` writes labelImg's 6 decimals at {subset}/{uid}/frames/{i}.txt;
    import -a DIR reads them back within that rounding (1e-6 of the frame size per value)."""
    table = tmp_path / "voc.csv"
    assert run_import(base, table)[0] == 0
    out = tmp_path / "yolo"
    r = CliRunner().invoke(cli, ["export", str(table), "--to", "yolo", str(out)])
    assert r.exit_code == 0, r.output
    assert (out / "classes.txt").is_file() and len(list(out.glob("*/*/frames/*.txt"))) == 60
    rc, doc = run_import(base, tmp_path / "back.csv", "-a", str(out), "--format", "yolo")
    assert rc == 0 and doc["frames"] == 60, doc
    same_boxes(read_table(tmp_path / "back.csv"), voc_table, 1e-6 * 400 + 1e-9)  # widest demo frame: 400 px


# ------------------------------------------------------------------ CreateML

@pytest.fixture(scope="module")
def createml_tree(base, tmp_path_factory):
    """v1s, v1m: labelImg's frames/{i}.json (one image each); v2: one JSON per frames/ folder holding
    all 10 images, with Apple's newer keys (imagefilename, annotation)."""
    root = derive(base, tmp_path_factory.mktemp("createml") / "rel")
    per_folder: dict = {}
    for subset, uid, i, _size, boxes in frames_of(base):
        anns = [{"label": lb, "coordinates": {"x": x0 + (x1 - x0) / 2, "y": y0 + (y1 - y0) / 2,
                                              "width": x1 - x0, "height": y1 - y0}}
                for lb, x0, y0, x1, y1 in boxes]
        folder = root / subset / uid / "frames"
        if subset == "v2":
            per_folder.setdefault(folder, []).append({"imagefilename": f"{i}.jpg", "annotation": anns})
        else:
            (folder / f"{i}.json").write_text(json.dumps([{"image": f"{i}.jpg", "verified": i == 0,
                                                           "annotations": anns}]))
    for folder, items in per_folder.items():
        (folder / "annotations.json").write_text(json.dumps(items))
    return root


def test_createml_on_avss_frames_equals_voc_import(createml_tree, voc_table, tmp_path):
    out = tmp_path / "cml.csv"
    rc, doc = run_import(createml_tree, out)
    assert rc == 0, doc
    assert doc["by_format"] == {"voc": 0, "yolo": 0, "createml": 30 + 3, "label-studio": 0}  # 30 v1 files + 3 v2 folders
    assert doc["frames"] == 60 and doc["frames_no_box"] == 1
    assert doc["by_severity"]["error"] == doc["by_severity"]["warning"] == 0, doc["findings"]
    df = read_table(out)
    same_boxes(df, voc_table, 1e-6)
    assert set(df["source_convention"]) == {ZERO_BASED}
    v1 = df[df["category"] != "v2"]
    assert (v1["verified"] == (v1["frame"] == 0)).all()  # labelImg's per-image flag is kept


def test_createml_file_outside_the_clip_matched_by_image_path(base, voc_table, tmp_path):
    """One CreateML file for a whole v2 subset under --annotations: each image path names its clip."""
    layout = AVSSLayout.from_root(base)
    items = []
    for subset, uid, i, _size, boxes in frames_of(base):
        if subset == "v2":
            items.append({"image": f"/home/me/avs/v2/{uid}/frames/{i}.jpg", "verified": False,
                          "annotations": [{"label": lb, "coordinates": {"x": (x0 + x1) / 2, "y": (y0 + y1) / 2,
                                                                          "width": x1 - x0, "height": y1 - y0}}
                                          for lb, x0, y0, x1, y1 in boxes]})
    ann = tmp_path / "ann"
    ann.mkdir()
    (ann / "v2.json").write_text(json.dumps(items))
    rc, doc = run_import(base, tmp_path / "v2.csv", "-a", str(ann), "--subset", "v2")
    assert rc == 0 and doc["frames"] == 30, doc
    want = voc_table[voc_table["video"].isin({c.name for c in layout.clips() if c.subset == "v2"})]
    same_boxes(read_table(tmp_path / "v2.csv"), want, 1e-6)
    # without a path there is no clip to name: a finding, not a guess
    for it in items:
        it["image"] = it["image"].rsplit("/", 1)[-1]
    (ann / "v2.json").write_text(json.dumps(items))
    rc, doc = run_import(base, tmp_path / "v2b.csv", "-a", str(ann), "--subset", "v2")
    assert rc == 0 and doc["frames"] == 0
    assert sum(f["code"] == "xml-bad-name" for f in doc["findings"]) == 30


# ------------------------------------------------------------------ what the mapping refuses

def test_avss_mapping_findings(base, tmp_path):
    root = derive(base, tmp_path / "rel")
    layout = AVSSLayout.from_root(root)
    v1s = next(c for c in layout.clips() if c.subset == "v1s")
    v2 = next(c for c in layout.clips() if c.subset == "v2")
    f1, f2 = root / "v1s" / v1s.name / "frames", root / "v2" / v2.name / "frames"
    (f1 / "classes.txt").write_text("dog\n")
    (f1 / "0.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (f1 / "7.txt").write_text("0 0.5 0.5 0.2 0.2\n")  # a v1s clip has frames 0..4
    (f1 / "1.txt").write_text("3 0.5 0.5 0.2 0.2\n")  # class 3 of a 1-class file
    (f2 / "2.txt").write_text("")
    (f2 / "2.json").write_text(json.dumps([{"image": "2.jpg", "annotations": []}]))  # the same frame twice
    (f2 / "x.txt").write_text("")
    rc, doc = run_import(root, tmp_path / "b.csv")
    assert rc == 0, [f for f in doc["findings"] if f["severity"] == "error"]
    found = codes(doc["findings"])
    assert ("frame-bad-index", v1s.name, 7) in found
    assert ("yolo-class-unknown", v1s.name, 1) in found
    assert ("xml-duplicate-frame", v2.name, 2) in found
    assert any(c == "xml-bad-name" for c, *_ in found)
    assert not any(c in ("json-not-createml", "file-not-annotation") for c, *_ in found)  # label2idx.json, wavs
    df = read_table(tmp_path / "b.csv")
    row = df[(df["video"] == v1s.name) & (df["frame"] == 0)].iloc[0]
    from PIL import Image

    with Image.open(layout.frame_path(v1s, 0)) as im:
        w, h = im.size
    assert (w, h) != (224, 224)
    assert [row[c] for c in COORDS] == pytest.approx([0.4 * w, 0.4 * h, 0.6 * w, 0.6 * h], abs=1e-9)


def test_avss_walk_skips_release_files(base):
    files = [p.relative_to(base).as_posix() for p in annotation_files(base, base)]
    assert files and all("/frames/" in f for f in files)
    assert not any(f.endswith((".wav", ".csv")) or "labels_" in f for f in files)
    matcher = PlaceMatcher(AVSSLayout.from_root(base))
    uid = next(iter(matcher.all_uids))
    assert matcher.where("0", ("elsewhere", "0.jpg"), ("D:", "x", uid, "frames", "0.jpg")) == (uid, 0)
    assert matcher.where("0", ("v2", uid, "frames", "4.jpg"), ("C:", "Users", "frames", "0.jpg")) == (uid, 4)


def test_avss_format_and_convention_options(base, voc_table, tmp_path):
    rc, doc = run_import(base, tmp_path / "y.csv", "--format", "yolo")
    assert rc != 0 and "no yolo files" in str(doc) and "frames/{i}" in str(doc)
    rc, doc = run_import(base, tmp_path / "z.csv", "--box-convention", "zero-based")
    assert rc == 0 and doc["box_convention"]["convention"] == ZERO_BASED
    z = read_table(tmp_path / "z.csv")
    d = z[COORDS].to_numpy(float) - voc_table[COORDS].to_numpy(float)
    ok = ~np.isnan(d).any(axis=1)
    assert ok.sum() == len(voc_table) - 1 and np.allclose(d[ok], [1, 1, 0, 0])
