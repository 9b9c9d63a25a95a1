"""Feature: the official AVSS mIoU / F-score reproduces every case of fixtures/avss_metrics/."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from avsprep.datasets.avss_classes import AVSS_CLASSES, PALETTE, S4_TO_AVSS, decode_rgb_mask, encode_rgb_mask
from avstrain.metrics.avss import AVSSMetric, frame_scores
from tests.conftest import FIXTURES

DIR = FIXTURES / "avss_metrics"
CASES = sorted(DIR.glob("case_*.npz"))


@pytest.fixture(params=CASES or [DIR / "case_missing.npz"], ids=lambda p: p.stem)
def case(request):
    if not request.param.exists():
        pytest.skip(f"shared fixture not found: {request.param}")
    with np.load(request.param) as d:
        return {k: d[k] for k in d.files}


def _run(case, grouping):
    m = AVSSMetric(class_names=AVSS_CLASSES)
    start = 0
    for k in grouping:
        m.update(case["pred"][start : start + k], case["target"][start : start + k])
        start += k
    assert start == len(case["pred"])
    return m


def test_all_cases_present():
    if not DIR.exists():
        pytest.skip("shared fixtures absent")
    assert len(CASES) == 7


def test_per_frame_values(case):
    iou, f, seen = frame_scores(case["pred"], case["target"])
    np.testing.assert_allclose(iou, case["iou_per_frame"], atol=1e-7, rtol=0)
    np.testing.assert_allclose(f, case["fscore_per_frame"], atol=1e-6, rtol=0)
    assert np.array_equal(seen.astype(np.float32), case["count_per_frame"])


def test_each_call_matches(case):
    start = 0
    for j, k in enumerate(case["batch_frames"]):
        m = _run({"pred": case["pred"][start : start + k], "target": case["target"][start : start + k]}, [k])
        np.testing.assert_allclose(m.iou_sum, case[f"call{j}_iou_sum"], atol=1e-6, rtol=0)
        np.testing.assert_allclose(m.f_sum, case[f"call{j}_fscore_sum"], atol=1e-6, rtol=0)
        assert np.array_equal(m.count.astype(np.float32), case[f"call{j}_cls_count"])
        start += k


def test_dataset_values(case):
    m = _run(case, case["batch_frames"])
    np.testing.assert_allclose(m.iou_sum, case["iou_sum"], atol=1e-6, rtol=0)
    assert np.array_equal(m.count.astype(np.float32), case["cls_count"])
    miou_pc, f_pc = m.per_class()
    np.testing.assert_allclose(miou_pc, case["miou_per_class"], atol=1e-6, rtol=0)
    np.testing.assert_allclose(f_pc, case["fscore_per_class"], atol=1e-6, rtol=0)
    out = m.compute()
    assert abs(out["miou"] - float(case["miou"])) <= 1e-6
    assert abs(out["fscore"] - float(case["f_score"])) <= 1e-6
    assert out["classes_seen"] == int(case["n_cls_seen"])
    assert out["frames"] == len(case["pred"])
    assert set(out["per_class"]) == {AVSS_CLASSES[c] for c in np.flatnonzero(case["cls_count"])}


def test_mean_over_seen_matches_summary(case):
    summary = json.loads((DIR / "summary.json").read_text())
    entry = next(v for v in summary.values() if v["n_frames"] == len(case["pred"]) and
                 abs(v["miou"] - float(case["miou"])) < 1e-12)
    out = _run(case, case["batch_frames"]).compute()
    assert abs(out["miou_seen"] - entry["miou_mean_over_seen"]) <= 1e-6
    assert abs(out["fscore_seen"] - entry["fscore_mean_over_seen"]) <= 1e-6


def test_batching_independent():
    path = DIR / "case_batching.npz"
    if not path.exists():
        pytest.skip(f"shared fixture not found: {path}")
    with np.load(path) as d:
        case = {k: d[k] for k in d.files}
    for name in ("batch1_video", "batch2_videos", "uneven_3plus1", "per_frame"):
        m = _run(case, case[f"alt_{name}_batch_frames"])
        out = m.compute()
        assert abs(out["miou"] - float(case[f"alt_{name}_miou"])) <= 1e-6, name
        assert abs(out["fscore"] - float(case[f"alt_{name}_f_score"])) <= 1e-6, name
        np.testing.assert_allclose(m.per_class()[0], case[f"alt_{name}_miou_per_class"], atol=1e-6, rtol=0)


def test_padded_steps_count_like_official():
    path = DIR / "case_padded_v1.npz"
    if not path.exists():
        pytest.skip(f"shared fixture not found: {path}")
    with np.load(path) as d:
        out_pad = _run({"pred": d["pred"], "target": d["target"]}, [10]).compute()
        out_real = _run({"pred": d["pred"][:5], "target": d["target"][:5]}, [5]).compute()
        assert abs(out_real["miou"] - float(d["nopad_miou"])) <= 1e-6
    assert out_pad["per_class"]["background"]["miou"] > out_real["per_class"]["background"]["miou"]


def test_torch_inputs_and_perfect_scores_n_over_71():
    target = torch.zeros(3, 8, 8, dtype=torch.long)
    target[:, 2:5, 2:5] = 7
    pred = torch.nn.functional.one_hot(target, 71).permute(0, 3, 1, 2).float()
    out = AVSSMetric().compute() | {}
    assert out["miou"] == 0.0
    m = AVSSMetric()
    m.update(pred, target)
    out = m.compute()
    assert out["miou_seen"] == 1.0
    assert abs(out["miou"] - 2 / 71) < 1e-7


def test_shape_errors_name_the_fix():
    with pytest.raises(ValueError, match="logits"):
        frame_scores(np.zeros((2, 3, 4, 4)), np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match="does not match"):
        frame_scores(np.zeros((2, 71, 4, 4)), np.zeros((2, 5, 4)))


# ---------------------------------------------------------------- classes and palette

def test_classes_and_palette_equal_fixture():
    path = DIR / "classes_palette.json"
    if not path.exists():
        pytest.skip(f"shared fixture not found: {path}")
    data = json.loads(path.read_text())
    assert [c["name"] for c in data["classes"]] == AVSS_CLASSES
    assert np.array_equal(np.array([c["rgb"] for c in data["classes"]], np.uint8), PALETTE)
    for s4, counts in data["s4_category_to_avss_class"].items():
        assert S4_TO_AVSS[s4] in counts


def test_decode_rgb_mask_unknown_colours_are_background_and_flagged():
    index = np.array([[0, 14, 70], [3, 1, 0]], np.uint8)
    rgb = encode_rgb_mask(index)
    rgb[1, 2] = (1, 2, 3)
    rgb[0, 0] = (255, 255, 255)
    got, unknown = decode_rgb_mask(rgb)
    want = index.copy()
    want[0, 0] = 0
    assert np.array_equal(got, want)
    assert unknown.tolist() == [[True, False, False], [False, False, True]]
    assert tuple(PALETTE[14]) == (64, 128, 128)
