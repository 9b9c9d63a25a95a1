"""Feature: `avsprep import` reads labelImg XMLs next to AVSBench frames into the box table."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
from click.testing import CliRunner

from avsprep.cli import cli
from avsprep.common.errors import DataError
from avsprep.datasets.base import walk_files
from avsprep.importer import classify, run_import
from avsprep.annotations.table import COLUMNS, read_table, sidecar_path

from tests.helpers.releases import frame_xml, labelimg_xml, make_root


def test_import_reads_every_frame_and_converts_labelimg_boxes(tmp_path):
    root = make_root(tmp_path / "root")
    out = tmp_path / "boxes.csv"
    summary = run_import(root, out, quiet=True)
    assert summary["exit_code"] == 0
    assert summary["files"] == 15 and summary["boxes"] == 15 and summary["frames_no_box"] == 0
    assert summary["findings"] == []
    df = read_table(out)
    assert list(df.columns) == COLUMNS
    assert len(df) == 15
    row = df[(df.video == "-_wznbUu3DY") & (df.frame == 3)].iloc[0]
    assert (row.split, row.category, row.label) == ("train", "helicopter", "helicopter")
    assert (row.xmin, row.ymin, row.xmax, row.ymax) == (40.0, 50.0, 150.0, 170.0)
    assert row.source_convention == "labelimg-1based"
    assert row.xml == "s4_data/visual_frames/train/helicopter/-_wznbUu3DY/-_wznbUu3DY_3.xml"
    assert (row.xml_width, row.xml_height) == (224.0, 224.0)
    assert set(df.video) == {"-_wznbUu3DY", "0001", "a_b_c"}  # '0001' stays a string
    assert json.loads(sidecar_path(out).read_text())["findings"] == []


def test_empty_frame_gives_one_marker_row(tmp_path):
    root = make_root(tmp_path / "root")
    p = frame_xml(root, "0001", 4)
    p.write_text(labelimg_xml("0001_4", "0001", 224, 224, [], verified=True), encoding="utf-8")
    out = tmp_path / "boxes.csv"
    summary = run_import(root, out, quiet=True)
    assert summary["frames_no_box"] == 1 and summary["boxes"] == 14
    df = read_table(out)
    marker = df[(df.video == "0001") & (df.frame == 4)]
    assert len(marker) == 1
    r = marker.iloc[0]
    assert r.label == "" and all(math.isnan(r[c]) for c in ("xmin", "ymin", "xmax", "ymax"))
    assert bool(r.verified) is True


def test_unreadable_and_unmatched_files_are_findings(tmp_path):
    root = make_root(tmp_path / "root")
    d = frame_xml(root, "0001", 1).parent
    (d / "._0001_1.xml").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + bytes(range(200)))
    (d / "notes.xml").write_text(labelimg_xml("notes", "x", 224, 224, []), encoding="utf-8")
    (d / "ghost_2.xml").write_text(labelimg_xml("ghost_2", "x", 224, 224, []), encoding="utf-8")
    sub = d / "copy"
    sub.mkdir()
    (sub / "0001_2.xml").write_text(labelimg_xml("0001_2", "x", 224, 224, []), encoding="utf-8")
    out = tmp_path / "boxes.csv"
    summary = run_import(root, out, quiet=True)
    codes = {(f["code"], f["file"].rsplit("/", 1)[-1]) for f in summary["findings"]}
    assert ("xml-unreadable", "._0001_1.xml") in codes
    assert ("xml-bad-name", "notes.xml") in codes
    assert ("xml-no-clip", "ghost_2.xml") in codes
    assert ("xml-duplicate-frame", "0001_2.xml") in codes
    dup = next(f for f in summary["findings"] if f["code"] == "xml-duplicate-frame")
    assert dup["clip"] == "0001" and dup["frame"] == 2
    assert summary["exit_code"] == 1  # a file could not be read at all
    df = read_table(out)
    assert len(df) == 15  # the valid frames are still imported, the copy is not
    saved = json.loads(sidecar_path(out).read_text())["findings"]
    assert {f["code"] for f in saved} >= {"xml-unreadable", "xml-bad-name", "xml-no-clip"}


def test_find_xml_files_includes_dotfiles_and_upper_case(tmp_path):
    """What import reads as VOC: the walk of the annotation folder, classified by name."""
    (tmp_path / "b").mkdir()
    for name in ("b/z_1.xml", "a_1.XML", "._a_1.xml", "a_1.png", ".a_1.xml.tmp-1"):
        (tmp_path / name).write_text("x")
    got = [p.relative_to(tmp_path).as_posix() for p in walk_files(tmp_path) if classify(p) == "voc"]
    assert got == ["._a_1.xml", "a_1.XML", "b/z_1.xml"]


def test_annotations_folder_outside_root(tmp_path):
    root = make_root(tmp_path / "root", xml=False)
    ann = tmp_path / "labels" / "batch1"
    ann.mkdir(parents=True)
    (ann / "a_b_c_5.xml").write_text(labelimg_xml("a_b_c_5", "x", 224, 224, [("horse_clip-clop", 1, 1, 224, 224)]),
                                     encoding="utf-8")
    out = tmp_path / "boxes.csv"
    summary = run_import(root, out, annotations=ann, quiet=True)
    df = read_table(out)
    assert summary["files"] == 1 and len(df) == 1
    r = df.iloc[0]
    assert r.xml == "a_b_c_5.xml"  # relative to the annotations dir
    assert (r.xmin, r.ymin, r.xmax, r.ymax) == (0.0, 0.0, 224.0, 224.0)  # full frame 1,1,W,H


def test_no_xml_at_all_is_a_data_error_naming_the_folder(tmp_path):
    root = make_root(tmp_path / "root", xml=False)
    with pytest.raises(DataError, match="visual_frames"):
        run_import(root, tmp_path / "boxes.csv", quiet=True)


def test_import_ms3(tmp_path):
    root = make_root(tmp_path / "ms3", setting="ms3")
    out = tmp_path / "boxes.csv"
    summary = run_import(root, out, quiet=True)
    assert summary["setting"] == "ms3" and summary["boxes"] == 10 and summary["exit_code"] == 0
    df = read_table(out)
    assert set(df.video) == {"xv7eM6-UmkY_36", "-jlhuZfcw61w"}
    assert set(df.category) == {""} and set(df.label) == {"sounding"}
    assert sorted(df[df.video == "-jlhuZfcw61w"].frame) == [1, 2, 3, 4, 5]


# --------------------------------------------------------------------------- CLI

def test_cli_import_text_and_refuses_existing_output(tmp_path):
    root = make_root(tmp_path / "root")
    out = tmp_path / "boxes.csv"
    runner = CliRunner()
    res = runner.invoke(cli, ["import", "--root", str(root), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "15 box(es) on 15 frame(s)" in res.stdout
    res = runner.invoke(cli, ["import", "--root", str(root), "-o", str(out)])
    assert res.exit_code == 1 and "--overwrite" in res.stderr
    res = runner.invoke(cli, ["import", "--root", str(root), "-o", str(out), "--overwrite"])
    assert res.exit_code == 0


def test_cli_import_json_is_one_document(tmp_path):
    root = make_root(tmp_path / "root")
    d = frame_xml(root, "0001", 1).parent
    (d / "._0001_1.xml").write_bytes(b"\x00\x05\x16\x07junk")
    res = CliRunner().invoke(cli, ["import", "--root", str(root), "-o", str(tmp_path / "b.csv"), "--json"])
    doc = json.loads(res.stdout)
    assert res.exit_code == 1 and doc["exit_code"] == 1
    assert doc["boxes"] == 15 and doc["by_severity"]["error"] == 1


def test_cli_root_and_output_starting_with_dash(tmp_path, monkeypatch):
    make_root(tmp_path / "-x")
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(cli, ["import", "--root", "-x", "-o", "-boxes.csv"])
    assert res.exit_code == 0, res.output
    df = read_table(tmp_path / "-boxes.csv")
    assert "-_wznbUu3DY" in set(df.video)


def test_import_cli_does_not_import_torch():
    code = "import sys, avsprep.cli, avsprep.importer, avsprep.validate; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
