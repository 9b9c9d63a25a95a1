"""Feature: Label Studio as the annotation front end (issue 20).

Our tasks out (export --to label-studio), Label Studio's JSON / JSON_MIN exports in (import),
the round trip within half a pixel on the demo release and on AVSS, every malformed file a
finding naming the file and the task id, and Label Studio's own converter reading our tasks.
"""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from lxml import etree

from avsprep.annotations import label_studio as ls
from avsprep.annotations.table import read_table, write_table
from avsprep.cli import cli
from tests.helpers.label_studio import HOW, as_exported, ls_python, run_converter

BOX = ["xmin", "ymin", "xmax", "ymax"]


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def same_boxes(a: pd.DataFrame, b: pd.DataFrame, tol: float = 0.5) -> float:
    """Assert both tables hold the same frames, labels and boxes (within ``tol`` px); the largest error."""
    key = ["video", "frame", "label", "xmin"]
    a = a.sort_values(key, na_position="first").reset_index(drop=True)
    b = b.sort_values(key, na_position="first").reset_index(drop=True)
    assert len(a) == len(b)
    assert a[["video", "frame", "label"]].fillna("").equals(b[["video", "frame", "label"]].fillna(""))
    err = np.nan_to_num(np.abs(a[BOX].to_numpy() - b[BOX].to_numpy()), nan=0.0)
    assert np.array_equal(a[BOX].isna().to_numpy(), b[BOX].isna().to_numpy())
    assert err.max() <= tol, err.max()
    return float(err.max())


@pytest.fixture(scope="module")
def s4(demo_root, tmp_path_factory):
    """The demo release and its imported table."""
    out = tmp_path_factory.mktemp("ls") / "boxes.csv"
    assert invoke("import", "--root", demo_root, "-o", out).exit_code == 0
    return demo_root, out


@pytest.fixture(scope="module")
def avss(tmp_path_factory):
    from avsprep.demo.avss import write_avss_demo

    root = tmp_path_factory.mktemp("lsavss") / "rel"
    write_avss_demo(root, clips=3, seed=3, quiet=True)
    out = root.parent / "boxes.csv"
    assert invoke("import", "--root", root, "-o", out).exit_code == 0
    return root, out


def verified_copy(table, out):
    df = read_table(table)
    df["verified"] = True
    write_table(df, out)
    return out


# ----------------------------------------------------------------------------- round trip

