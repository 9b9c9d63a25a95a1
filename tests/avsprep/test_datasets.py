"""Feature: one Layout per release (open_layout) and one coverage core for every layout."""

from __future__ import annotations

import pytest

from avsprep.annotations.table import from_records
from avsprep.common.errors import DataError
from avsprep.datasets import open_layout
from avsprep.datasets.avsbench import AVSBenchLayout, Clip, StemMatcher
from avsprep.datasets.avss import AVSSClip, AVSSLayout, PlaceMatcher
from avsprep.datasets.avss_classes import label2idx_json
from avsprep.datasets.base import SPLITS, Clip as ClipProtocol, Layout, Matcher, mask_frames, step_of
from avsprep.validate.coverage import check_coverage
from tests.helpers.releases import make_root

AVSS_META = ("vid,uid,s_min,s_sec,a_obj,split,label\n"
             "a,clip_v1s,0,0,dog,train,v1s\n"
             "b,clip_v2,0,0,man_guitar,val,v2\n")


def avss_root(base):
    base.mkdir(parents=True, exist_ok=True)
    (base / "metadata.csv").write_text(AVSS_META, encoding="utf-8")
    (base / "label2idx.json").write_text(label2idx_json(), encoding="utf-8")
    return base


# --------------------------------------------------------------------------- open_layout

def test_open_layout_s4_ms3_avss(tmp_path):
    s4 = open_layout(make_root(tmp_path / "s4", "s4"))
    assert isinstance(s4, AVSBenchLayout) and s4.setting == "s4" and isinstance(s4.matcher(), StemMatcher)
    ms3 = open_layout(make_root(tmp_path / "ms3", "ms3"))
    assert isinstance(ms3, AVSBenchLayout) and ms3.setting == "ms3"
    avss = open_layout(avss_root(tmp_path / "avss"), subsets="v2")
    assert isinstance(avss, AVSSLayout) and avss.setting == "avss" and isinstance(avss.matcher(), PlaceMatcher)
    assert [c.name for c in avss.clips()] == ["clip_v2"] and avss.describe() == "avss; subsets v2"
    # an explicit setting wins over the inference
    assert open_layout(tmp_path / "s4", "s4").setting == "s4"
    with pytest.raises(DataError, match="has no metadata.csv"):
        open_layout(tmp_path / "s4", "avss")


def test_open_layout_refuses_a_folder_that_is_no_release(tmp_path):
    (tmp_path / "nothing").mkdir()
    with pytest.raises(DataError) as err:
        open_layout(tmp_path / "nothing")
    msg = str(err.value)
    assert str(tmp_path / "nothing") in msg and "\n" not in msg


# --------------------------------------------------------------------------- shared facts

def test_both_layouts_offer_the_whole_protocol(tmp_path):
    for layout in (AVSBenchLayout("/R", "s4"), AVSBenchLayout("/R", "ms3"), open_layout(avss_root(tmp_path))):
        assert isinstance(layout, Layout) and isinstance(layout.matcher(), Matcher)
    assert isinstance(Clip("x", "train"), ClipProtocol) and isinstance(AVSSClip("u", "val", "v2", ()), ClipProtocol)


def test_frame_numbering_and_mask_frames_per_layout(tmp_path):
    s4, ms3 = AVSBenchLayout("/R", "s4"), AVSBenchLayout("/R", "ms3")
    avss = AVSSLayout("/A")
    train = Clip("x", "train", "dog_barking")
    assert list(s4.frame_indices(train)) == [1, 2, 3, 4, 5] and s4.mask_frames(train) == [1]
    assert ms3.mask_frames(Clip("x", "train")) == [1, 2, 3, 4, 5]
    v1s, v2 = AVSSClip("u", "train", "v1s", ("dog",)), AVSSClip("w", "train", "v2", ("man",))
    assert list(avss.frame_indices(v1s)) == [0, 1, 2, 3, 4] and avss.mask_frames(v1s) == [0]
    assert avss.mask_frames(v2) == list(range(10))
    assert mask_frames(range(1, 6), "val", single_source=True) == [1, 2, 3, 4, 5]
    assert step_of(s4, train, 1) == 0 and step_of(avss, v1s, 0) == 0 and step_of(avss, v2, 9) == 9
    assert SPLITS == ("train", "val", "test")
    assert (s4.table_category(train), ms3.table_category(Clip("x", "val")), avss.table_category(v2)) == \
        ("dog_barking", "", "v2")


# --------------------------------------------------------------------------- one coverage core

def row(video, frame, label, category, split="train", coords=(10.0, 10.0, 50.0, 60.0)):
    return {"split": split, "category": category, "video": video, "frame": frame, "xml": f"{video}/{frame}.xml",
            "xml_width": 224.0, "xml_height": 224.0, "label": label, "xmin": coords[0], "ymin": coords[1],
            "xmax": coords[2], "ymax": coords[3], "difficult": 0, "source_convention": "zero-based",
            "verified": True}


def test_coverage_core_on_s4():
    layout = AVSBenchLayout("/R", "s4")
    clip = Clip("vid", "train", "dog_barking")
    rows = [row("vid", k, "dog_barking", "dog_barking") for k in (1, 2, 3)] + [row("vid", 6, "dog_barking",
                                                                                  "dog_barking")]
    rows[1]["label"] = "cat_meowing"
    report = check_coverage(from_records(rows), layout, [clip], {("vid", k): (224, 224) for k in range(1, 6)})
    got = sorted((f.code, f.frame) for f in report.findings)
    assert got == [("frame-bad-index", 6), ("frame-missing", 4), ("frame-missing", 5),
                   ("label-category-mismatch", 2)]
    missing = [f for f in report.findings if f.code == "frame-missing"][0]
    assert "expected vid_4.xml" in missing.message
    s = report.summary
    assert s["per_class"]["dog_barking"] == {"clips": 1, "full": 0, "partial": 1, "none": 0}
    assert s["frames_expected"] == 5 and s["frames_annotated"] == 3 and "unchecked_proposals" in s


def test_coverage_core_on_avss():
    layout = AVSSLayout("/A", subsets="v1s,v2")
    v1s = AVSSClip("u1", "train", "v1s", ("dog",))
    v2 = AVSSClip("u2", "val", "v2", ("man", "guitar"))
    rows = [row("u1", i, "dog", "v1s") for i in range(5)]
    rows += [row("u2", 0, "h orse", "v2", split="val"), row("u2", 1, "guitar", "v2", split="val"),
             row("u2", 10, "guitar", "v2", split="val")]
    report = check_coverage(from_records(rows), layout, [v1s, v2], {})
    got = sorted((f.code, f.clip, f.frame) for f in report.findings)
    assert ("label-not-in-a-obj", "u2", 0) in got  # h orse is read as horse; a_obj lists man, guitar
    assert ("frame-bad-index", "u2", 10) in got
    assert [f.frame for f in report.findings if f.code == "frame-missing"] == list(range(2, 10))
    missing = [f for f in report.findings if f.code == "frame-missing"][0]
    assert "expected frames/2.xml" in missing.message
    s = report.summary
    assert s["per_class"] == {"v1s": {"clips": 1, "full": 1, "partial": 0, "none": 0},
                              "v2": {"clips": 1, "full": 0, "partial": 1, "none": 0}}
    assert s["subsets"] == ["v1s", "v2"] and s["frames_expected"] == 15 and "unchecked_proposals" not in s
    assert list(s)[:3] == ["setting", "subsets", "splits"]
