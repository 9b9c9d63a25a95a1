"""Feature: every file an annotator hands in is read (VOC, YOLO, CreateML) or named by its cause;
one box convention per import; export writes labelImg's own bytes back."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from avsprep.cli import cli
from avsprep.annotations.convention import LABELIMG_1BASED, ZERO_BASED, decide, not_labelimg_reason
from avsprep.common.errors import DataError
from avsprep.annotations.export import run_export
from avsprep.annotations import createml, sniff, yolo
from avsprep.annotations.labelimg_xml import XmlFile, XmlObject, detect_writer, labelimg_xml_bytes
from avsprep.importer import run_import
from avsprep.annotations.table import read_table
from avsprep.annotations.voc import read_voc
from tests.conftest import FIXTURES, need
from tests.helpers.releases import labelimg_xml

# labelImg 1.8.6 files (fixtures/labelimg/README.md); legacy_v1_3_0.xml was written by the 2017 writer
CURRENT_WRITER = ["0a1B2c3D4e5_1.xml", "0a1B2c3D4e5_2.xml", "0a1B2c3D4e5_3.xml", "0a1B2c3D4e5_4.xml",
                  "0a1B2c3D4e5_5.xml", "full_frame_box.xml", "unicode_korean.xml", "windows_path.xml",
                  "size_zero.xml", "programmatic_unvalidated.xml"]


def s4_root(base: Path, clips, size=(224, 224), frames=True) -> Path:
    """A metadata CSV for ``clips`` [(name, split, category)] and (optionally) their PNG frames."""
    base.mkdir(parents=True, exist_ok=True)
    lines = ["name,start,category,split"] + [f"{n},0,{c},{s}" for n, s, c in clips]
    (base / "s4_meta_data.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    if frames:
        img = Image.new("RGB", size, (90, 120, 150))
        for n, s, c in clips:
            d = base / "s4_data" / "visual_frames" / s / c / n
            d.mkdir(parents=True, exist_ok=True)
            for k in range(1, 6):
                img.save(d / f"{n}_{k}.png")
    return base


def frame_dir(root: Path, name: str) -> Path:
    return next(root.glob(f"s4_data/visual_frames/*/*/{name}"))


# --------------------------------------------------------------------------- convention rule

def test_convention_decided_once_per_import():
    assert not_labelimg_reason([("5", "7", "20", "30")]) is None
    assert "left" in not_labelimg_reason([("0", "7", "20", "30")])
    assert "integer" in not_labelimg_reason([("5", "7", "20.5", "30")])
    assert decide({"a": None, "b": None}).convention == LABELIMG_1BASED
    d = decide({"a": None, "b": "xmin 0 at the left edge or beyond", "c": None})
    assert d.convention == ZERO_BASED and d.forced_by == [("b", "xmin 0 at the left edge or beyond")]
    assert "forced by 1 file" in d.describe()
    assert decide({"a": None}, "zero-based").convention == ZERO_BASED
    assert decide({"b": "x"}, "labelimg").convention == LABELIMG_1BASED
    with pytest.raises(ValueError):
        decide({}, "one-based")


def _zero_based_dataset(tmp_path, n=10, edge_files=1):
    """A CVAT-like zero-based writer: integers, and only ``edge_files`` files touch the left edge."""
    clips = [(f"c{i:02d}", "test", "dog_barking") for i in range(n)]
    root = s4_root(tmp_path / "root", clips)
    for i, (name, _, cat) in enumerate(clips):
        x0 = 0 if i < edge_files else 40
        (frame_dir(root, name) / f"{name}_1.xml").write_text(
            labelimg_xml(f"{name}_1", name, 224, 224, [(cat, x0, 50, 150, 170)]), encoding="utf-8")
    return root


def test_zero_based_dataset_is_read_zero_based_throughout(tmp_path):
    root = _zero_based_dataset(tmp_path)
    s = run_import(root, tmp_path / "b.csv", quiet=True)
    df = read_table(tmp_path / "b.csv")
    assert set(df.source_convention) == {ZERO_BASED}
    assert sorted(df.xmin.tolist()) == [0.0] + [40.0] * 9  # not 39 for the nine files off the edge
    assert s["box_convention"]["convention"] == ZERO_BASED
    assert [f["file"] for f in s["box_convention"]["forced_by"]] == ["s4_data/visual_frames/test/dog_barking/c00/c00_1.xml"]
    assert "forced by 1 file(s)" in s["text"]
    # the override reads the same files 1-based, all of them
    run_import(root, tmp_path / "l.csv", quiet=True, box_convention="labelimg")
    df = read_table(tmp_path / "l.csv")
    assert set(df.source_convention) == {LABELIMG_1BASED} and sorted(df.xmin)[:2] == [-1.0, 39.0]


def test_labelimg_dataset_is_read_one_based_throughout(tmp_path):
    root = _zero_based_dataset(tmp_path, edge_files=0)  # all xmin >= 1: labelImg's own output
    s = run_import(root, tmp_path / "b.csv", quiet=True)
    df = read_table(tmp_path / "b.csv")
    assert set(df.source_convention) == {LABELIMG_1BASED} and set(df.xmin) == {39.0}
    run_import(root, tmp_path / "z.csv", quiet=True, box_convention="zero-based")
    assert set(read_table(tmp_path / "z.csv").xmin) == {40.0}
    assert s["box_convention"]["how"] == "auto"


# --------------------------------------------------------------------------- YOLO and CreateML

def test_yolo_rows_polygons_and_bad_rows():
    r = yolo.parse_yolo("0 0.5 0.5 0.25 0.5\n\n1 0.1 0.1 0.3 0.1 0.3 0.4\nx 1 2 3 4\n0 1 2\n", "a_1.txt")
    assert [b.cls for b in r.boxes] == [0, 1] and r.boxes[1].polygon
    assert yolo.to_pixel_edges(r.boxes[0], 200, 100) == (75.0, 25.0, 125.0, 75.0)
    assert pytest.approx(yolo.to_pixel_edges(r.boxes[1], 100, 100)) == (10.0, 10.0, 30.0, 40.0)
    assert [f.code for f in r.findings] == ["yolo-polygon", "yolo-bad-row", "yolo-bad-row"]
    assert not yolo.parse_yolo("data/obj_train_data/a_1.jpg\n", "train.txt").readable
    assert not yolo.parse_yolo("# label:color_rgb:parts:actions\nperson:250,50,83::\n").readable
    assert yolo.parse_yolo("").readable and yolo.parse_yolo("").boxes == []
    assert yolo.parse_class_text("names:\n  0: dog\n  1: cat\n", "data.yaml") == ["dog", "cat"]
    assert yolo.parse_class_text("nc: 2\nnames: ['dog', 'cat']\n", "data.yaml") == ["dog", "cat"]
    assert yolo.parse_class_text("dog\ncat\n", "obj.names") == ["dog", "cat"]
    # labelImg's own writer arithmetic, inverted
    assert yolo.yolo_line(3, *yolo.from_pixel_edges(50, 60, 150, 160, 224, 224)) == \
        "3 0.446429 0.491071 0.446429 0.446429\n"


def test_createml_both_layouts_and_other_tools_json():
    lab = json.dumps([{"image": "v_1.png", "verified": True, "annotations": [
        {"label": "dog", "coordinates": {"x": 100, "y": 50, "width": 40, "height": 20}}]}])
    r = createml.parse_createml(lab, "v_1.json")
    assert r.images[0].verified and r.images[0].boxes == [("dog", 80.0, 40.0, 120.0, 60.0)]
    apple = json.dumps([{"imagefilename": "v_2.jpg", "annotation": [
        {"label": "cat", "coordinates": {"x": 10, "y": 10, "width": 4, "height": 6}}]}])
    assert createml.parse_createml(apple).images[0].boxes == [("cat", 8.0, 7.0, 12.0, 13.0)]
    coco = json.dumps({"images": [], "annotations": [], "categories": []})
    r = createml.parse_createml(coco, "x.json")
    assert not r.readable and "COCO" in r.findings[0].message
    assert "labelme" in createml.parse_createml(json.dumps({"shapes": [], "imagePath": "a.jpg"})).findings[0].message


def test_mixed_folder_yolo_createml_voc_and_strays(tmp_path):
    clips = [("a", "train", "dog_barking"), ("b", "val", "cat_meowing")]
    root = s4_root(tmp_path / "root", clips, size=(200, 100))
    da, db = frame_dir(root, "a"), frame_dir(root, "b")
    (da / "classes.txt").write_text("cat_meowing\ndog_barking\n")
    (da / "a_1.txt").write_text("1 0.5 0.5 0.5 0.5\n")
    (da / "a_2.txt").write_text("")                      # labelImg's file for a frame with no box
    (da / "a_3.txt").write_text("7 0.5 0.5 0.5 0.5\n")   # class index outside classes.txt
    (da / "a_4.json").write_text(json.dumps([{"image": "a_4.png", "verified": False, "annotations": [
        {"label": "dog_barking", "coordinates": {"x": 100, "y": 50, "width": 40, "height": 20}}]}]))
    (da / "a_5.xml").write_text(labelimg_xml("a_5", "a", 200, 100, [("dog_barking", 11, 21, 60, 70)]))
    (db / "b_1.xml").write_text("<annotations><version>1.1</version><meta/><image id='0'/></annotations>")
    (db / "notes.md").write_text("hello")
    s = run_import(root, tmp_path / "t.csv", quiet=True)
    df = read_table(tmp_path / "t.csv")
    a1 = df[(df.video == "a") & (df.frame == 1)].iloc[0]
    assert (a1.label, a1.xmin, a1.ymin, a1.xmax, a1.ymax) == ("dog_barking", 50.0, 25.0, 150.0, 75.0)
    assert a1.source_convention == ZERO_BASED and a1.xml.endswith("a_1.txt")
    a2 = df[(df.video == "a") & (df.frame == 2)]
    assert len(a2) == 1 and a2.iloc[0].label == "" and math.isnan(a2.iloc[0].xmin)
    a4 = df[(df.video == "a") & (df.frame == 4)].iloc[0]
    assert (a4.xmin, a4.xmax) == (80.0, 120.0)
    a5 = df[(df.video == "a") & (df.frame == 5)].iloc[0]
    assert (a5.xmin, a5.source_convention) == (10.0, LABELIMG_1BASED)
    codes = {f["code"]: f for f in s["findings"]}
    assert "yolo-class-unknown" in codes and codes["yolo-class-unknown"]["frame"] == 3
    assert "xml-cvat-task" in codes and "PASCAL VOC 1.1" in codes["xml-cvat-task"]["message"]
    assert codes["file-not-annotation"]["file"].endswith("notes.md")
    assert s["by_format"] == {"voc": 2, "yolo": 3, "createml": 1, "label-studio": 0} and s["images"] == 10
    assert s["exit_code"] == 1  # the CVAT task file cannot be read


def test_yolo_only_folder_and_no_class_file(tmp_path):
    root = s4_root(tmp_path / "root", [("a", "test", "dog_barking")])
    ann = tmp_path / "cvat" / "obj_train_data"
    ann.mkdir(parents=True)
    (ann / "a_1.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    s = run_import(root, tmp_path / "t.csv", annotations=tmp_path / "cvat", quiet=True)
    assert [f["code"] for f in s["findings"]] == ["yolo-no-class-file"] and s["frames"] == 0 and s["exit_code"] == 1
    (tmp_path / "cvat" / "obj.names").write_text("dog_barking\n")
    (tmp_path / "cvat" / "train.txt").write_text("data/obj_train_data/a_1.png\n")
    (tmp_path / "cvat" / "obj.data").write_text("classes = 1\n")
    (tmp_path / "cvat" / "notes.json").write_text('{"categories": [{"id": 0, "name": "dog_barking"}], "info": {}}')
    s = run_import(root, tmp_path / "t.csv", annotations=tmp_path / "cvat", quiet=True)
    assert s["frames"] == 1 and s["boxes"] == 1 and s["exit_code"] == 0
    named = sorted((f["code"], f["file"].rsplit("/", 1)[-1]) for f in s["findings"])
    assert named == [("file-not-annotation", "notes.json"), ("file-not-annotation", "obj.data"),
                     ("file-not-annotation", "train.txt")]  # named, not silently ignored
    ann.joinpath("a_2.txt").write_text("hello world\n")  # named like a frame: a broken label file
    s = run_import(root, tmp_path / "t.csv", annotations=tmp_path / "cvat", quiet=True)
    assert "yolo-unreadable" in [f["code"] for f in s["findings"]] and s["exit_code"] == 1
    ann.joinpath("a_2.txt").unlink()
    (tmp_path / "cvat" / "obj.names").write_text("cat_meowing\ndog_barking\n")
    s = run_import(root, tmp_path / "t.csv", annotations=tmp_path / "cvat", quiet=True)
    assert "yolo-classes-changed" in [f["code"] for f in s["findings"]]


def test_no_annotation_files_says_what_it_found(tmp_path):
    root = s4_root(tmp_path / "root", [("a", "test", "dog_barking")])
    with pytest.raises(DataError, match=r"found 5 image\(s\)"):
        run_import(root, tmp_path / "t.csv", quiet=True)
    (frame_dir(root, "a") / "a_1.txt").write_text("")
    with pytest.raises(DataError, match="no voc files.*1 file\\(s\\) of another --format"):
        run_import(root, tmp_path / "t.csv", quiet=True, fmt="voc")


# --------------------------------------------------------------------------- findings that name the cause

LABELME = (b"<annotation><filename>a_1.jpg</filename><folder>x</folder><source><sourceImage/></source>"
           b"<object><name>dog</name><deleted>0</deleted><polygon><pt><x>1</x><y>2</y></pt></polygon>"
           b"</object></annotation>")
ROLABELIMG = (b"<annotation><filename>a_1</filename><object><type>robndbox</type><name>dog</name>"
              b"<robndbox><cx>10</cx><cy>10</cy><w>5</w><h>4</h><angle>0.3</angle></robndbox></object>"
              b"</annotation>")
DLIB = b"<dataset><name>x</name><images><image file='a.jpg'><box top='1' left='2' width='3' height='4'/></image></images></dataset>"


@pytest.mark.parametrize("data,code,hint", [
    (LABELME, "xml-labelme", "Pascal VOC"), (ROLABELIMG, "xml-rotated-box", "roLabelImg"),
    (DLIB, "xml-dlib", "dlib"),
    (b"<annotations><version>1.1</version><image id='0' name='a.jpg'/></annotations>", "xml-cvat-task", "YOLO 1.1"),
])
def test_foreign_xml_is_named(data, code, hint):
    res = read_voc(data, "a_1.xml")
    assert not res.readable and [f.code for f in res.findings] == [code] and hint in res.findings[0].message


def test_mixed_rotated_and_normal_boxes_name_the_rotated_one():
    data = ROLABELIMG.replace(b"</annotation>", b"<object><type>bndbox</type><name>cat</name><bndbox><xmin>2</xmin>"
                              b"<ymin>3</ymin><xmax>9</xmax><ymax>9</ymax></bndbox></object></annotation>")
    res = read_voc(data, "a_1.xml")
    assert res.readable and [b.label for b in res.boxes] == ["cat"]
    assert [f.code for f in res.findings if f.severity == "error"] == ["box-rotated"]


def _doc(label: str) -> str:
    return (f"<annotation><filename>a_1.png</filename><size><width>224</width><height>224</height></size><object><name>{label}</name><bndbox><xmin>1</xmin>"
            "<ymin>2</ymin><xmax>30</xmax><ymax>40</ymax></bndbox></object></annotation>")


def test_encodings_are_named():
    mis = ('<?xml version="1.0" encoding="windows-1251"?>' + _doc("собака")).encode("utf-8")
    res = read_voc(mis, "a_1.xml")
    assert res.readable and res.boxes[0].label == "собака" and [f.code for f in res.findings] == ["encoding-mismatch"]
    for label, enc, name in (("собака лает", "cp1251", "windows-1251"), ("吉他 男歌手", "gbk", "GBK")):
        res = read_voc(_doc(label).encode(enc), "a_1.xml")
        assert not res.readable and res.findings[0].code == "xml-encoding", label
        assert name in res.findings[0].message
    assert sniff.guess_encoding("狗叫".encode("gbk")) == "GBK"
    # a correct declaration is honoured as before
    ok = ('<?xml version="1.0" encoding="windows-1251"?>' + _doc("собака")).encode("cp1251")
    assert read_voc(ok, "a_1.xml").boxes[0].label == "собака"


def test_filename_compared_by_base_name():
    doc = _doc("dog").replace("<filename>a_1.png", "<filename>task_3/sub/a_1.png")
    assert read_voc(doc.encode(), "a_1.xml").findings == []
    doc = _doc("dog").replace("<filename>a_1.png", "<filename>b_2.png")
    assert [f.code for f in read_voc(doc.encode(), "a_1.xml").findings] == ["filename-mismatch"]


# --------------------------------------------------------------------------- export

def test_labelimg_fixtures_survive_import_export_byte_identical(tmp_path):
    src = need(FIXTURES / "labelimg")
    names = sorted(p.name for p in src.glob("*.xml"))  # every labelImg-written file, none left out
    assert set(CURRENT_WRITER) | {"legacy_v1_3_0.xml"} <= set(names)
    clips = [(f"fx{i:02d}", "test", "dog_barking") for i in range(len(names))]
    root = s4_root(tmp_path / "root", clips, frames=False)
    ann = tmp_path / "ann"
    ann.mkdir()
    for (clip, _, _), name in zip(clips, names):
        shutil.copyfile(src / name, ann / f"{clip}_1.xml")
    s = run_import(root, tmp_path / "t.csv", annotations=ann, quiet=True)
    assert s["frames"] == len(names)
    table = read_table(tmp_path / "t.csv")
    writer = {clip: table[table.video == clip].xml_writer.iloc[0] for clip, _, _ in clips}
    for (clip, _, _), name in zip(clips, names):
        assert writer[clip] == ("labelimg-1.3.0" if name == "legacy_v1_3_0.xml" else "labelimg-1.8"), name
    out = tmp_path / "out"
    r = run_export(tmp_path / "t.csv", out, to="voc")
    assert r["files"] == len(names)
    for (clip, _, _), name in zip(clips, names):
        assert (out / f"{clip}_1.xml").read_bytes() == (src / name).read_bytes(), name
    # our reader keeps the 2017 file's <Difficult> flag (labelImg 1.8.6's own reader drops it)
    legacy = table[table.video == clips[names.index("legacy_v1_3_0.xml")][0]]
    assert list(legacy.label) == ["man", "기타"] and list(legacy.difficult) == [0, 1]
    assert list(legacy.xml_filename) == ["legacy_1"] * 2 and not legacy.verified.any()


def test_table_without_xml_writer_exports_in_todays_format(tmp_path):
    """Tables written before the xml_writer column load, and their files come back as labelImg 1.8.6 writes."""
    src = need(FIXTURES / "labelimg")
    root = s4_root(tmp_path / "root", [("fx00", "test", "dog_barking")], frames=False)
    ann = tmp_path / "ann"
    ann.mkdir()
    shutil.copyfile(src / "legacy_v1_3_0.xml", ann / "fx00_1.xml")
    run_import(root, tmp_path / "t.csv", annotations=ann, quiet=True)
    old = read_table(tmp_path / "t.csv").drop(columns=["xml_writer"])
    old.to_csv(tmp_path / "old.csv", index=False)
    assert list(read_table(tmp_path / "old.csv").xml_writer) == ["", ""]
    run_export(tmp_path / "old.csv", tmp_path / "out", to="voc")
    got = (tmp_path / "out" / "fx00_1.xml").read_bytes()
    assert got.startswith(b"<annotation>\n\t<folder>frames</folder>\n\t<filename>legacy_1</filename>")
    assert "<name>기타</name>".encode() in got and b"<difficult>1</difficult>" in got
    a, b = read_voc(got, "x.xml"), read_voc((src / "legacy_v1_3_0.xml").read_bytes(), "x.xml")
    assert a.writer == "labelimg-1.8" and b.writer == "labelimg-1.3.0"
    assert [(x.label, x.xmin, x.ymin, x.xmax, x.ymax, x.difficult) for x in a.boxes] == \
        [(x.label, x.xmin, x.ymin, x.xmax, x.ymax, x.difficult) for x in b.boxes]
    # a value no writer has is refused when the table is read, naming line and column
    bad = read_table(tmp_path / "t.csv")
    bad.loc[0, "xml_writer"] = "labelimg-9"
    bad.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(DataError, match=r"bad.csv line 2: column xml_writer is 'labelimg-9'"):
        read_table(tmp_path / "bad.csv")


def test_writer_style_is_told_from_the_bytes():
    legacy = need(FIXTURES / "labelimg" / "legacy_v1_3_0.xml").read_bytes()
    assert detect_writer(legacy) == "labelimg-1.3.0"
    assert detect_writer(legacy.replace(b"Difficult>", b"difficult>")) == "labelimg-1.3.2"  # v1.3.2-v1.3.3
    assert detect_writer(legacy.replace(b"<Difficult>0</Difficult>", b"<difficult>0</difficult>", 1)) == ""
    assert detect_writer(legacy.replace(b"\n", b"\r\n")) == ""  # re-saved on Windows: not the writer's bytes
    assert detect_writer(b"<?xml version='1.0'?>\n" + legacy) == ""
    assert detect_writer(legacy.replace(b' verified="no"', b"")) == ""  # the 1.3 writers always write it
    assert detect_writer(legacy.replace(b"&#44592;&#53440;", "기타".encode())) == ""  # they write ASCII only
    current = need(FIXTURES / "labelimg" / "0a1B2c3D4e5_5.xml").read_bytes()
    assert detect_writer(current) == "labelimg-1.8"
    assert detect_writer(current.replace(b'"yes"', b'"no"')) == ""
    assert detect_writer(current.replace(b"<difficult>", b"<Difficult>").replace(b"</difficult>", b"</Difficult>")) == ""
    assert detect_writer(current.replace(b"\t", b"    ")) == ""  # 4-space: another tool
    assert read_voc(legacy, "legacy_1.xml").writer == "labelimg-1.3.0"


def test_legacy_writer_bytes():
    """labelImg v1.3.2's writer output for this content (run unchanged): ASCII with numeric character
    references, <path/> when there is no path, double spaces kept in text."""
    want = (b'<annotation verified="yes">\n  <folder>&#54532;&#47112;&#51076;</folder>\n'
            b'  <filename>&#44592;&#53440;_1</filename>\n  <path/>\n  <source>\n    <database>Unknown</database>\n'
            b'  </source>\n  <size>\n    <width>3</width>\n    <height>2</height>\n    <depth>3</depth>\n  </size>\n'
            b'  <segmented>0</segmented>\n  <object>\n    <name>male  singer</name>\n    <pose>Unspecified</pose>\n'
            b'    <truncated>1</truncated>\n    <difficult>1</difficult>\n    <bndbox>\n      <xmin>1</xmin>\n'
            b'      <ymin>1</ymin>\n      <xmax>3</xmax>\n      <ymax>2</ymax>\n    </bndbox>\n  </object>\n'
            b'</annotation>\n')
    doc = XmlFile("프레임", "기타_1", 3, 2, 3, path=None, verified=True,
                  objects=[XmlObject("male  singer", 1, 1, 3, 2, 1)], writer="labelimg-1.3.2")
    assert labelimg_xml_bytes(doc) == want
    res = read_voc(want, "기타_1.xml")
    assert res.writer == "labelimg-1.3.2" and res.path == "" and res.boxes[0].label == "male  singer"
    assert res.folder == "프레임" and res.boxes[0].difficult == 1
    # the default (proposals, YOLO/CreateML imports) stays labelImg 1.8.6's layout
    doc.writer = "labelimg-1.8"
    assert labelimg_xml_bytes(XmlFile("프레임", "기타_1", 3, 2, 3, verified=True,
                                      objects=[XmlObject("male  singer", 1, 1, 3, 2, 1)])) == \
        labelimg_xml_bytes(doc)
    cur = labelimg_xml_bytes(doc)
    assert cur.startswith("<annotation verified=\"yes\">\n\t<folder>프레임</folder>".encode())
    assert b"<path" not in cur and b"<name>male\tsinger</name>" in cur  # 1.8.6's double-space bug
    with pytest.raises(ValueError, match="unknown labelImg writer style"):
        labelimg_xml_bytes(XmlFile("f", "a_1.png", 3, 2, writer="labelimg-9"))


def test_export_yolo_and_reimport(tmp_path):
    root = _zero_based_dataset(tmp_path, n=3, edge_files=0)
    run_import(root, tmp_path / "t.csv", quiet=True)
    out = tmp_path / "yolo"
    res = CliRunner().invoke(cli, ["export", str(tmp_path / "t.csv"), "--to", "yolo", str(out)])
    assert res.exit_code == 0, res.output
    assert (out / "classes.txt").read_text() == "dog_barking\n"
    txt = next(out.rglob("c00_1.txt")).read_text()
    assert txt == yolo.yolo_line(0, *yolo.from_pixel_edges(39, 49, 150, 170, 224, 224))
    run_import(root, tmp_path / "y.csv", annotations=out, quiet=True)
    a, b = read_table(tmp_path / "t.csv"), read_table(tmp_path / "y.csv")
    for c in ("xmin", "ymin", "xmax", "ymax"):
        assert (abs(a[c] - b[c]) < 224 * 1e-6).all()
    assert set(b.source_convention) == {ZERO_BASED} and list(a.label) == list(b.label)
    res = CliRunner().invoke(cli, ["export", str(tmp_path / "t.csv"), "--to", "yolo", str(out)])
    assert res.exit_code == 1 and "--overwrite" in res.output