def test_round_trip_demo_within_half_a_pixel(s4, tmp_path):
    root, table = s4
    r = invoke("export", table, tmp_path / "ls", "--to", "label-studio", "--root", root, "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    before = read_table(table)
    assert doc["tasks"] == before.groupby(["video", "frame"]).ngroups and doc["annotations"] == 0
    tasks = json.loads((tmp_path / "ls" / "tasks.json").read_text())
    t = tasks[0]
    assert t["data"]["image"].startswith("/data/local-files/?d=s4_data/visual_frames/")
    res = t["predictions"][0]["result"][0]
    assert res["type"] == "rectanglelabels" and res["value"]["rotation"] == 0
    assert res["original_width"] == 224 and t["predictions"][0]["model_version"] == "avsprep export boxes.csv"
    ids = [r["id"] for t in tasks for p in t["predictions"] for r in p["result"]]
    assert len(set(ids)) == len(ids)  # unique, and stable:
    invoke("export", table, tmp_path / "ls2", "--to", "label-studio", "--root", root)
    assert (tmp_path / "ls2" / "tasks.json").read_bytes() == (tmp_path / "ls" / "tasks.json").read_bytes()

    # predictions are nobody's boxes: nothing comes back without --accept-predictions
    r = invoke("import", "--root", root, "-a", tmp_path / "ls", "-o", tmp_path / "none.csv", "--json")
    doc = json.loads(r.stdout)
    assert doc["rows"] == 0 and {f["code"] for f in doc["findings"]} >= {"ls-predictions-only"}
    r = invoke("import", "--root", root, "-a", tmp_path / "ls", "-o", tmp_path / "back.csv",
               "--accept-predictions", "--json")
    doc = json.loads(r.stdout)
    assert r.exit_code == 0 and doc["by_format"]["label-studio"] == 1
    back = read_table(tmp_path / "back.csv")
    assert same_boxes(before, back) < 1e-9 and not back["verified"].any()
    # the labeling config next to the tasks is no annotation file: an info, not an error
    assert [f["severity"] for f in doc["findings"] if f["file"].endswith("labeling_config.xml")] == ["info"]


def test_verified_frames_go_out_as_annotations_and_come_back_verified(s4, tmp_path):
    root, table = s4
    df = read_table(table)
    first = df["video"] == df["video"].iloc[0]
    df.loc[first, "verified"] = True
    write_table(df, tmp_path / "mixed.csv")
    r = invoke("export", tmp_path / "mixed.csv", tmp_path / "ls", "--to", "label-studio", "--root", root, "--json")
    assert json.loads(r.stdout)["annotations"] == df[first].groupby("frame").ngroups
    invoke("import", "--root", root, "-a", tmp_path / "ls", "-o", tmp_path / "back.csv")
    back = read_table(tmp_path / "back.csv")
    same_boxes(df[first], back)
    assert back["verified"].all()


@pytest.mark.parametrize("per_clip", [False, True])
def test_round_trip_avss(avss, tmp_path, per_clip):
    root, table = avss
    args = ["--per-clip"] if per_clip else []
    r = invoke("export", table, tmp_path / "ls", "--to", "label-studio", "--root", root, "--json", *args)
    assert r.exit_code == 0, r.output
    config = etree.fromstring((tmp_path / "ls" / "labeling_config.xml").read_bytes())
    assert len(config.findall(".//Label")) == 70
    if per_clip:
        task = json.loads((tmp_path / "ls" / "tasks.json").read_text())[0]
        assert len(task["data"]["images"]) in (5, 10) and config.find("Image").get("valueList") == "$images"
    invoke("import", "--root", root, "-a", tmp_path / "ls", "-o", tmp_path / "back.csv", "--accept-predictions")
    same_boxes(read_table(table), read_table(tmp_path / "back.csv"))


def test_config_classes_per_setting():
    from avsprep.datasets.avsbench import MS3_CLASSES, S4_CLASSES

    for classes, n in ((S4_CLASSES, 23), (MS3_CLASSES, 1)):
        root = etree.fromstring(ls.labeling_config(classes).encode())
        assert [e.get("value") for e in root.iter("Label")] == classes and len(classes) == n
    root = etree.fromstring(ls.labeling_config(['a "quoted" <class>']).encode())
    assert root.find(".//Label").get("value") == 'a "quoted" <class>'


def test_export_label_studio_needs_root(s4, tmp_path):
    _, table = s4
    r = invoke("export", table, tmp_path / "ls", "--to", "label-studio")
    assert r.exit_code == 1
    assert "--to label-studio needs --root" in r.output


# ----------------------------------------------------------------------------- reading

def rect(x, y, w, h, label="dog", rid="r1", rotation=0, **extra):
    item = {"id": rid, "type": "rectanglelabels", "from_name": "label", "to_name": "image",
            "original_width": 200, "original_height": 100,
            "value": {"x": x, "y": y, "width": w, "height": h, "rotation": rotation, "rectanglelabels": [label]}}
    item.update(extra)
    return item


def task(tid=7, annotations=(), predictions=(), image="/data/local-files/?d=a/clip_1.png"):
    return {"id": tid, "data": {"image": image}, "annotations": list(annotations), "predictions": list(predictions)}


def ann(*results, who=1, when="2024-01-01T00:00:00Z", cancelled=False):
    return {"id": 1, "completed_by": who, "result": list(results), "updated_at": when, "was_cancelled": cancelled}


def codes(res):
    return [f.code for f in res.findings]


def test_url_parts_of_every_storage():
    assert ls.url_parts("/data/local-files/?d=s4_data/visual_frames/x%20y/v_1.png") == \
        ("s4_data", "visual_frames", "x y", "v_1.png")
    assert ls.url_parts("/data/upload/3/1a2b3c4d-v_1.png") == ("data", "upload", "3", "v_1.png")
    assert ls.url_parts("/data/upload/3/-_abc_1.png")[-1] == "-_abc_1.png"  # no prefix: name kept
    assert ls.url_parts("s3://bucket/avss/uid/frames/3.jpg") == ("bucket", "avss", "uid", "frames", "3.jpg")
    assert ls.url_parts("gs://b/x/v_2.png")[-1] == "v_2.png"
    assert ls.url_parts("https://host/img/v_2.png?X-Amz-Signature=abc")[-1] == "v_2.png"
    assert ls.url_parts("data:image/png;base64,AAAA") == ()


def test_percent_to_pixels_on_the_real_frame_and_rotation():
    b = ls.LsBox("dog", 10, 20, 30, 40)
    assert ls.pixel_edges(b, 200, 100) == pytest.approx((20, 20, 80, 60))
    # 90 degrees clockwise about the top-left corner (20, 20): the box swings to the left of it
    r = ls.LsBox("dog", 10, 20, 30, 40, rotation=90)
    assert ls.pixel_edges(r, 200, 100) == pytest.approx((20 - 40, 20, 20, 20 + 60))
    res = ls.parse_label_studio([task(annotations=[ann(rect(10, 20, 30, 40, rotation=30))])], "f.json")
    assert codes(res) == ["ls-rotated-box"] and "task 7" in res.findings[0].message
    assert "axis-aligned box around the rotated rectangle" in res.findings[0].message


def test_percent_survives_label_studio_int_truncation():
    for w in (224, 256, 192, 640, 1280, 1920):
        for px in range(w + 1):
            assert int(ls.percent(px, w) / 100 * w) == px


def test_several_annotations_conflict_latest_annotator_and_cancelled():
    a1 = ann(rect(10, 10, 10, 10), who=1, when="2024-01-01")
    a2 = ann(rect(50, 10, 10, 10), who=2, when="2024-02-01")
    doc = [task(annotations=[a1, a2])]
    res = ls.parse_label_studio(doc, "f.json")
    assert res.images == [] and codes(res) == ["ls-annotation-conflict"]
    assert res.findings[0].severity == "error" and "task 7" in res.findings[0].message
    res = ls.parse_label_studio(doc, "f.json", ls.Choice(latest=True))
    assert res.images[0].boxes[0].x == 50 and res.findings[0].severity == "warning"
    res = ls.parse_label_studio(doc, "f.json", ls.Choice(annotator="1"))
    assert res.images[0].boxes[0].x == 10 and res.findings == []
    # agreeing annotations are no conflict; a cancelled one never counts
    assert ls.parse_label_studio([task(annotations=[a1, ann(rect(10, 10, 10, 10), who=3)])], "f").findings == []
    res = ls.parse_label_studio([task(annotations=[a1, ann(who=2, cancelled=True)])], "f")
    assert res.images[0].boxes[0].x == 10
    res = ls.parse_label_studio([task(annotations=[ann(who=2, cancelled=True)])], "f")
    assert res.images == [] and codes(res) == ["ls-skipped-task"]


def test_predictions_count_only_when_accepted():
    doc = [task(predictions=[{"model_version": "m", "result": [rect(1, 1, 5, 5)]}])]
    res = ls.parse_label_studio(doc, "f.json")
    assert res.images == [] and codes(res) == ["ls-predictions-only"]
    res = ls.parse_label_studio(doc, "f.json", ls.Choice(accept_predictions=True))
    assert len(res.images[0].boxes) == 1 and res.images[0].verified is False


def test_json_min_and_rectangle_plus_labels():
    doc = [{"image": "/data/local-files/?d=a/v_1.png", "id": 3, "annotator": "a@x", "annotation_id": 9,
            "label": [{"x": 10, "y": 20, "width": 30, "height": 40, "rotation": 0, "rectanglelabels": ["dog"],
                       "original_width": 200, "original_height": 100}]}]
    assert ls.is_label_studio(doc)
    res = ls.parse_label_studio(doc, "min.json")
    assert res.findings == [] and res.images[0].boxes[0].original == (200, 100)
    pair = [{"id": "q", "type": "rectangle", "original_width": 2, "original_height": 2,
             "value": {"x": 1, "y": 1, "width": 5, "height": 5}},
            {"id": "q", "type": "labels", "value": {"labels": ["cat"]}}]
    res = ls.parse_label_studio([task(annotations=[ann(*pair)])], "f")
    assert [b.label for b in res.images[0].boxes] == ["cat"]


def test_createml_is_not_label_studio():
    assert not ls.is_label_studio([{"image": "a.png", "annotations": [{"label": "x", "coordinates": {}}]}])


MALFORMED = {
    "string-coordinate": (rect("10", 10, 5, 5), "ls-bad-box"),
    "bool-coordinate": (rect(True, 10, 5, 5), "ls-bad-box"),
    "nan": (rect(float("nan"), 10, 5, 5), "ls-bad-box"),
    "negative": (rect(-5, 10, 5, 5), "ls-box-out-of-range"),
    "over-100": (rect(90, 10, 20, 5), "ls-box-out-of-range"),
    "zero-size": (rect(10, 10, 0, 5), "ls-box-out-of-range"),
    "polygon": ({"id": "p", "type": "polygonlabels", "value": {"points": [[1, 1], [2, 2], [1, 3]],
                                                               "polygonlabels": ["dog"]}}, "ls-not-rectangle"),
    "no-label": (rect(1, 1, 5, 5, label=None), "ls-bad-label"),
    "value-not-object": ({"id": "v", "type": "rectanglelabels", "value": [1, 2]}, "ls-bad-box"),
    "result-not-object": ("box", "ls-bad-box"),
    "missing-original-width": ({**rect(1, 1, 5, 5), "original_width": None}, "ls-no-original-size"),
    "string-rotation": (rect(1, 1, 5, 5, rotation="a lot"), "ls-bad-box"),
    "item-index-out-of-range": (rect(1, 1, 5, 5, item_index=4), "ls-bad-box"),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_result_is_a_finding_naming_file_and_task(name):
    item, code = MALFORMED[name]
    res = ls.parse_label_studio([task(tid=41, annotations=[ann(item)])], "export.json")
    assert code in codes(res)
    f = next(f for f in res.findings if f.code == code)
    assert f.file == "export.json" and "task 41" in f.message
    kept = sum(len(i.boxes) for i in res.images)
    assert kept == (1 if f.severity == "warning" else 0)  # warnings keep the box, errors skip it


@pytest.mark.parametrize("doc,code", [
    ([task(image=5)], "ls-bad-task"),
    ([{"id": 2, "data": "x", "annotations": []}], "ls-bad-task"),
    ([task(annotations="none")], "ls-bad-task"),
    ([task(annotations=[{"result": "x"}])], "ls-bad-task"),
    ([task(), 7], "ls-bad-task"),
])
def test_malformed_task_is_a_finding(doc, code):
    res = ls.parse_label_studio(doc, "export.json")
    assert code in codes(res) and all(f.file == "export.json" for f in res.findings)


def test_malformed_files_through_import(s4, tmp_path):
    """Through `avsprep import`: NaN, deep nesting, an unknown label, a wrong frame size."""
    root, table = s4
    df = read_table(table)
    video, frame = df["video"].iloc[0], int(df["frame"].iloc[0])
    name = df["xml_filename"].iloc[0]
    ann_dir = tmp_path / "a"
    ann_dir.mkdir()
    (ann_dir / "nan.json").write_text(
        '[{"id": 1, "data": {"image": "/data/upload/1/0badcafe-%s"}, "annotations": [{"result": '
        '[{"id": "n", "type": "rectanglelabels", "value": {"x": NaN, "y": 1, "width": 2, "height": 2, '
        '"rectanglelabels": ["dog"]}}]}]}]' % name)
    (ann_dir / "deep.json").write_text("[" * 5000 + "]" * 5000)
    good = [task(tid=5, image=f"s3://bucket/frames/{name}", annotations=[ann(
        {**rect(10, 10, 20, 20, label="no such class"), "original_width": 999})])]
    (ann_dir / "label.json").write_text(json.dumps(good))
    r = invoke("import", "--root", root, "-a", ann_dir, "-o", tmp_path / "t.csv", "--json")
    doc = json.loads(r.stdout)
    got = {(f["code"], f["file"]) for f in doc["findings"]}
    assert {("ls-bad-box", "nan.json"), ("json-too-deep", "deep.json"), ("ls-label-unknown", "label.json"),
            ("ls-size-mismatch", "label.json")} <= got
    assert r.exit_code == 1  # the deep file could not be read at all
    out = read_table(tmp_path / "t.csv")
    # label.json (read first) gives the frame its box; nan.json names the same frame: a duplicate
    assert out["video"].tolist() == [video] and out["frame"].tolist() == [frame]
    assert out["label"].tolist() == ["no such class"] and ("xml-duplicate-frame", "nan.json") in got


def test_format_choice_keeps_createml_and_label_studio_apart(s4, tmp_path):
    root, table = s4
    invoke("export", verified_copy(table, tmp_path / "v.csv"), tmp_path / "ls", "--to", "label-studio",
           "--root", root)
    r = invoke("import", "--root", root, "-a", tmp_path / "ls", "-o", tmp_path / "c.csv", "--format", "createml")
    assert r.exit_code == 1 and "no createml files" in r.output
    r = invoke("import", "--root", root, "-a", tmp_path / "ls", "-o", tmp_path / "l.csv", "--format",
               "label-studio", "--json")
    assert json.loads(r.stdout)["frames_by_format"]["label-studio"] == len(read_table(table))


# ----------------------------------------------------------------------------- Label Studio's converter

@pytest.fixture(scope="module")
def converter():
    py = ls_python()
    if py is None:
        pytest.skip(f"Label Studio's converter (label-studio-sdk) is not installed: {HOW}")
    return py


@pytest.fixture(scope="module")
def exported(s4, tmp_path_factory):
    """Our tasks (all verified: the converter reads annotations), as Label Studio exports them."""
    root, table = s4
    out = tmp_path_factory.mktemp("lsconv")
    invoke("export", verified_copy(table, out / "v.csv"), out / "ls", "--to", "label-studio", "--root", root)
    return root, table, out, as_exported(out / "ls" / "tasks.json", out / "export.json")


def test_label_studio_converter_to_voc_gives_our_boxes(converter, exported):
    root, table, out, tasks = exported
    run_converter(converter, "to-voc", out / "ls" / "labeling_config.xml", tasks, out / "voc")
    r = invoke("import", "--root", root, "-a", out / "voc", "-o", out / "voc.csv", "--json")
    doc = json.loads(r.stdout)
    assert doc["by_format"]["voc"] == len(read_table(table)) and doc["box_convention"]["convention"] == "zero-based"
    assert same_boxes(read_table(table), read_table(out / "voc.csv")) == 0.0  # integer edges, exact


def test_label_studio_converter_to_yolo_gives_our_boxes(converter, exported):
    root, table, out, tasks = exported
    run_converter(converter, "to-yolo", out / "ls" / "labeling_config.xml", tasks, out / "yolo")
    r = invoke("import", "--root", root, "-a", out / "yolo", "-o", out / "yolo.csv", "--json")
    assert json.loads(r.stdout)["by_format"]["yolo"] == len(read_table(table))
    assert same_boxes(read_table(table), read_table(out / "yolo.csv")) < 1e-3  # YOLO's %f digits


def test_our_reader_reads_the_converters_yolo_import(converter, exported, tmp_path):
    """label-studio-converter import yolo: YOLO files -> Label Studio JSON, which we read back."""
    root, table, out, _ = exported
    src = tmp_path / "yolo-in"
    invoke("export", table, src / "labels", "--to", "yolo", "--root", root)
    (src / "images").mkdir()
    df = read_table(table)
    for p in (src / "labels").rglob("*.txt"):
        if p.name == "classes.txt":
            shutil.move(p, src / "classes.txt")
            continue
        p.rename(src / "labels" / p.name)
        frame = next(root.rglob(p.stem + ".png"))
        shutil.copy(frame, src / "images" / frame.name)
    (tmp_path / "ann").mkdir()
    run_converter(converter, "from-yolo", src, tmp_path / "ann" / "ls.json")
    r = invoke("import", "--root", root, "-a", tmp_path / "ann", "-o", tmp_path / "back.csv", "--json")
    doc = json.loads(r.stdout)
    assert doc["by_format"]["label-studio"] == 1, doc["findings"][:3]
    back = read_table(tmp_path / "back.csv")
    assert back["verified"].all()  # the converter writes annotations
    assert same_boxes(df, back) < 1e-3
    assert math.isnan(back["xml_width"].iloc[0])
