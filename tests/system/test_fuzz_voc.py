"""Property-based fuzz of the labelImg/VOC reader and the importer (docs/RELIABILITY.md).

Contract under test: whatever bytes or file names a user hands us, ``read_voc``
returns a ``VocResult`` whose problems are ``Finding`` objects, never an
unhandled exception and never a hang; the importer accounts for every XML file
(in the table or named in a finding). Mutations start from the labelImg
fixtures and real third-party VOC files, read in place.

The mutation engine (tests/helpers/fuzz.py) is shared with ``tools/robustness.py``,
which runs thousands of cases; here a few hundred, derandomised for CI.
"""

from __future__ import annotations

import csv
import random
import tempfile
import unicodedata
from pathlib import Path
from xml.sax.saxutils import escape

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.helpers.fuzz import (
    BUILTIN_SEED, MUTATIONS, OPS, SEEDS, check_result, doctypes, guarded_read, make_case,
)

# ----------------------------------------------------------------------------- tests: reader

def test_seeds_parse_cleanly():
    """The unmutated seeds are readable (else the fuzz below would only test error paths)."""
    ok = 0
    for name, data in SEEDS:
        res, _ = guarded_read(data, name)
        check_result(res, name)
        ok += res.readable
    assert ok >= len(SEEDS) - 1  # voc_real holds one AppleDouble file that is not XML


