"""Per-clip results: IoU and F of each clip with real audio and under each audio ablation,
and the listening gap (IoU with real audio minus IoU with shuffled audio).

Pure functions over the per-video records of ``avstrain.metrics.MetricAccumulator``, so they
test without a model. How each number is pooled (also in ``avstrain evaluate --help``):

* ``iou``: mean of the per-frame IoUs (the official ``mask_iou`` rule per frame) over the
  clip's frames with a GT mask. The frame-weighted mean of the column is ``miou_dataset``;
  when every clip has the same number of GT frames (5 on test and val) the plain mean is.
* ``fscore``: the per-dataset F on the clip alone: max over the 255 thresholds of the mean
  F curve over the clip's frames with a non-empty GT (0 when there is none).
* ``gap = iou - iou_shuffle``: near 0 (or below) means the prediction does not depend on
  the sound; the mean gap over clips is ``miou_dataset`` minus the shuffled ``miou_dataset``.
"""

from __future__ import annotations

import csv
import io
from typing import Optional, Sequence

import numpy as np

ABLATION_ORDER = ("shuffle", "zero")


def clip_metrics(iou: np.ndarray, curves: np.ndarray, nonempty: np.ndarray) -> dict:
    """One clip's ``iou``, ``fscore`` and ``frames`` from its per-frame IoUs ``[t]``, F curves
    ``[t,255]`` and non-empty-GT flags ``[t]`` (frames without a GT mask already dropped)."""
    iou = np.asarray(iou, dtype=np.float64)
    curves = np.asarray(curves, dtype=np.float64)
    nonempty = np.asarray(nonempty, dtype=bool)
    if len(iou) == 0:
        return {"iou": float("nan"), "fscore": float("nan"), "frames": 0}
    f = float(curves[nonempty].mean(axis=0).max()) if nonempty.any() else 0.0
    return {"iou": float(iou.mean()), "fscore": f, "frames": int(len(iou))}


def records_to_clips(videos: dict) -> dict[int, dict]:
    """``MetricAccumulator.videos`` (dataset index -> Record) -> dataset index -> clip metrics
    and ``label`` (the class id recorded with the clip)."""
    return {i: {**clip_metrics(r.iou, r.curves, r.nonempty), "label": int(r.cls)} for i, r in sorted(videos.items())}


def per_clip_rows(names: Sequence[str], classes: Sequence[str], real: dict[int, dict],
                  ablations: Optional[dict[str, dict[int, dict]]] = None,
                  audio_from: Optional[Sequence[int]] = None) -> list[dict]:
    """One row per evaluated clip, in dataset order: ``video, class, frames, iou, fscore``, then
    ``iou_<ablation>, fscore_<ablation>`` per ablation, and with shuffle ``gap``,
    ``shuffle_audio_from`` (the clip whose audio it was given) and ``shuffle_audio_class``
    (that clip's class: when it is the clip's own class the gap is near 0 by construction)."""
    ablations = ablations or {}
    rows = []
    for i in sorted(real):
        c = int(real[i].get("label", -1))
        row = {"video": names[i], "class": classes[c] if 0 <= c < len(classes) else str(c),
               "frames": real[i]["frames"], "iou": real[i]["iou"], "fscore": real[i]["fscore"]}
        for name in [a for a in ABLATION_ORDER if a in ablations] + sorted(set(ablations) - set(ABLATION_ORDER)):
            row[f"iou_{name}"] = ablations[name][i]["iou"]
            row[f"fscore_{name}"] = ablations[name][i]["fscore"]
        if "shuffle" in ablations:
            row["gap"] = row["iou"] - row["iou_shuffle"]
            if audio_from is not None:
                j = audio_from[i]
                row["shuffle_audio_from"] = names[j]
                cj = int(real[j].get("label", -1)) if j in real else -1
                # same class: the swapped audio is the same kind of sound, so a gap near 0 is expected
                row["shuffle_audio_class"] = classes[cj] if 0 <= cj < len(classes) else str(cj)
        rows.append(row)
    return rows


def rows_to_csv(rows: list[dict]) -> str:
    """The rows as CSV text (floats written with ``repr``, so they read back exactly)."""
    buf = io.StringIO()
    if not rows:
        return ""
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    for row in rows:
        w.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in row.items()})
    return buf.getvalue()


def summary(rows: list[dict]) -> dict:
    """Means over clips and the frame-weighted mean IoU (= ``miou_dataset``), to check a table."""
    if not rows:
        return {"clips": 0}
    frames = np.array([r["frames"] for r in rows], dtype=np.float64)
    out = {"clips": len(rows), "mean_iou": float(np.mean([r["iou"] for r in rows])),
           "frame_weighted_iou": float(np.sum(frames * [r["iou"] for r in rows]) / frames.sum())}
    if "gap" in rows[0]:
        out["mean_iou_shuffle"] = float(np.mean([r["iou_shuffle"] for r in rows]))
        out["mean_gap"] = float(np.mean([r["gap"] for r in rows]))
    return out


def select(rows: list[dict], key: str, n: int, largest: bool = False) -> list[dict]:
    """The ``n`` rows with the smallest (or largest) ``key``; ties keep dataset order."""
    order = sorted(range(len(rows)), key=lambda i: (-rows[i][key] if largest else rows[i][key], i))
    return [rows[i] for i in order[:n]]
