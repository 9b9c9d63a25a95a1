"""Feature: `avsprep validate` reports coverage and box problems per clip and frame."""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

from avsprep.cli import cli
from avsprep.common.findings import CODES, Finding
from avsprep.datasets.avsbench import S4_CLASSES, Clip, AVSBenchLayout
from avsprep.annotations.table import empty_table, from_records
from avsprep.datasets.classes import normalise_label
from avsprep.validate import run_validate
from avsprep.validate.boxes import check_label
from avsprep.validate.coverage import check_coverage
from tests.conftest import META, need
from tests.helpers.releases import frame_xml, labelimg_xml, make_root


def imported(tmp_path, setting="s4", name="boxes.csv", edit=None):
    """Make a tiny root, let ``edit(root)`` damage it, import it; return (root, table path)."""
    root = make_root(tmp_path / "root", setting=setting)
    if edit:
        edit(root)
    out = tmp_path / name
    res = CliRunner().invoke(cli, ["import", "--root", str(root), "-o", str(out), "--quiet"])
    assert res.exit_code in (0, 1), res.output
    return root, out


def validate_cli(*args):
    return CliRunner().invoke(cli, ["validate", *map(str, args)])


def found(report, code):
    return [f for f in report.findings if f.code == code]


# --------------------------------------------------------------------------- acceptance scenarios

def test_all_clips_fully_covered_exit_0(tmp_path):
    root, table = imported(tmp_path)
    res = validate_cli(table, "--root", root)
    assert res.exit_code == 0, res.output
    assert "Result: OK." in res.stdout
    report = run_validate(table, root)
    assert report.findings == []
    s = report.summary
    assert s["coverage"] == {"clips": 3, "full": 3, "partial": 0, "none": 0}
    assert s["per_split"]["val"] == {"clips": 1, "full": 1, "partial": 0, "none": 0}
    assert s["per_class"]["horse_clip-clop"]["full"] == 1 and s["per_class"]["race_car"]["clips"] == 0
    assert s["boxes"] == 15 and s["frames_annotated"] == 15 and s["boxes_per_frame"] == {"1": 15}


def damage(root):
    frame_xml(root, "0001", 2).unlink()                                        # missing frame
    frame_xml(root, "0001", 4).write_text(labelimg_xml("0001_4", "0001", 224, 224, []))   # no box
    frame_xml(root, "a_b_c", 1).write_text(                                    # renamed label
        labelimg_xml("a_b_c_1", "a_b_c", 224, 224, [("dog_barking", 41, 51, 150, 170)]))
    frame_xml(root, "-_wznbUu3DY", 5).write_text(                              # box outside the image
        labelimg_xml("-_wznbUu3DY_5", "x", 224, 224, [("helicopter", 300, 10, 400, 90)]))


def test_damaged_annotations_give_findings_naming_clip_and_frame(tmp_path):
    root, table = imported(tmp_path, edit=damage)
    report = run_validate(table, root)
    where = {(f.code, f.clip, f.frame, f.severity) for f in report.findings}
    assert ("frame-missing", "0001", 2, "warning") in where
    assert ("frame-no-box", "0001", 4, "info") in where
    assert ("label-category-mismatch", "a_b_c", 1, "error") in where
    assert ("box-outside", "-_wznbUu3DY", 5, "error") in where
    assert len(report.findings) == 4
    outside = found(report, "box-outside")[0]
    assert outside.file.endswith("-_wznbUu3DY_5.xml") and "224x224" in outside.message
    assert report.summary["coverage"] == {"clips": 3, "full": 2, "partial": 1, "none": 0}
    res = validate_cli(table, "--root", root)
    assert res.exit_code == 1
    lines = res.stdout.splitlines()
    line = next(ln for ln in lines if "frame-missing" in ln)
    assert "clip=0001" in line and "frame=2" in line
    assert "Result: FAILED" in res.stdout


