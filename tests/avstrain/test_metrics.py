"""Feature: AVSBench metrics, bit-compatible with the official mask_iou / Eval_Fmeasure."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avstrain.metrics import (
    MetricAccumulator,
    f_curves,
    f_measure,
    iou_per_frame,
    mask_iou,
    pr_curves,
    thresholds,
)
from tests.conftest import FIXTURES

CASES = sorted((FIXTURES / "avsbench_metrics").glob("case_*.npz"))


def _load(path):
    if not path.exists():
        pytest.skip(f"shared fixture not found: {path}")
    with np.load(path) as d:
        return {k: d[k] for k in d.files}


@pytest.fixture(params=CASES or [FIXTURES / "avsbench_metrics" / "case_missing.npz"], ids=lambda p: p.stem)
def case(request):
    return _load(request.param)


def test_fixture_cases_present():
    if not (FIXTURES / "avsbench_metrics").exists():
        pytest.skip("shared fixtures absent")
    assert len(CASES) >= 4


def test_thresholds_match_reference(case):
    assert np.array_equal(thresholds().numpy(), case["thresholds"])


def test_iou_per_frame_exact_from_logits(case):
    assert np.array_equal(iou_per_frame(case["pred"], case["target"]).numpy(), case["iou_per_frame"])


def test_iou_per_frame_exact_from_prob(case):
    got = iou_per_frame(case["prob"], case["target"], from_prob=True).numpy()
    assert np.array_equal(got, case["iou_per_frame"])
    # logits recovered from the stored probabilities give the same frames' IoU
    logits = torch.logit(torch.from_numpy(case["prob"]).double()).float()
    assert np.array_equal(iou_per_frame(logits, case["target"]).numpy(), case["iou_per_frame"])


def test_miou(case):
    assert abs(mask_iou(case["pred"], case["target"]) - float(case["miou"])) <= 1e-7
    assert abs(mask_iou(torch.from_numpy(case["pred"]), torch.from_numpy(case["target"])) - float(case["miou"])) <= 1e-7


def test_precision_recall_curves_exact(case):
    for src, from_prob in (("pred", False), ("prob", True)):
        prec, recall, nonempty = pr_curves(case[src], case["target"], from_prob=from_prob)
        assert np.array_equal(prec.numpy(), case["prec"]), src
        assert np.array_equal(recall.numpy(), case["recall"]), src
        assert np.array_equal(nonempty.numpy(), case["gt_nonempty"])


def test_fscore_exact(case):
    assert f_measure(case["pred"], case["target"]) == float(case["fscore"])
    logits = torch.logit(torch.from_numpy(case["prob"]).double()).float()
    assert f_measure(logits, case["target"]) == float(case["fscore"])
    # [N,1,H,W] model output layout is accepted too
    assert f_measure(case["pred"][:, None], case["target"]) == float(case["fscore"])


def _reference_f_loop(prob: torch.Tensor, gt: torch.Tensor) -> float:
    """Straight transcription of the documented algorithm (per threshold, per frame)."""
    th = torch.linspace(0, 1 - 1e-10, 255)
    avg_f, img_num, score = 0.0, 0, torch.zeros(255)
    for n in range(prob.shape[0]):
        if torch.mean(gt[n]) == 0.0:
            continue
        prec, recall = torch.zeros(255), torch.zeros(255)
        for k in range(255):
            y = (prob[n] >= th[k]).float()
            tp = (y * gt[n]).sum()
            prec[k], recall[k] = tp / (y.sum() + 1e-20), tp / (gt[n].sum() + 1e-20)
        f = (1 + 0.3) * prec * recall / (0.3 * prec + recall)
        f[f != f] = 0
        avg_f += f
        img_num += 1
        score = avg_f / img_num
    return score.max().item()


def test_fscore_matches_loop_on_ties_and_small_maps():
    """Probabilities exactly on thresholds and many ties: sort/searchsorted equals the loop."""
    g = torch.Generator().manual_seed(3)
    th = torch.linspace(0, 1 - 1e-10, 255)
    prob = th[torch.randint(0, 255, (6, 12, 10), generator=g)]  # every value sits on a threshold
    gt = (torch.rand(6, 12, 10, generator=g) < 0.4).float()
    gt[2] = 0  # one empty frame (skipped)
    logits = torch.logit(prob.double()).float()
    curves, nonempty = f_curves(prob, gt, from_prob=True)
    assert nonempty.tolist() == [True, True, False, True, True, True]
    assert f_measure(logits, gt) == _reference_f_loop(torch.sigmoid(logits), gt)
    assert _reference_f_loop(prob, gt) == float((sum(curves[i] for i in (0, 1, 3, 4, 5)) / 5).max())


def test_bad_shapes():
    with pytest.raises(ValueError, match="differ in shape"):
        mask_iou(np.zeros((2, 4, 4)), np.zeros((2, 4, 5)))
    with pytest.raises(ValueError, match=r"\[N, H, W\]"):
        f_measure(np.zeros((4, 4)), np.zeros((4, 4)))


# --------------------------------------------------------------------------- accumulator


def _random_videos(n_videos: int, t: int = 5, size: int = 16, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n_videos * t, size, size, generator=g) * 2
    target = (torch.rand(n_videos * t, size, size, generator=g) < torch.rand(n_videos * t, 1, 1, generator=g)).float()
    target[3] = 0  # an empty-GT frame
    return logits, target


def test_accumulator_official_protocol_equals_manual_per_batch():
    logits, target = _random_videos(10)  # 10 videos -> batches of 4, 4, 2
    acc = MetricAccumulator(batch_videos=4)
    order = [7, 2, 9, 0, 5, 1, 8, 3, 6, 4]  # fed out of order, in uneven chunks
    for chunk in (order[:3], order[3:4], order[4:]):
        rows = torch.cat([torch.arange(v * 5, v * 5 + 5) for v in chunk])
        acc.update(logits[rows][:, None], target[rows], video_index=chunk)
    res = acc.compute()
    batches = [range(0, 20), range(20, 40), range(40, 50)]
    manual_miou = sum(mask_iou(logits[list(b)], target[list(b)]) for b in batches) / 3
    manual_f = sum(f_measure(logits[list(b)], target[list(b)]) for b in batches) / 3
    assert res["miou"] == manual_miou
    assert res["fscore"] == manual_f
    assert res["clips"] == 10 and res["frames"] == 50

    # the same batches fed as batch records give the same official numbers
    acc2 = MetricAccumulator()
    for b in batches:
        acc2.update(logits[list(b)], target[list(b)])
    res2 = acc2.compute()
    assert res2["miou"] == res["miou"] and res2["fscore"] == res["fscore"]
    assert res2["fscore_dataset"] == pytest.approx(res["fscore_dataset"], abs=1e-12)


def test_per_batch_f_differs_from_per_dataset_f_and_dataset_is_manual():
    # Two videos whose best thresholds differ: video 0 separates fg/bg at ~0.75 (fg 0.9, bg 0.6),
    # video 1 at ~0.25 (fg 0.4, bg 0.1). No single threshold is perfect for both.
    s = 16
    target = torch.zeros(8, s, s)
    target[:, 4:12, 4:12] = 1
    logits = torch.where(target > 0, torch.tensor(2.2), torch.tensor(0.4))
    logits[4:] = logits[4:] - 2.6
    acc = MetricAccumulator(batch_videos=1)
    acc.update(logits, target, video_index=[0, 1])  # 2 videos x 4 frames
    res = acc.compute()
    f0, f1 = f_measure(logits[:4], target[:4]), f_measure(logits[4:], target[4:])
    assert res["fscore"] == (f0 + f1) / 2
    curves, _ = f_curves(logits, target)
    manual_dataset = float(curves.double().mean(dim=0).max())
    assert res["fscore_dataset"] == pytest.approx(manual_dataset, abs=1e-12)
    assert res["fscore"] > res["fscore_dataset"] + 0.01  # per-batch max favours the protocol
    assert res["miou_dataset"] == pytest.approx(float(iou_per_frame(logits, target).double().mean()), abs=1e-12)


def test_accumulator_duplicates_invalid_frames_and_classes():
    logits, target = _random_videos(3)
    acc = MetricAccumulator()
    acc.update(logits[:10], target[:10], video_index=[0, 1], class_ids=[5, 7])
    acc.update(logits[10:], target[10:], video_index=[2], class_ids=[5])
    acc.update(logits[:5], target[:5], video_index=[0], class_ids=[5])  # DistributedSampler padding repeat
    res = acc.compute()
    assert res["frames"] == 15 and res["clips"] == 3
    assert set(res["per_class"]) == {5, 7}
    ious = iou_per_frame(logits, target).double()
    assert res["per_class"][7]["miou"] == pytest.approx(float(ious[5:10].mean()), abs=1e-12)
    assert res["per_class"][5]["clips"] == 2

    # frame_valid drops frames (S4 train: only frame 1 has a mask)
    acc = MetricAccumulator()
    valid = torch.zeros(3, 5, dtype=torch.bool)
    valid[:, 0] = True
    acc.update(logits, target, video_index=[0, 1, 2], frame_valid=valid)
    rows = [0, 5, 10]
    assert acc.compute()["miou"] == mask_iou(logits[rows], target[rows])


def test_accumulator_refuses_mixed_modes_and_handles_empty():
    acc = MetricAccumulator()
    assert acc.compute()["miou"] == 0.0
    logits, target = _random_videos(1)
    acc.update(logits, target)
    with pytest.raises(ValueError, match="batch records"):
        acc.update(logits, target, video_index=[0])


def test_accumulator_gather_equals_single_process():
    """Records merged from two 'ranks' (as all_reduce does) give the single-process result."""
    logits, target = _random_videos(8, seed=4)
    single = MetricAccumulator()
    single.update(logits, target, video_index=list(range(8)))
    ranks = [MetricAccumulator(), MetricAccumulator()]
    for v in range(8):  # DistributedSampler-style interleave
        r = ranks[v % 2]
        r.update(logits[v * 5 : v * 5 + 5], target[v * 5 : v * 5 + 5], video_index=[v])
    merged = MetricAccumulator()
    for r in ranks:
        for vid, rec in r.videos.items():
            merged.videos.setdefault(vid, rec)
    assert merged.compute() == single.compute()
    merged.all_reduce()  # no process group: a no-op
    assert merged.compute() == single.compute()


def test_f_measure_with_soft_targets_matches_the_reference_loop():
    """MS3 targets are 'P'/255, soft on anti-aliased masks: tp = sum(y_temp * gt) as in the
    reference ``_eval_pr``, not a count of GT pixels."""
    import torch

    from avstrain.metrics import f_measure, thresholds

    g = torch.Generator().manual_seed(7)
    logits = torch.randn(3, 32, 32, generator=g) * 3
    gt = (torch.rand(3, 32, 32, generator=g) * 255).round() / 255
    gt[gt < 0.6] = 0
    prob = torch.sigmoid(logits)
    scores = torch.zeros(255)
    for n in range(3):  # the reference loop, written out
        y = (prob[n][None] >= thresholds()[:, None, None]).float()  # [255, H, W]
        tp = (y * gt[n]).sum(dim=(1, 2))
        prec, rec = tp / (y.sum(dim=(1, 2)) + 1e-20), tp / (gt[n].sum() + 1e-20)
        f = (1 + 0.3) * prec * rec / (0.3 * prec + rec)
        scores += torch.nan_to_num(f, nan=0.0)
    assert f_measure(logits, gt) == pytest.approx((scores / 3).max().item(), abs=1e-6)
