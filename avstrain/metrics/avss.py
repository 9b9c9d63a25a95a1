"""The official AVSS (AVSBench-semantic) mIoU and F-score (docs/reference/avss.md 6).

Per frame and class c: ``IoU_c = inter / (union + 2.2e-16)`` and
``F_c = 1.3 P R / (0.3 P + R)`` (NaN -> 0) at the argmax labelling; per-class
sums over frames and the count of frames where c is predicted or present;
final value = mean over **all 71** classes of ``sum / count`` (0 for a class
never seen). Padded ``v1`` time steps are ordinary frames here, as officially.
Only sums and counts are kept, so batching does not change the result.

Beside it, labelled: the mean over the classes seen (``*_seen``) and the
per-class table. Target -1 drops a pixel; 255 drops it from the label counts
only (its prediction still counts), as the official ``histc`` does.
"""

from __future__ import annotations

import numpy as np
import torch

from avstrain.dist import all_gather_object

NUM_CLASSES = 71
EPS = 2.220446049250313e-16  # np.spacing(1), the official IoU epsilon
BETA2 = 0.3


def _as_tensor(x) -> torch.Tensor:
    return x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))


def frame_counts(pred, target, num_classes: int = NUM_CLASSES) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-frame ``inter, pred, lab`` pixel counts ``[N, C]`` (float64, exact) from logits ``[N,C,H,W]``.

    The argmax is taken on the logits (softmax does not change it; ties -> first index).
    """
    logits, y = _as_tensor(pred), _as_tensor(target).long()
    if logits.dim() != 4 or logits.shape[1] != num_classes:
        raise ValueError(f"pred must be logits [N, {num_classes}, H, W], got shape {tuple(logits.shape)}")
    if y.shape != (logits.shape[0],) + tuple(logits.shape[2:]):
        raise ValueError(f"target {tuple(y.shape)} does not match pred {tuple(logits.shape)} (want [N, H, W])")
    n = logits.shape[0]
    p = logits.argmax(dim=1).reshape(n, -1)  # [N, H*W]
    y = y.to(p.device).reshape(n, -1)
    keep = y >= 0  # target -1 removes the pixel (prediction zeroed before counting)
    lab_ok = keep & (y < num_classes)  # 255 (or any value > 70): not a label, prediction still counts
    rows = torch.arange(n, device=p.device).unsqueeze(1).expand_as(p)

    def count(values, mask):
        idx = (rows[mask] * num_classes + values[mask])
        return torch.bincount(idx, minlength=n * num_classes).reshape(n, num_classes).double()

    n_pred = count(p, keep)
    n_lab = count(y, lab_ok)
    n_inter = count(p, lab_ok & (p == y))
    return n_inter.cpu(), n_pred.cpu(), n_lab.cpu()


def frame_scores(pred, target, num_classes: int = NUM_CLASSES) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame ``iou, f, seen`` ``[N, C]`` (float32, float32, bool) as the official function forms them."""
    inter, npred, nlab = (t.float() for t in frame_counts(pred, target, num_classes))
    union = npred + nlab - inter
    iou = inter / (union + EPS)
    precision = inter / npred
    recall = inter / nlab
    f = (1 + BETA2) * precision * recall / (BETA2 * precision + recall)
    f = torch.nan_to_num(f, nan=0.0)
    return iou.numpy(), f.numpy(), (union > 0).numpy()


class AVSSMetric:
    """Accumulates per-class sums and counts; ``compute()`` gives the official and labelled extras."""

    def __init__(self, num_classes: int = NUM_CLASSES, class_names: list[str] | None = None):
        self.num_classes = num_classes
        self.class_names = class_names
        self.iou_sum = np.zeros(num_classes, np.float32)
        self.f_sum = np.zeros(num_classes, np.float32)
        self.count = np.zeros(num_classes, np.int64)
        self.frames = 0

    def update(self, pred, target) -> None:
        """Add frames: logits ``[N,C,H,W]``, class indices ``[N,H,W]`` (rows ``b*T + t``, padded steps included)."""
        iou, f, seen = frame_scores(pred, target, self.num_classes)
        for row in range(len(iou)):  # float32 accumulation in frame order, as the official sums
            self.iou_sum += iou[row]
            self.f_sum += f[row]
        self.count += seen.sum(axis=0)
        self.frames += len(iou)

    def merge(self, other: "AVSSMetric") -> None:
        self.iou_sum += other.iou_sum
        self.f_sum += other.f_sum
        self.count += other.count
        self.frames += other.frames

    def all_reduce(self) -> None:
        """Sum every rank's sums and counts (no-op without an initialised process group)."""
        gathered = all_gather_object((self.iou_sum, self.f_sum, self.count, self.frames))
        if gathered is None:
            return
        self.iou_sum[:] = 0
        self.f_sum[:] = 0
        self.count[:] = 0
        self.frames = 0
        for iou_sum, f_sum, count, frames in gathered:  # rank order: the same float32 sums on every rank
            self.iou_sum += iou_sum
            self.f_sum += f_sum
            self.count += count
            self.frames += frames

    def per_class(self) -> tuple[np.ndarray, np.ndarray]:
        """``miou_pc, f_pc`` float32 ``[C]``: sum / count, 0 for classes never seen."""
        with np.errstate(invalid="ignore", divide="ignore"):
            cnt = self.count.astype(np.float32)
            miou = np.nan_to_num(self.iou_sum / cnt, nan=0.0)
            f = np.nan_to_num(self.f_sum / cnt, nan=0.0)
        return miou.astype(np.float32), f.astype(np.float32)

    def compute(self) -> dict:
        """Official ``miou``/``fscore`` (mean over all classes) plus labelled variants and the table."""
        miou_pc, f_pc = self.per_class()
        seen = self.count > 0
        names = self.class_names or [str(i) for i in range(self.num_classes)]
        return {
            "miou": float(miou_pc.mean(dtype=np.float32)),
            "fscore": float(f_pc.mean(dtype=np.float32)),
            "miou_seen": float(miou_pc[seen].mean(dtype=np.float32)) if seen.any() else 0.0,
            "fscore_seen": float(f_pc[seen].mean(dtype=np.float32)) if seen.any() else 0.0,
            "classes_seen": int(seen.sum()),
            "frames": int(self.frames),
            "per_class": {
                names[c]: {"miou": float(miou_pc[c]), "fscore": float(f_pc[c]), "frames": int(self.count[c])}
                for c in np.flatnonzero(seen)
            },
        }


def avss_metrics(pred, target) -> dict:
    """One-shot: the official AVSS metrics of one set of frames."""
    m = AVSSMetric()
    m.update(pred, target)
    return m.compute()
