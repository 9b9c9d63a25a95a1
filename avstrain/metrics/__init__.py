"""AVSBench metrics, bit-compatible with the official ``mask_iou`` and ``Eval_Fmeasure``.

Reference: ``docs/reference/avsbench.md`` section 5; checked against
``fixtures/avsbench_metrics/``. Both take raw logits ``[N,H,W]`` and 0/1 targets
and apply the sigmoid themselves.

* IoU: ``sigmoid > 0.5`` (strict); empty-GT frames score true negatives / (H*W).
* F: 255 thresholds ``linspace(0, 1 - 1e-10, 255)`` in float32, ``prob >= th``
  (non-strict), beta^2 = 0.3, NaN -> 0, frames with empty GT skipped; the
  per-threshold curve is averaged over frames (float32, frame order), then the
  max over thresholds is taken. So F depends on how frames are grouped:
  ``MetricAccumulator`` reports the official per-batch protocol (batches of 4
  videos, mean over batches) and a per-dataset variant, labelled as such.

Counting pixels with ``prob >= th`` for all 255 thresholds uses one sort and a
``searchsorted`` per frame instead of 255 comparisons; counts are integers, so
the result is the same bits as the reference's loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from avstrain.dist import all_gather_object

PR_NUM = 255  # thresholds of the precision/recall curve
BETA2 = 0.3  # F-measure beta^2
IOU_EPS = 1e-7


def thresholds(device=None) -> torch.Tensor:
    """The reference thresholds: ``torch.linspace(0, 1 - 1e-10, 255)`` in float32 (last one is 1.0)."""
    return torch.linspace(0, 1 - 1e-10, PR_NUM, device=device)


def _frames(x, name: str) -> torch.Tensor:
    """torch/numpy [N,H,W] (or [N,1,H,W]) -> float32 tensor [N,H,W] (no copy when possible)."""
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).detach()
    if t.dim() == 4 and t.shape[1] == 1:
        t = t[:, 0]  # [N, 1, H, W] -> [N, H, W]
    if t.dim() != 3:
        raise ValueError(f"{name} must be [N, H, W] (or [N, 1, H, W]), got shape {tuple(t.shape)}")
    return t.float()


def _prob_and_target(logits, target, from_prob: bool) -> tuple[torch.Tensor, torch.Tensor]:
    x = _frames(logits, "logits")
    y = _frames(target, "target").to(x.device)
    if x.shape != y.shape:
        raise ValueError(f"logits {tuple(x.shape)} and target {tuple(y.shape)} differ in shape")
    return (x if from_prob else torch.sigmoid(x)), y


def iou_per_frame(logits, target, from_prob: bool = False) -> torch.Tensor:
    """Per-frame IoU as the reference computes it (float32 [N]); ``from_prob``: input is sigmoid already."""
    prob, y = _prob_and_target(logits, target, from_prob)
    n, h, w = prob.shape
    p = (prob > 0.5).float()  # strict: probability exactly 0.5 is background
    inter = (p * y).sum(dim=(1, 2))  # exact: integer counts < 2**24
    union = torch.maximum(p, y).sum(dim=(1, 2))
    empty = y.sum(dim=(1, 2)) == 0
    inter = torch.where(empty, ((1 - y) * (1 - p)).sum(dim=(1, 2)), inter)  # true negatives
    union = torch.where(empty, torch.full_like(union, float(h * w)), union)
    return inter / (union + IOU_EPS)


def pr_curves(logits, target, from_prob: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-frame precision and recall ``[N,255]`` float32 (the reference ``_eval_pr``) and non-empty flags ``[N]``."""
    prob, y = _prob_and_target(logits, target, from_prob)
    n = prob.shape[0]
    flat = prob.reshape(n, -1)  # [N, H, W] -> [N, H*W]
    yflat = y.reshape(n, -1)  # [N, H, W] -> [N, H*W]
    hw = flat.shape[1]
    th = thresholds(flat.device).expand(n, PR_NUM).contiguous()  # [N, 255]
    # count(prob >= th) = H*W - (number of values < th) = H*W - searchsorted_left.
    all_sorted = flat.sort(dim=1).values
    pos_sorted = torch.where(yflat > 0, flat, torch.full_like(flat, -1.0)).sort(dim=1).values  # GT pixels only
    n_pred = (hw - torch.searchsorted(all_sorted, th, side="left")).float()  # sum(y_temp)
    tp = (hw - torch.searchsorted(pos_sorted, th, side="left")).float()  # sum(y_temp * gt), 0/1 gt
    soft = ((yflat > 0) & (yflat < 1)).any(dim=1)  # MS3 'P'/255 targets on anti-aliased masks
    if soft.any():
        tp = torch.where(soft[:, None], _soft_tp(flat, yflat, all_sorted, th), tp)
    gt_sum = yflat.sum(dim=1, keepdim=True)  # [N, 1]
    return tp / (n_pred + 1e-20), tp / (gt_sum + 1e-20), gt_sum[:, 0] > 0