def test_strict_turns_warnings_into_exit_1(tmp_path):
    root, table = imported(tmp_path, edit=lambda r: frame_xml(r, "0001", 2).unlink())
    assert validate_cli(table, "--root", root).exit_code == 0
    res = validate_cli(table, "--root", root, "--strict")
    assert res.exit_code == 1
    doc = json.loads(validate_cli(table, "--root", root, "--strict", "--json").stdout)
    assert doc["exit_code"] == 1 and doc["strict"] is True


def test_json_is_one_document_on_stdout(tmp_path):
    root, table = imported(tmp_path, edit=damage)
    res = validate_cli(table, "--root", root, "--json", "--max-findings", "1")
    doc = json.loads(res.stdout)  # nothing else on stdout
    assert set(doc) >= {"summary", "findings", "exit_code"}
    assert doc["exit_code"] == res.exit_code == 1
    assert len(doc["findings"]) == 4  # --json lists all, whatever --max-findings says
    assert doc["summary"]["coverage"]["partial"] == 1
    assert {"code", "severity", "message", "file", "clip", "frame"} <= set(doc["findings"][0])


def test_max_findings_limits_the_text_report(tmp_path):
    root, table = imported(tmp_path, edit=damage)
    res = validate_cli(table, "--root", root, "--max-findings", "2")
    assert "Findings (2 of 4" in res.stdout
    assert sum(1 for ln in res.stdout.splitlines() if ln.startswith(("error", "warning", "info"))) == 2


def test_dash_names_as_arguments(tmp_path, monkeypatch):
    root = make_root(tmp_path / "-x")
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    assert runner.invoke(cli, ["import", "--root", "-x", "-o", "-boxes.csv"]).exit_code == 0
    res = runner.invoke(cli, ["validate", "--root", "-x", "--", "-boxes.csv"])
    assert res.exit_code == 0, res.output
    assert "-boxes.csv" in res.stdout
    frame_xml(root, "-_wznbUu3DY", 3).unlink()
    runner.invoke(cli, ["import", "--root", "-x", "-o", "-boxes.csv", "--overwrite"])
    res = runner.invoke(cli, ["validate", "--root=-x", "--json", "--", "-boxes.csv"])
    doc = json.loads(res.stdout)
    assert [(f["code"], f["clip"], f["frame"]) for f in doc["findings"]] == [("frame-missing", "-_wznbUu3DY", 3)]


def test_split_filter(tmp_path):
    root, table = imported(tmp_path, edit=damage)
    report = run_validate(table, root, splits=["val"])
    assert report.summary["coverage"]["clips"] == 1 and list(report.summary["per_split"]) == ["val"]
    assert {f.clip for f in report.findings} == {"0001"}
    res = validate_cli(table, "--root", root, "--split", "test", "--split", "train", "--json")
    assert json.loads(res.stdout)["summary"]["coverage"]["clips"] == 2


def test_clip_not_annotated_and_frame_image_missing(tmp_path):
    def edit(root):
        for k in range(1, 6):
            frame_xml(root, "a_b_c", k).unlink()
        frame_xml(root, "0001", 3).with_suffix(".png").unlink()

    root, table = imported(tmp_path, edit=edit)
    report = run_validate(table, root)
    assert [(f.clip, f.frame) for f in found(report, "clip-not-annotated")] == [("a_b_c", None)]
    assert not [f for f in report.findings if f.code == "frame-missing" and f.clip == "a_b_c"]
    missing = found(report, "frame-image-missing")
    assert [(f.clip, f.frame) for f in missing] == [("0001", 3)] and missing[0].file.endswith("0001_3.png")
    assert report.summary["coverage"]["none"] == 1


def test_reader_findings_from_the_sidecar_are_merged(tmp_path):
    def edit(root):
        d = frame_xml(root, "0001", 1).parent
        (d / "._0001_1.xml").write_bytes(b"\x00\x05\x16\x07junk")

    root, table = imported(tmp_path, edit=edit)
    report = run_validate(table, root)
    bad = found(report, "xml-unreadable")
    assert len(bad) == 1 and bad[0].clip == "0001" and bad[0].frame == 1
    assert report.exit_code() == 1
    assert not found(run_validate(table, root, splits=["train"]), "xml-unreadable")  # out of scope
    (table.parent / (table.name + ".findings.json")).write_text("{not json")
    assert found(run_validate(table, root), "findings-sidecar-unreadable")


