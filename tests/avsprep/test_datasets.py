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


# --------------------------------------------------------------------------- extract's questions

def test_new_layout_answers_what_extract_asks():
    """Each setting's answers to ``avsprep extract`` (where a clip goes, how long, in which format,
    its metadata row), from the layouts alone."""
    from pathlib import Path

    import pandas as pd

    from avsprep.datasets import new_layout

    s4, ms3, avss = (new_layout("/R", s) for s in ("s4", "ms3", "avss"))
    assert isinstance(s4, AVSBenchLayout) and isinstance(ms3, AVSBenchLayout) and isinstance(avss, AVSSLayout)
    for layout in (s4, ms3, avss):
        assert isinstance(layout, Layout)
    # options: S4 needs --category, AVSS --label then --category, MS3 nothing
    assert "need --category" in s4.missing_option(None, None) and s4.missing_option("dog_barking", None) is None
    assert ms3.missing_option(None, None) is None
    assert "need --label" in avss.missing_option("dog", None) and "need --category" in avss.missing_option(None, "v2")
    assert avss.missing_option("dog", "v1s") is None
    # clips from a video / a row, their length (S4 start rule, MS3 5, AVSS by subset)
    a = s4.video_clip("a", "train", "dog_barking", 7)
    assert a == Clip("a", "train", "dog_barking", 7) and s4.clip_seconds(a) == 3
    assert ms3.video_clip("m", "test", "ignored") == Clip("m", "test", None, 0)
    assert ms3.clip_seconds(ms3.video_clip("m", "test", None)) == 5
    v = avss.video_clip("u", "val", "woman_piano", 0, "v2")
    assert v == AVSSClip("u", "val", "v2", ("woman", "piano")) and avss.clip_seconds(v) == 10
    assert avss.clip_seconds(avss.video_clip("u", "val", "dog", 0, "v1m")) == 5
    row = pd.Series({"name": "a", "start": "7.0", "category": "dog_barking", "split": "train"})
    assert s4.row_clip(row, "x.csv line 2") == a
    with pytest.raises(DataError, match=r"^x.csv line 3: start 'x' is not a number"):
        s4.row_clip(pd.Series({"name": "a", "start": "x", "category": "c", "split": "train"}), "x.csv line 3")
    assert ms3.row_clip(pd.Series({"video_id": "m", "split": "test"}), "") == Clip("m", "test", None, 0)
    assert avss.row_clip(pd.Series({"uid": "u", "split": "val", "label": "v2", "a_obj": "woman_piano"}), "") == v
    # paths
    R = Path("/R")
    assert s4.extract_frame_paths(a) == [R / f"s4_data/visual_frames/train/dog_barking/a/a_{k}.png" for k in (1, 2, 3)]
    assert ms3.extract_frame_paths(Clip("m", "test", None, 0))[-1] == R / "ms3_data/visual_frames/m/m.mp4_5.png"
    assert avss.extract_frame_paths(v) == [R / f"v2/u/frames/{i}.jpg" for i in range(10)]
    assert s4.raw_video_path(a) == R / "s4_data/raw_videos/train/dog_barking/a.mp4"
    assert ms3.raw_video_path(Clip("m", "test")) == R / "ms3_data/raw_videos/m.mp4"
    assert avss.raw_video_path(v) is None
    # formats
    assert (s4.frame_format, s4.frame_quality, s4.frame_size, s4.audio_rate) == ("png", None, 224, None)
    assert (ms3.frame_format, ms3.frame_size, ms3.audio_rate) == ("png", 224, None)
    assert (avss.frame_format, avss.frame_quality, avss.frame_size, avss.audio_rate) == ("jpg", 95, None, 48000)
    # metadata: file next to raw videos, header, key, rows, seed files
    assert (s4.raw_meta_file, ms3.raw_meta_file, avss.raw_meta_file) == ("s4_meta_data.csv", "ms3_meta_data.csv", None)
    assert s4.meta_header == ["name", "start", "category", "split"] and s4.meta_key == "name"
    assert ms3.meta_header == ["video_id", "split"] and ms3.meta_key == "video_id"
    assert avss.meta_header == ["vid", "uid", "s_min", "s_sec", "a_obj", "split", "label"] and avss.meta_key == "uid"
    assert s4.metadata_row(a, "/v/a.mp4") == {"name": "a", "start": "7", "category": "dog_barking", "split": "train"}
    assert ms3.metadata_row(Clip("m", "test", None, 0), "/v/m.mp4") == {"video_id": "m", "split": "test"}
    assert avss.metadata_row(v, "/v/long.mkv", 75, "woman_piano_") == {
        "vid": "long", "uid": "u", "s_min": "1", "s_sec": "15", "a_obj": "woman_piano_", "split": "val", "label": "v2"}
    assert avss.metadata_row(v, "/v/long.mkv")["a_obj"] == "woman_piano"
    assert s4.seed_files() == {} == ms3.seed_files() and list(avss.seed_files()) == ["label2idx.json"]