def _soft_tp(flat: torch.Tensor, yflat: torch.Tensor, all_sorted: torch.Tensor, th: torch.Tensor) -> torch.Tensor:
    """``sum(y_temp * gt)`` for soft gt: the gt mass of the pixels with ``prob >= th``, from
    suffix sums of gt in prob order (float64, then float32; the reference sums in float32)."""
    ys = torch.gather(yflat.double(), 1, flat.argsort(dim=1, stable=True))  # gt in ascending prob order
    suffix = torch.cat([ys.flip(1).cumsum(1).flip(1), torch.zeros_like(ys[:, :1])], dim=1)  # [N, H*W+1]
    return torch.gather(suffix, 1, torch.searchsorted(all_sorted, th, side="left")).float()


def f_curves(logits, target, from_prob: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-frame F curves ``[N,255]`` float32 and the non-empty-GT flags ``[N]`` (frames F counts)."""
    prec, recall, nonempty = pr_curves(logits, target, from_prob)
    f = (1 + BETA2) * prec * recall / (BETA2 * prec + recall)  # same expression order as the reference
    return torch.nan_to_num(f, nan=0.0), nonempty  # 0/0 -> 0 (the reference's f[f != f] = 0)


def _mean_curve_f32(curves: np.ndarray) -> np.ndarray:
    """Reference accumulation: float32 running sum over frames in order, divided by the count."""
    acc = curves[0].astype(np.float32, copy=True)
    for row in curves[1:]:
        acc = acc + row  # float32 + float32, left to right as ``avg_f += f_score``
    return acc / np.float32(len(curves))


def _official_f(curves: np.ndarray, nonempty: np.ndarray) -> float:
    """``Eval_Fmeasure`` from per-frame curves: max of the float32 mean over non-empty frames."""
    kept = curves[nonempty]
    if len(kept) == 0:
        return 0.0
    return float(_mean_curve_f32(kept).max())


def _official_miou(ious: np.ndarray) -> float:
    """The reference's mean of per-frame IoUs, summed in float64 and rounded to float32."""
    return float(np.float32(np.sum(ious, dtype=np.float64) / len(ious)))


def mask_iou(logits, target) -> float:
    """The official ``mask_iou(pred, target)`` for one batch of frames ([N,H,W] logits, 0/1 target)."""
    return _official_miou(iou_per_frame(logits, target).cpu().numpy())


def f_measure(logits, target) -> float:
    """The official ``Eval_Fmeasure(pred, gt)`` for one batch of frames ([N,H,W] logits, 0/1 target)."""
    curves, nonempty = f_curves(logits, target)
    return _official_f(curves.cpu().numpy(), nonempty.cpu().numpy())


@dataclass
class Record:
    """Metric inputs of one video (``index`` >= 0) or of one evaluation batch (``index`` None)."""

    index: int | None  # global position of the video in the evaluated dataset; None for a batch record
    cls: int  # class id (-1 when unknown)
    iou: np.ndarray  # float32 [t] per-frame IoU
    curves: np.ndarray  # float32 [t, 255] per-frame F curves
    nonempty: np.ndarray  # bool [t] frames with non-empty GT


class MetricAccumulator:
    """Collects per-frame IoUs and F curves; ``compute()`` gives the official and per-dataset metrics.

    Two ways to feed it:

    * ``update(logits, target)``: the call *is* one official evaluation batch
      (the caller groups 4 videos per batch, as ``test.sh`` does);
    * ``update(logits, target, video_index=[...])``: per-video records keyed by
      their global dataset index; ``compute()`` sorts them and groups
      ``batch_videos`` consecutive videos per official batch. Repeated indices
      (DistributedSampler padding) are kept once.

    Official protocol (``miou``, ``fscore``): metric per batch, mean over batches.
    Per-dataset (``miou_dataset``, ``fscore_dataset``): mean IoU over all frames;
    F = max over thresholds of the mean curve over all non-empty frames.
    DDP: ``all_reduce()`` gathers every rank's records onto every rank, so the
    result equals a single-process run over the same batches.
    """

    def __init__(self, batch_videos: int = 4):
        self.batch_videos = batch_videos
        self.videos: dict[int, Record] = {}
        self.batches: list[Record] = []

    def update(self, logits, target, video_index=None, class_ids=None, frame_valid=None) -> None:
        """Add frames ``[N,(1,)H,W]`` (rows ``b*T + t``); see the class docstring for ``video_index [B]``.

        ``frame_valid`` (``[B,T]`` or ``[N]`` bool) drops frames without a GT mask.
        ``class_ids [B]`` (with ``video_index``) enables the per-class table.
        """
        iou = iou_per_frame(logits, target).cpu().numpy()
        curves, nonempty = f_curves(logits, target)
        curves, nonempty = curves.cpu().numpy(), nonempty.cpu().numpy()
        n = len(iou)
        valid = np.ones(n, bool) if frame_valid is None else _numpy(frame_valid).reshape(n).astype(bool)
        if video_index is None:
            if self.videos:
                raise ValueError("this accumulator holds per-video records; pass video_index on every update")
            self.batches.append(Record(None, -1, iou[valid], curves[valid], nonempty[valid]))
            return
        if self.batches:
            raise ValueError("this accumulator holds batch records; do not mix in video_index updates")
        index = [int(i) for i in _numpy(video_index).reshape(-1)]
        b = len(index)
        if n % b:
            raise ValueError(f"{n} frames do not split into {b} videos")
        t = n // b
        classes = [-1] * b if class_ids is None else [int(c) for c in _numpy(class_ids).reshape(-1)]
        for k, vid in enumerate(index):
            rows = slice(k * t, (k + 1) * t)
            v = valid[rows]
            rec = Record(vid, classes[k], iou[rows][v], curves[rows][v], nonempty[rows][v])
            self.videos.setdefault(vid, rec)

    def all_reduce(self) -> None:
        """Gather all ranks' records onto every rank (no-op without an initialised process group)."""
        gathered = all_gather_object((self.videos, self.batches))
        if gathered is None:
            return
        self.videos, self.batches = {}, []
        for videos, batches in gathered:  # rank order, so every rank ends with the same list
            for vid, rec in videos.items():
                self.videos.setdefault(vid, rec)
            self.batches.extend(batches)

    def groups(self) -> list[list[Record]]:
        """The official evaluation batches, in order."""
        if self.batches:
            return [[r] for r in self.batches]
        recs = [self.videos[i] for i in sorted(self.videos)]
        return [recs[s : s + self.batch_videos] for s in range(0, len(recs), self.batch_videos)]

    def compute(self) -> dict:
        """``miou``, ``fscore`` (official per-batch), ``miou_dataset``, ``fscore_dataset``, counts, per class."""
        groups = [g for g in self.groups() if sum(len(r.iou) for r in g)]
        recs = [r for g in groups for r in g]
        out = {"miou": 0.0, "fscore": 0.0, "miou_dataset": 0.0, "fscore_dataset": 0.0, "frames": 0}
        out["clips"] = len(recs) if self.videos else None  # unknown in batch mode
        if not groups:
            return out
        batch_miou, batch_f = [], []
        for group in groups:
            batch_miou.append(_official_miou(np.concatenate([r.iou for r in group])))
            batch_f.append(
                _official_f(np.concatenate([r.curves for r in group]), np.concatenate([r.nonempty for r in group]))
            )
        out["miou"] = sum(batch_miou) / len(batch_miou)  # AverageMeter: running Python sum / count
        out["fscore"] = sum(batch_f) / len(batch_f)
        out.update(_dataset_metrics(recs))
        if any(r.cls >= 0 for r in recs):
            per_class = {}
            for c in sorted({r.cls for r in recs}):
                sub = [r for r in recs if r.cls == c]
                m = _dataset_metrics(sub)
                per_class[c] = {"miou": m["miou_dataset"], "fscore": m["fscore_dataset"], "clips": len(sub)}
            out["per_class"] = per_class
        return out


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _dataset_metrics(recs: list[Record]) -> dict:
    """Per-dataset variant: float64 means over all frames (IoU) / all non-empty frames (F curve)."""
    ious = np.concatenate([r.iou for r in recs]).astype(np.float64)
    curves = np.concatenate([r.curves for r in recs]).astype(np.float64)
    nonempty = np.concatenate([r.nonempty for r in recs])
    f = float(curves[nonempty].mean(axis=0).max()) if nonempty.any() else 0.0
    return {"miou_dataset": float(ious.mean()), "fscore_dataset": f, "frames": int(len(ious))}