def test_size_policy_rescale_and_reject(tmp_path):
    def edit(root):  # labelImg saw the frame at 448x448: <size> and boxes are twice too big
        frame_xml(root, "0001", 1).write_text(
            labelimg_xml("0001_1", "0001", 448, 448, [("dog_barking", 81, 101, 300, 340)]))

    root, table = imported(tmp_path, edit=edit)
    rescale = run_validate(table, root)
    [f] = rescale.findings
    assert (f.code, f.severity, f.clip, f.frame) == ("size-mismatch", "warning", "0001", 1)
    assert "448x448" in f.message and "224x224" in f.message
    reject = run_validate(table, root, size_policy="reject")
    [f] = reject.findings
    assert (f.code, f.severity) == ("size-mismatch", "error")
    res = validate_cli(table, "--root", root, "--size-policy", "reject")
    assert res.exit_code == 1


def test_size_zero_boxes_are_checked_against_the_real_frame(tmp_path):
    def edit(root):
        frame_xml(root, "0001", 1).write_text(
            labelimg_xml("0001_1", "0001", 0, 0, [("dog_barking", 189, 136, 762, 573)]))

    root, table = imported(tmp_path, edit=edit)
    report = run_validate(table, root)
    assert [(f.code, f.clip, f.frame) for f in report.findings] == [
        ("box-partly-outside", "0001", 1), ("size-zero", "0001", 1)]  # no size-mismatch, no rescale


def test_ms3_labels(tmp_path):
    def edit(root):
        p = next(root.glob("ms3_data/visual_frames/xv7eM6-UmkY_36/xv7eM6-UmkY_36.mp4_2.xml"))
        p.write_text(labelimg_xml("xv7eM6-UmkY_36.mp4_2", "x", 224, 224,
                                  [("guitar", 5, 5, 50, 50), ("Sounding", 60, 60, 120, 120)]))

    root, table = imported(tmp_path, setting="ms3", edit=edit)
    report = run_validate(table, root)
    assert sorted((f.code, f.clip, f.frame) for f in report.findings) == [
        ("label-case-drift", "xv7eM6-UmkY_36", 2), ("label-unknown", "xv7eM6-UmkY_36", 2)]
    assert report.summary["setting"] == "ms3" and report.summary["per_class"] == {}


# --------------------------------------------------------------------------- pure core

CLIP = Clip("-_abc", "train", "helicopter", 0)


def box(frame=1, label="helicopter", coords=(10.0, 10.0, 50.0, 60.0), size=(224.0, 224.0), video="-_abc"):
    return {"split": "train", "category": "helicopter", "video": video, "frame": frame,
            "xml": f"{video}_{frame}.xml", "xml_width": size[0], "xml_height": size[1], "label": label,
            "xmin": coords[0], "ymin": coords[1], "xmax": coords[2], "ymax": coords[3], "difficult": 0,
            "source_convention": "zero-based", "verified": False}


def core(rows, sizes=None, **kw):
    full = {k: box(frame=k) for k in range(1, 6)}
    for r in rows:
        if r["video"] == "-_abc":
            full[r["frame"]] = None
    rows = [r for r in full.values() if r is not None] + list(rows)
    sizes = {("-_abc", k): (224, 224) for k in range(1, 6)} if sizes is None else sizes
    return check_coverage(from_records(rows), AVSBenchLayout("/R", "s4"), [CLIP], sizes, **kw)


