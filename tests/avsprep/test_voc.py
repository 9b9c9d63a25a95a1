"""Feature: the labelImg/VOC reader turns any file into boxes and findings, never an exception."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings, strategies as st

from avsprep.annotations.voc import (
    LABELIMG_1BASED, MAX_XML_BYTES, ZERO_BASED, VocResult, detect_convention, read_voc, read_voc_file,
    to_edges,
)
from tests.conftest import FIXTURES, need


def codes(res: VocResult) -> list[str]:
    return [f.code for f in res.findings]


def all_fixture_xml() -> list[Path]:
    files = sorted(p for p in (FIXTURES / "voc_real").rglob("*") if p.name.lower().endswith(".xml"))
    files += sorted((FIXTURES / "labelimg").glob("*.xml"))
    return files


def read_fixture(rel: str) -> VocResult:
    p = need(FIXTURES / rel)
    return read_voc_file(p, name=p.name)


# --------------------------------------------------------------------------- the whole corpus

def test_every_fixture_file_reads_without_raising():
    files = all_fixture_xml()
    if not files:
        pytest.skip(f"shared fixtures not found under {FIXTURES}")
    assert len(files) >= 69  # 58 real + 11 labelImg-written
    unreadable = []
    for p in files:
        res = read_voc_file(p, name=p.name)
        assert isinstance(res, VocResult)
        for f in res.findings:
            assert f.file == p.name and f.code and f.message
        if not res.readable:
            unreadable.append(p.name)
        else:
            assert res.convention in (LABELIMG_1BASED, ZERO_BASED)
            for b in res.boxes:
                assert all(isinstance(v, float) for v in (b.xmin, b.ymin, b.xmax, b.ymax))
    assert unreadable == ["._000001.xml"]  # only the AppleDouble file


def test_labelimg_clip_fixtures():
    r1 = read_fixture("labelimg/0a1B2c3D4e5_1.xml")
    assert (r1.width, r1.height, r1.depth) == (640, 360, 3) and r1.filename == "0a1B2c3D4e5_1.png"
    assert r1.convention == LABELIMG_1BASED and len(r1.boxes) == 1 and r1.boxes[0].label == "guitar"
    assert codes(r1) == []
    r3 = read_fixture("labelimg/0a1B2c3D4e5_3.xml")
    man = next(b for b in r3.boxes if b.label == "man")
    assert (man.xmin, man.ymin, man.xmax, man.ymax) == (0.0, 99.0, 90.0, 360.0)  # xmin 1 -> edge 0
    r4 = read_fixture("labelimg/0a1B2c3D4e5_4.xml")
    assert r4.readable and r4.boxes == [] and r4.width == 640
    r5 = read_fixture("labelimg/0a1B2c3D4e5_5.xml")
    assert r5.verified is True and len(r5.boxes) == 2 and r1.verified is False


def test_full_frame_box_becomes_exact_frame_edges():
    r = read_fixture("labelimg/full_frame_box.xml")
    b = r.boxes[0]
    assert (b.xmin, b.ymin, b.xmax, b.ymax) == (0.0, 0.0, 640.0, 360.0)


def test_programmatic_floats_kept_zero_based():
    r = read_fixture("labelimg/programmatic_unvalidated.xml")
    assert r.convention == ZERO_BASED and len(r.boxes) == 5
    first = r.boxes[0]
    assert (first.xmin, first.ymin, first.xmax, first.ymax) == (12.5, 30.25, 200.75, 180.0)
    assert any(b.xmin == -5.0 for b in r.boxes)  # negatives pass through to validate
    assert any(b.xmin > b.xmax and b.ymin > b.ymax for b in r.boxes)  # inverted kept, judged by validate
    assert any(b.xmin == b.xmax == 100.0 for b in r.boxes)


def test_legacy_v1_3_0_capital_difficult_and_char_refs():
    r = read_fixture("labelimg/legacy_v1_3_0.xml")
    assert r.verified is False and r.filename == "legacy_1"
    labels = {b.label: b.difficult for b in r.boxes}
    assert labels == {"man": 0, "기타": 1}  # &#44592;&#53440; decoded; <Difficult> read
    assert "filename-mismatch" in codes(r)


def test_size_zero_and_unicode():
    r = read_fixture("labelimg/size_zero.xml")
    assert (r.width, r.height) == (0, 0) and "size-zero" in codes(r) and len(r.boxes) == 1
    real = read_fixture("voc_real/zhuzhenLi__ocr-digital-display/008000.xml")
    assert "size-zero" in codes(real) and len(real.boxes) == 1
    u = read_fixture("labelimg/unicode_korean.xml")
    assert {"기타", "남자 가수", "ピアノ", "狗"} <= {b.label for b in u.boxes}


def test_real_corpus_quirks():
    neg = read_fixture("voc_real/RachelF00__MarkerDemo-Automatically-Prepare-Your-PascalVOC2007-Dataset/000001.xml")
    assert neg.convention == ZERO_BASED and any(b.ymin == -1.0 for b in neg.boxes)
    empty = read_fixture("voc_real/dhiyu__ssd_x_pytorch/000211.xml")
    assert empty.readable and empty.boxes == [] and (empty.width, empty.height) == (524, 363)
    lm = read_fixture("voc_real/wkentaro__labelme/2011_000003.xml")
    assert len(lm.boxes) == 2 and codes(lm).count("difficult-empty") == 2  # labelImg itself reads 0 here
    assert lm.boxes[0].ymin == pytest.approx(107.36900369003689, abs=0)  # floats kept verbatim
    assert (lm.width, lm.height) == (500, 338)  # <height> before <width>
    cvat = read_fixture("voc_real/QuantuM410__cctv-count-object-detection/000001.xml")
    assert cvat.convention == ZERO_BASED and len(cvat.boxes) == 13
    assert any(b.xmin == pytest.approx(47.600000000000364) or b.xmax == pytest.approx(47.600000000000364)
               or b.ymin == pytest.approx(47.600000000000364) or b.ymax == pytest.approx(47.600000000000364)
               for b in cvat.boxes)
    nosize = read_fixture("voc_real/openvinotoolkit__datumaro/a.xml")
    assert nosize.width is None and "size-missing" in codes(nosize) and len(nosize.boxes) == 1
    rf = read_fixture("voc_real/openvinotoolkit__datumaro/val_001.xml")
    assert rf.convention == ZERO_BASED and rf.boxes[0].xmin == 0.0  # xmin,xmax,ymin,ymax order
    crlf = read_fixture("voc_real/hirotaka001__keras-yolo3/000001.xml")
    assert len(crlf.boxes) == 11
    ascii_decl = read_fixture("voc_real/heart6622__yolo-heart-hat/000005.xml")
    assert ascii_decl.readable and len(ascii_decl.boxes) == 1
    ad = read_fixture("voc_real/hirotaka001__keras-yolo3/._000001.xml")
    assert not ad.readable and codes(ad) == ["xml-unreadable"]
    zero = read_fixture("voc_real/WangRongsheng__SSD-tensorflow-mask/000039.xml")
    assert len(zero.boxes) == 113 and any(b.xmin == b.xmax for b in zero.boxes)


# --------------------------------------------------------------------------- conventions

def test_detect_convention_rule():
    assert detect_convention([("1", "1", "224", "224")]) == LABELIMG_1BASED
    assert detect_convention([("5", "7", "20", "30"), ("0", "3", "9", "9")]) == ZERO_BASED
    assert detect_convention([("5", "7", "20.0", "30")]) == ZERO_BASED
    assert detect_convention([("5", "-1", "20", "30")]) == ZERO_BASED
    assert detect_convention([]) == ZERO_BASED
    assert to_edges(1, 1, 224, 224, LABELIMG_1BASED) == (0.0, 0.0, 224, 224)
    assert to_edges(0.5, 1, 2, 3, ZERO_BASED) == (0.5, 1, 2, 3)


# --------------------------------------------------------------------------- encodings and bytes

DOC = ("<annotation><filename>a_1.png</filename><size><width>224</width><height>224</height></size>"
       "<object><name>{label}</name><difficult>{d}</difficult><bndbox><xmin>{x0}</xmin><ymin>2</ymin>"
       "<xmax>30</xmax><ymax>40</ymax></bndbox></object></annotation>")


def doc(label="dog", d="0", x0="1") -> str:
    return DOC.format(label=label, d=d, x0=x0)


@pytest.mark.parametrize("data", [
    doc().encode("utf-8"),
    b"\xef\xbb\xbf" + doc().encode("utf-8"),
    ('<?xml version="1.0" encoding="UTF-16"?>' + doc()).encode("utf-16"),
    ("<?xml version='1.0' encoding='us-ascii'?>\r\n" + doc().replace("><", ">\r\n<")).encode("ascii"),
    ('<?xml version="1.0"?>' + doc(label="caf&#233;")).encode("ascii"),
    ('<?xml version="1.0" encoding="iso-8859-1"?>' + doc(label="café")).encode("latin-1"),
    ('<?xml version="1.0" encoding="us-ascii"?>' + doc(label="café")).encode("utf-8"),  # labelImg forces UTF-8
])
def test_encodings(data):
    r = read_voc(data, "a_1.xml")
    assert r.readable, r.findings
    assert len(r.boxes) == 1 and r.boxes[0].label in ("dog", "café")
    assert (r.boxes[0].xmin, r.boxes[0].ymin) == (0.0, 1.0)


@pytest.mark.parametrize("data,code", [
    (b"", "xml-unreadable"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", "xml-unreadable"),
    (b"<annotation><object>", "xml-unreadable"),
    (b"<html><body/></html>", "xml-not-annotation"),
    (b" " * (MAX_XML_BYTES + 1), "xml-too-large"),
])
def test_bad_bytes_are_findings(data, code):
    r = read_voc(data, "x.xml")
    assert not r.readable and codes(r) == [code] and r.boxes == []
    assert r.findings[0].severity == "error"


def test_box_level_problems():
    missing = read_voc(doc().replace("<xmax>30</xmax>", "").encode(), "a_1.xml")
    assert codes(missing) == ["box-missing-coord"] and missing.boxes == []
    bad = read_voc(doc(x0="1O").encode(), "a_1.xml")
    assert codes(bad) == ["box-bad-coord"]
    nan = read_voc(doc(x0="nan").encode(), "a_1.xml")
    assert codes(nan) == ["box-not-finite"] and nan.readable
    odd = read_voc(doc(d="maybe").encode(), "a_1.xml")
    assert codes(odd) == ["difficult-bad-value"] and odd.boxes[0].difficult == 0
    cap = read_voc(doc(d="1").replace("difficult>", "DIFFICULT>").encode(), "a_1.xml")
    assert cap.boxes[0].difficult == 1
    tab = read_voc(doc(label=" tomato\tsoup ").encode(), "a_1.xml")
    assert tab.boxes[0].label == " tomato\tsoup "  # kept raw; validate judges the drift
    renamed = read_voc(doc().encode(), "a_2.xml")
    assert codes(renamed) == ["filename-mismatch"]


def test_extra_elements_are_tolerated():
    xml = (b"<annotation verified='yes'><!-- c --><size><height>10</height><width>20</width></size>"
           b"<object><occluded>1</occluded><attributes><attribute><name>x</name><value>1</value></attribute>"
           b"</attributes><bndbox><ymax>5</ymax><xmax>6</xmax><ymin>0.5</ymin><xmin>1</xmin></bndbox>"
           b"<name>cat</name><part><name>head</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>2</xmax>"
           b"<ymax>2</ymax></bndbox></part></object></annotation>")
    r = read_voc(xml, "x.xml")
    assert r.verified and (r.width, r.height) == (20, 10)
    assert len(r.boxes) == 1 and r.boxes[0].label == "cat"
    assert (r.boxes[0].xmin, r.boxes[0].ymin, r.boxes[0].xmax, r.boxes[0].ymax) == (1.0, 0.5, 6.0, 5.0)
    assert "object-part-ignored" in codes(r)


# --------------------------------------------------------------------------- hostile files

BILLION_LAUGHS = (
    '<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
    + "".join(f' <!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10 if i > 1 else "&lol;" * 10}">\n'
              for i in range(1, 10))
    + ']>\n<annotation><filename>&lol9;</filename></annotation>\n')


def xxe(secret_file: Path) -> str:
    return (f'<?xml version="1.0"?>\n<!DOCTYPE annotation [<!ENTITY xxe SYSTEM "file://{secret_file}">]>\n'
            "<annotation><filename>&xxe;</filename><object><name>&xxe;</name><bndbox><xmin>1</xmin>"
            "<ymin>1</ymin><xmax>9</xmax><ymax>9</ymax></bndbox></object></annotation>\n")


def test_billion_laughs_is_refused():
    for data in (BILLION_LAUGHS.encode(), BILLION_LAUGHS.replace('"1.0"?', '"1.0" encoding="UTF-16"?')
                 .encode("utf-16")):
        r = read_voc(data, "lol_1.xml")
        assert not r.readable and codes(r) == ["xml-entity"] and r.boxes == []


def test_xxe_is_refused_and_secret_never_appears(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET-31337")
    for data in (xxe(secret).encode(), xxe(secret).replace('"1.0"?', '"1.0" encoding="UTF-16"?').encode("utf-16")):
        r = read_voc(data, "a_1.xml")
        assert codes(r) == ["xml-entity"] and not r.readable
        assert "TOPSECRET" not in repr(r)


def test_hostile_files_through_the_cli(tmp_path):
    from avsprep.cli import cli
    from tests.helpers.releases import frame_xml, make_root

    root = make_root(tmp_path / "root")
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET-31337")
    frame_xml(root, "0001", 2).write_text(xxe(secret))
    frame_xml(root, "0001", 3).write_text(BILLION_LAUGHS)
    out = tmp_path / "boxes.csv"
    runner = CliRunner()
    res = runner.invoke(cli, ["import", "--root", str(root), "-o", str(out), "--json"])
    assert res.exit_code == 1
    doc_ = json.loads(res.stdout)
    hostile = {(f["clip"], f["frame"]) for f in doc_["findings"] if f["code"] == "xml-entity"}
    assert hostile == {("0001", 2), ("0001", 3)}
    val = runner.invoke(cli, ["validate", str(out), "--root", str(root)])
    assert val.exit_code == 1 and "xml-entity" in val.stdout
    written = out.read_text() + out.with_name(out.name + ".findings.json").read_text()
    for text in (res.stdout, res.stderr, val.stdout, val.stderr, written):
        assert "TOPSECRET" not in text and "lollollol" not in text


# --------------------------------------------------------------------------- fuzz

@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=400) | st.text(max_size=300).map(lambda s: ("<annotation>" + s).encode("utf-8")))
def test_reader_never_raises_on_arbitrary_bytes(data):
    r = read_voc(data, "f_1.xml")
    assert isinstance(r, VocResult)
    assert r.readable or any(f.severity == "error" for f in r.findings)