@settings(max_examples=300, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(st.integers(min_value=0, max_value=2 ** 32 - 1))
@example(0)
def test_mutated_xml_ends_as_result_or_finding(i):
    name, data, ops = make_case(i)
    res, _ = guarded_read(data, name)
    check_result(res, name)
    again, _ = guarded_read(data, name)  # pure: same bytes, same answer
    assert repr(again) == repr(res), ops


@pytest.mark.parametrize("op", OPS)
def test_every_mutation_operator(op):
    """Each operator alone, on every seed: no exception, no hang."""
    rng = random.Random(op)
    for name, data in SEEDS:
        mutated = MUTATIONS[op](data, rng)
        res, _ = guarded_read(mutated, name)
        check_result(res, name)


@settings(max_examples=80, deadline=None, derandomize=True, database=None)
@given(st.binary(max_size=4096))
def test_random_bytes(data):
    res, _ = guarded_read(data, "random.xml")
    check_result(res, "random.xml")


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(st.text(max_size=300), st.sampled_from(["label", "number", "file"]),
       st.sampled_from(["utf-8", "utf-16", "latin-1"]))
def test_random_unicode_in_fields(text, where, codec):
    """Arbitrary unicode as a label, a coordinate, or the file name itself."""
    doc = BUILTIN_SEED.decode()
    file = "clip_1.xml"
    if where == "label":
        doc = doc.replace("guitar", escape(text))
    elif where == "number":
        doc = doc.replace("<xmin>10<", f"<xmin>{escape(text)}<")
    else:
        file = text
    errors = "xmlcharrefreplace" if codec == "latin-1" else "surrogatepass"
    data = doc.encode(codec, errors)
    res, _ = guarded_read(data, file)
    check_result(res, file)
    if where == "label" and res.readable and codec != "latin-1":  # undeclared latin-1 is read as UTF-8
        # a label that parsed must be exactly the text we wrote (XML line-end normalisation aside)
        assert res.boxes[0].label == text.replace("\r\n", "\n").replace("\r", "\n")


@pytest.mark.parametrize("number,expect_box", [
    ("1e308", True), ("1e309", False), (str(10 ** 400), False), ("nan", False), ("-inf", False),
    ("-0", True), ("0" * 5000 + "1", True), ("1" + "0" * 5000, False), ("0x1F", False), ("", False),
], ids=lambda v: v if isinstance(v, bool) or len(v) < 20 else f"{v[:3]}..{len(v)}digits")
def test_hostile_numbers_become_findings(number, expect_box):
    """Overflowing, NaN/inf and oversized numerals: either a finite box or a box-level finding."""
    data = BUILTIN_SEED.replace(b"<xmin>10<", f"<xmin>{number}<".encode())
    res, _ = guarded_read(data, "clip_1.xml")
    check_result(res, "clip_1.xml")
    assert res.readable
    assert bool(res.boxes) == expect_box
    if not expect_box:
        assert any(f.code.startswith("box-") and f.severity == "error" for f in res.findings)


@pytest.mark.parametrize("k", range(len(doctypes())))
@pytest.mark.parametrize("utf16", [False, True])
def test_doctype_and_entities_are_refused(k, utf16):
    """XXE (file, network, parameter entity), billion laughs, recursion: a finding, nothing expanded."""
    dt = doctypes()[k]
    data = BUILTIN_SEED.replace(b"<annotation>", dt + b"\n<annotation>").replace(b"guitar", b"&xxe;")
    if utf16:
        data = b'<?xml version="1.0" encoding="UTF-16"?>\n'.decode().encode("utf-16") + \
            data.decode().encode("utf-16")[2:]
    res, _ = guarded_read(data, "x_1.xml")
    check_result(res, "x_1.xml")
    assert not res.readable and res.boxes == []
    assert any(f.severity == "error" for f in res.findings)


@pytest.mark.parametrize("levels", [300, 10_000, 100_000])
def test_deep_nesting(levels):
    data = BUILTIN_SEED.replace(b"</annotation>", b"<a>" * levels + b"</a>" * levels + b"</annotation>")
    res, _ = guarded_read(data, "deep_1.xml")
    check_result(res, "deep_1.xml")
    assert res.findings, "10k-level nesting must at least be reported"


# ----------------------------------------------------------------------------- tests: importer, file names

NAME_ALPHABET = st.sampled_from(list("abcXYZ019-_. ") + ["..", "\u00e9", "\uae30", "\U0001F3B8", "e\u0301",
                                                          "\u0130", "\u00df", "$", "#", "'", "~", "+"])
clip_names = st.lists(NAME_ALPHABET, min_size=1, max_size=12).map("".join).filter(
    lambda s: s not in (".", "..") and s.strip() == s and len(s.encode()) < 120)


def _write_root(tmp: Path, clips: list[str]) -> Path:
    root = tmp / "root"
    root.mkdir()
    with open(root / "s4_meta_data.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["name", "start", "category", "split"])
        for name in clips:
            w.writerow([name, 0, "playing_acoustic_guitar", "test"])
    return root


@settings(max_examples=25, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(clips=st.lists(clip_names, min_size=1, max_size=4, unique=True),
       frames=st.lists(st.sets(st.integers(1, 5), min_size=1), min_size=4, max_size=4),
       data=st.data())
@example(clips=["-_wznbUu3DY", "a..b", "x.y.z", "--help"], frames=[{1, 5}, {2}, {3, 4}, {1}], data=None)
def test_importer_file_names(clips, frames, data):
    """Odd but legal names import; junk names become findings; every XML file is accounted for."""
    from avsprep.importer import run_import
    from avsprep.annotations.table import read_table

    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        root = _write_root(tmp, clips)
        ann = tmp / "ann"
        (ann / "sub").mkdir(parents=True)
        expected = set()
        written = []
        for name, ks in zip(clips, frames):
            for k in sorted(ks):
                folder = ann / "sub" if k % 2 else ann
                ext = ".XML" if k == 5 else ".xml"
                p = folder / f"{name}_{k}{ext}"
                p.write_bytes(BUILTIN_SEED)
                expected.add((name, k))
                written.append(p)
        # names that must not match any frame: k out of range, no k, an unknown clip, NFD spelling
        junk = [f"{clips[0]}_0.xml", f"{clips[0]}_6.xml", f"{clips[0]}.xml", f"{clips[0]}_1.png.xml",
                "unlisted-clip_1.xml", "_1.xml", "..xml", ".hidden_2.xml"]
        nfd = unicodedata.normalize("NFD", clips[0])
        if nfd != clips[0]:
            junk.append(f"{nfd}_1.xml")
        for j in junk:
            (ann / j).write_bytes(BUILTIN_SEED)
            written.append(ann / j)
        (ann / f"{clips[0]}_1.xml.bak").write_bytes(b"not an xml file, ignored")

        out = tmp / "boxes.csv"
        summary = run_import(root, out, annotations=ann, quiet=True)
        table = read_table(out)
        got = set(zip(table["video"], table["frame"].astype(int)))
        assert got == expected
        assert summary["exit_code"] == 0
        named = {f["file"] for f in summary["findings"]} | set(table["xml"])
        for p in written:
            rel = p.relative_to(ann).as_posix()
            assert rel in named, f"{rel} neither imported nor reported"
        for j in junk:
            assert any(f["file"] == j and f["severity"] in ("warning", "error")
                       for f in summary["findings"]), j


def test_importer_survives_hostile_files(tmp_path):
    """A folder of mutated XMLs next to good ones: good frames import, every bad file is a finding."""
    from avsprep.importer import run_import
    from avsprep.annotations.table import read_table

    root = _write_root(tmp_path, ["-_wznbUu3DY", "clip"])
    ann = tmp_path / "ann"
    ann.mkdir()
    (ann / "-_wznbUu3DY_1.xml").write_bytes(BUILTIN_SEED)
    (ann / "clip_1.xml").write_bytes(BUILTIN_SEED)
    hostile = {f"clip_{k}.xml": make_case(1000 + k)[1] for k in (2, 3, 4, 5)}
    hostile["-_wznbUu3DY_2.xml"] = BUILTIN_SEED.replace(b"<annotation>", doctypes()[2] + b"<annotation>")
    hostile["-_wznbUu3DY_3.xml"] = b"\x00\x05\x16\x07" + bytes(100)
    hostile["-_wznbUu3DY_4.xml"] = b"<a>" * 10_000
    for n, d in hostile.items():
        (ann / n).write_bytes(d)
    out = tmp_path / "boxes.csv"
    summary = run_import(root, out, annotations=ann, quiet=True)
    table = read_table(out)
    videos = set(zip(table["video"], table["frame"].astype(int)))
    assert {("-_wznbUu3DY", 1), ("clip", 1)} <= videos
    named = {f["file"] for f in summary["findings"]} | set(table["xml"])
    assert set(hostile) <= named
    for n in ("-_wznbUu3DY_2.xml", "-_wznbUu3DY_3.xml", "-_wznbUu3DY_4.xml"):
        assert any(f["file"] == n and f["severity"] == "error" for f in summary["findings"]), n
    assert summary["exit_code"] == 1  # unreadable files fail the import (documented)