@pytest.mark.parametrize("coords,code,severity", [
    ((10.0, 10.0, 50.0, 60.0), None, None),
    ((0.0, 0.0, 224.0, 224.0), None, None),                      # full frame is inside
    ((50.0, 10.0, 10.0, 60.0), "box-inverted", "error"),
    ((100.0, 100.0, 100.0, 100.0), "box-degenerate", "error"),    # zero-area
    ((10.0, 10.0, 10.5, 60.0), "box-degenerate", "error"),        # under 1 px
    ((math.nan, 10.0, 50.0, 60.0), "box-not-finite", "error"),
    ((10.0, 10.0, math.inf, 60.0), "box-not-finite", "error"),
    ((-5.0, 10.0, 50.0, 60.0), "box-partly-outside", "warning"),
    ((200.0, 10.0, 300.0, 60.0), "box-partly-outside", "warning"),
    ((224.0, 10.0, 300.0, 60.0), "box-outside", "error"),
    ((-90.0, -1.0, -10.0, 60.0), "box-outside", "error"),
])
def test_box_checks(coords, code, severity):
    report = core([box(frame=3, coords=coords)])
    got = [(f.code, f.severity, f.frame) for f in report.findings]
    assert got == ([] if code is None else [(code, severity, 3)])


def test_duplicates_and_unknown_frame_size():
    report = core([box(frame=2), box(frame=2), box(frame=2, coords=(11.0, 10.0, 50.0, 60.0))])
    assert [(f.code, f.frame) for f in report.findings] == [("box-duplicate", 2)]
    sizes = {("-_abc", k): (224, 224) for k in range(1, 5)}  # frame 5 size unknown: bounds not checked
    assert core([box(frame=5, coords=(300.0, 10.0, 400.0, 60.0))], sizes=sizes).findings == []


@pytest.mark.parametrize("label,codes", [
    ("helicopter", []),
    ("Helicopter", ["label-case-drift"]),
    ("helicopter ", ["label-whitespace"]),
    ("\thelicopter", ["label-whitespace"]),
    ("race car", ["label-case-drift", "label-category-mismatch"]),
    ("race_car", ["label-category-mismatch"]),
    ("helicopterr", ["label-unknown"]),
    ("", ["label-empty"]),
    (" \t", ["label-empty"]),
])
def test_label_checks(label, codes):
    _, problems = check_label(label, S4_CLASSES, "helicopter")
    assert [c for c, _ in problems] == codes
    report = core([box(frame=1, label=label)])
    assert sorted(f.code for f in report.findings) == sorted(codes)


def test_labelimg_double_space_tab_and_hyphen():
    assert normalise_label(" Horse clip-clop\t") == "horse_clip-clop"
    _, problems = check_label("horse_clip_clop", S4_CLASSES, "horse_clip-clop")  # hyphen matters
    assert [c for c, _ in problems] == ["label-unknown"] and "did you mean 'horse_clip-clop'" in problems[0][1]
    canon, problems = check_label("playing\tacoustic guitar", S4_CLASSES, "playing_acoustic_guitar")
    assert canon == "playing_acoustic_guitar" and [c for c, _ in problems] == ["label-case-drift"]
    _, problems = check_label("helicopterr", S4_CLASSES, "helicopter")
    assert "did you mean 'helicopter'" in problems[0][1]


def test_orphan_rows_and_extra_findings_are_reported():
    rows = [box(video="ghost", frame=1)]
    extra = [Finding("xml-unreadable", "error", "bad", "x.xml", "-_abc", 2)]
    report = core(rows, extra_findings=extra)
    assert {f.code for f in report.findings} == {"xml-no-clip", "xml-unreadable"}
    assert report.findings[0].severity == "error"  # errors listed first


def test_every_code_has_a_known_severity():
    assert all(sev in ("error", "warning", "info") and text for sev, text in CODES.values())


def test_real_s4_metadata_with_no_annotations():
    need(META / "s4_meta_data.csv")
    layout = AVSBenchLayout(META, "s4")
    report = check_coverage(empty_table(), layout, layout.clips(), {})
    s = report.summary
    assert s["coverage"] == {"clips": 4932, "full": 0, "partial": 0, "none": 4932}
    assert {k: v["clips"] for k, v in s["per_split"].items()} == {"train": 3452, "val": 740, "test": 740}
    assert sum(v["clips"] for v in s["per_class"].values()) == 4932
    assert s["per_class"]["coyote_howling"]["clips"] == 62 and s["per_class"]["helicopter"]["clips"] == 311
    assert len(found(report, "clip-not-annotated")) == 4932
    assert report.exit_code() == 0 and report.exit_code(strict=True) == 1
