"""Feature: the AVSBench S4/MS3 layout: metadata, settings, frame names and paths."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from avsprep.common.errors import DataError
from avsprep.datasets.avsbench import MS3_CLASSES, S4_CLASSES, Clip, AVSBenchLayout, parse_frame_stem, read_metadata
from tests.conftest import META, need


def test_s4_classes_exact_spelling_and_order():
    assert len(S4_CLASSES) == 23 == len(set(S4_CLASSES))
    assert S4_CLASSES[0] == "baby_laughter" and S4_CLASSES[-1] == "lawn_mowing"
    assert S4_CLASSES[6] == "horse_clip-clop" and S4_CLASSES[15] == "helicopter"
    assert MS3_CLASSES == ["sounding"]


def test_predefined_classes_files_match_layout():
    ann = Path(__file__).resolve().parents[2] / "annotations"
    assert (ann / "predefined_classes.txt").read_text(encoding="utf-8").splitlines() == S4_CLASSES
    assert (ann / "predefined_classes_ms3.txt").read_text(encoding="utf-8").splitlines() == MS3_CLASSES


def test_real_s4_metadata_counts():
    need(META / "s4_meta_data.csv")
    lay = AVSBenchLayout(META, "s4")
    clips = lay.clips()
    assert len(clips) == 4932
    assert Counter(c.split for c in clips) == {"train": 3452, "val": 740, "test": 740}
    assert {c.category for c in clips} == set(S4_CLASSES)
    assert all(isinstance(c.start, int) and 0 <= c.start <= 6 for c in clips)
    assert [c.name for c in clips] == sorted(c.name for c in clips)
    by_name = lay.clip_index()
    assert by_name["-_wznbUu3DY"] == Clip("-_wznbUu3DY", "train", "helicopter", 0)
    assert len(lay.clips(["val", "test"])) == 1480


def test_real_ms3_metadata_counts():
    need(META / "ms3_meta_data.csv")
    clips = AVSBenchLayout(META, "ms3").clips()
    assert len(clips) == 424
    assert Counter(c.split for c in clips) == {"train": 296, "val": 64, "test": 64}
    assert all(c.category is None and c.start is None for c in clips)
    assert "xv7eM6-UmkY_36" in {c.name for c in clips}


def test_setting_inference(tmp_path):
    need(META / "s4_meta_data.csv")
    with pytest.raises(DataError, match=str(META)):
        AVSBenchLayout.from_root(META)  # the shared folder holds both CSVs
    assert AVSBenchLayout.from_root(META, "ms3").setting == "ms3"
    with pytest.raises(DataError, match="neither"):
        AVSBenchLayout.from_root(tmp_path)
    (tmp_path / "ms3_meta_data.csv").write_text("video_id,split\nabc,train\n")
    assert AVSBenchLayout.from_root(tmp_path).setting == "ms3"
    with pytest.raises(DataError, match="s4_meta_data.csv"):
        AVSBenchLayout.from_root(tmp_path, "s4")


def test_ids_stay_strings(tmp_path):
    p = tmp_path / "s4_meta_data.csv"
    p.write_text("name,start,category,split\n0001,0,helicopter,train\n-_abc,5,race_car,test\nNA,1,race_car,val\n")
    df = read_metadata(p)
    assert list(df["name"]) == ["0001", "-_abc", "NA"]
    names = [c.name for c in AVSBenchLayout(tmp_path, "s4").clips()]
    assert names == sorted(["0001", "-_abc", "NA"])


@pytest.mark.parametrize("text,match", [
    ("name,category,split\na,helicopter,train\n", "start"),
    ("name,start,category,split\na,0,helicopter,training\n", "line 2"),
    ("name,start,category,split\na,0,helicopter,train\na,0,helicopter,val\n", "twice"),
])
def test_bad_metadata_names_the_file(tmp_path, text, match):
    p = tmp_path / "s4_meta_data.csv"
    p.write_text(text)
    with pytest.raises(DataError, match=match) as exc:
        read_metadata(p)
    assert str(p) in str(exc.value)


@pytest.mark.parametrize("stem,setting,expected", [
    ("-_wznbUu3DY_1", "s4", ("-_wznbUu3DY", 1)),
    ("a_b_c_5", "s4", ("a_b_c", 5)),
    ("0001_3", "s4", ("0001", 3)),
    ("x_6", "s4", None),
    ("x_0", "s4", None),
    ("x_", "s4", None),
    ("_1", "s4", None),
    ("nounderscore", "s4", None),
    ("xv7eM6-UmkY_36.mp4_2", "ms3", ("xv7eM6-UmkY_36", 2)),
    ("-abc.mp4_5", "ms3", ("-abc", 5)),
    ("xv7eM6-UmkY_36_2", "ms3", None),
    ("abc.mp4_9", "ms3", None),
])
def test_parse_frame_stem(stem, setting, expected):
    assert parse_frame_stem(stem, setting) == expected


def test_paths_follow_the_reference_layout():
    s4 = AVSBenchLayout("/R", "s4")
    c = Clip("-_wznbUu3DY", "train", "helicopter", 0)
    assert s4.frame_path(c, 2).as_posix() == "/R/s4_data/visual_frames/train/helicopter/-_wznbUu3DY/-_wznbUu3DY_2.png"
    assert s4.mask_path(c, 1).as_posix() == "/R/s4_data/gt_masks/train/helicopter/-_wznbUu3DY/-_wznbUu3DY_1.png"
    assert s4.logmel_path(c).as_posix() == "/R/s4_data/audio_log_mel/train/helicopter/-_wznbUu3DY.pkl"
    assert s4.wav_path(c).as_posix() == "/R/s4_data/audio_wav/train/helicopter/-_wznbUu3DY.wav"
    assert s4.mask_frames(c) == [1] and s4.mask_frames(Clip("a", "test", "helicopter", 0)) == [1, 2, 3, 4, 5]
    ms3 = AVSBenchLayout("/M", "ms3")
    m = Clip("xv7eM6-UmkY_36", "val")
    assert ms3.frame_path(m, 3).as_posix() == "/M/ms3_data/visual_frames/xv7eM6-UmkY_36/xv7eM6-UmkY_36.mp4_3.png"
    assert ms3.mask_path(m, 3).as_posix() == "/M/ms3_data/gt_masks/val/xv7eM6-UmkY_36/xv7eM6-UmkY_36_3.png"
    assert ms3.logmel_path(m).as_posix() == "/M/ms3_data/audio_log_mel/val/xv7eM6-UmkY_36.pkl"
    assert ms3.mask_frames(Clip("a", "train")) == [1, 2, 3, 4, 5]
    assert ms3.frames_dir().as_posix() == "/M/ms3_data/visual_frames" and ms3.classes() == ["sounding"]
    assert parse_frame_stem(ms3.frame_stem(m, 4), "ms3") == ("xv7eM6-UmkY_36", 4)
