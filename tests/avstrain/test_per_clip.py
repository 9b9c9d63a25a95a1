"""Feature: per-clip results and the listening gap (avstrain.per_clip, evaluate --per-clip)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner

from avstrain.cli import cli
from avstrain.metrics import MetricAccumulator, f_measure, mask_iou
from avstrain.per_clip import clip_metrics, per_clip_rows, records_to_clips, rows_to_csv, select, summary
from tests.helpers.report import random_checkpoint


def _clip(rng, t=5, s=16):
    logits = rng.normal(size=(t, s, s)).astype(np.float32)
    target = (rng.random((t, s, s)) > 0.6).astype(np.float32)
    return logits, target


def test_clip_metrics_are_the_official_functions_on_one_clip():
    rng = np.random.default_rng(0)
    logits, target = _clip(rng)
    acc = MetricAccumulator(batch_videos=1)
    acc.update(logits, target, video_index=[0], class_ids=[3])
    c = records_to_clips(acc.videos)[0]
    assert c["frames"] == 5 and c["label"] == 3
    assert c["iou"] == pytest.approx(mask_iou(logits, target), abs=1e-7)  # official: float32 rounding
    assert c["fscore"] == pytest.approx(f_measure(logits, target), abs=1e-6)


def test_frame_weighted_mean_is_miou_dataset_and_gap_is_the_difference():
    rng = np.random.default_rng(1)
    acc, acc_s = MetricAccumulator(), MetricAccumulator()
    for i, t in enumerate((5, 1, 3)):  # unequal GT frame counts
        logits, target = _clip(rng, t)
        acc.update(logits, target, video_index=[i], class_ids=[i])
        acc_s.update(-logits, target, video_index=[i], class_ids=[i])
    real, shuf = records_to_clips(acc.videos), records_to_clips(acc_s.videos)
    rows = per_clip_rows(["a", "-b", "c"], ["k0", "k1", "k2"], real, {"shuffle": shuf}, audio_from=[1, 2, 0])
    assert [r["video"] for r in rows] == ["a", "-b", "c"] and rows[1]["class"] == "k1"
    assert [r["shuffle_audio_from"] for r in rows] == ["-b", "c", "a"]
    assert [r["shuffle_audio_class"] for r in rows] == ["k1", "k2", "k0"]
    for r in rows:
        assert r["gap"] == r["iou"] - r["iou_shuffle"]
    s = summary(rows)
    assert s["frame_weighted_iou"] == pytest.approx(acc.compute()["miou_dataset"], abs=1e-12)
    assert s["mean_iou"] != pytest.approx(s["frame_weighted_iou"], abs=1e-6)  # why the weighting matters
    assert s["mean_gap"] == pytest.approx(s["mean_iou"] - s["mean_iou_shuffle"], abs=1e-12)


def test_csv_round_trips_exactly_and_select_orders():
    rows = [{"video": "v0", "iou": 0.1 + 1e-12, "gap": 0.3}, {"video": "v1", "iou": 0.7, "gap": -0.2},
            {"video": "v2", "iou": 0.4, "gap": 0.0}]
    back = list(csv.DictReader(rows_to_csv(rows).splitlines()))
    assert [float(r["iou"]) for r in back] == [r["iou"] for r in rows]
    assert [r["video"] for r in select(rows, "gap", 2)] == ["v1", "v2"]
    assert [r["video"] for r in select(rows, "iou", 1, largest=True)] == ["v1"]


def test_empty_clip_is_nan_not_a_crash():
    c = clip_metrics(np.zeros(0), np.zeros((0, 255)), np.zeros(0, bool))
    assert c["frames"] == 0 and np.isnan(c["iou"])


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return random_checkpoint(tmp_path_factory.getbasetemp())


@pytest.mark.parametrize("split", ["val", "train"])  # val: 5 GT frames per clip; S4 train: 1
def test_evaluate_per_clip_csv_and_json_agree_with_the_means(ckpt, split, tmp_path):
    checkpoint, shards = ckpt
    out = tmp_path / "clips.csv"
    res = CliRunner().invoke(cli, ["evaluate", str(checkpoint), str(shards), "--split", split, "--per-clip",
                                   str(out), "--json", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    rows = list(csv.DictReader(out.open()))
    assert isinstance(doc["clips"], list) and doc["n_clips"] == len(doc["clips"]) == len(rows) > 1
    assert "shuffle" in doc["ablations"]  # implied by --per-clip
    iou = np.array([float(r["iou"]) for r in rows])
    frames = np.array([int(r["frames"]) for r in rows])
    assert np.sum(iou * frames) / frames.sum() == pytest.approx(doc["miou_dataset"], abs=1e-12)
    if split == "val":
        assert iou.mean() == pytest.approx(doc["miou_dataset"], abs=1e-12)  # documented: equal frame counts
    shuf = np.array([float(r["iou_shuffle"]) for r in rows])
    assert np.array([float(r["gap"]) for r in rows]) == pytest.approx(iou - shuf, abs=0)
    assert np.sum(shuf * frames) / frames.sum() == pytest.approx(doc["ablations"]["shuffle"]["miou_dataset"],
                                                                 abs=1e-12)
    assert iou.max() > 0  # the helper's model paints something
    assert [r["video"] for r in rows] == [r["video"] for r in doc["clips"]]


def test_evaluate_without_per_clip_keeps_clips_a_count(ckpt):
    checkpoint, shards = ckpt
    res = CliRunner().invoke(cli, ["evaluate", str(checkpoint), str(shards), "--json", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["clips"] == doc["n_clips"] == 2


def test_evaluate_help_says_how_the_gap_is_computed():
    text = " ".join(CliRunner().invoke(cli, ["evaluate", "--help"]).output.split())  # undo the wrapping
    assert "gap = iou - iou_shuffle" in text and "n_clips" in text
