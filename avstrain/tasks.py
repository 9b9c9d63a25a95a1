"""The tasks avstrain trains and evaluates, as one table: ``TASKS[cfg.setting]``.

S4 and MS3 are the binary tasks (one 0/1 mask per frame, 5 steps per clip); AVSS is the
semantic one (one of 71 classes per pixel, 10 steps per clip). Everything that differs
between them is a field of ``Task``: the loss, the metric, the ``avstrain evaluate``
document and its text table, the predicted-mask files, the head. The rest of avstrain
looks its task up here and never branches on the task's name (torchvision's
``get_dataset`` table, not a registry).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
from typing import Callable, Optional

import torch
from torch import nn

from avsprep.common.errors import DataError
from avstrain.losses import LossWeights, total_loss
from avstrain.losses.avss import total_loss_avss
from avstrain.mask_files import write_binary_masks, write_semantic_masks
from avstrain.metrics import MetricAccumulator
from avstrain.metrics.avss import NUM_CLASSES, AVSSMetric
from avstrain.per_clip import records_to_clips

BINARY_STEPS = 5     # AVSBench S4/MS3: 5 one-second frames per clip
SEMANTIC_STEPS = 10  # AVSS: 10 steps (v1s/v1m clips padded from 5, flagged by frame_valid)


@dataclass(frozen=True)
class Task:
    """What one task supplies; see the functions below for the S4/MS3 and AVSS values."""

    name: str                 # the config's ``setting``
    title: str                # the task in messages
    steps: int                # time steps of one clip item (rows ``b*steps + t`` of a device batch)
    semantic: bool            # class-index masks and a per-class head (else one 0/1 mask, one logit)
    audio_bias: bool          # the TPAVI audio projection has a bias (the official AVSS model has none)
    seg_loss_at_model_size: bool  # image_size < shard size: loss on masks downsampled to the logits
    per_clip: bool            # per-clip rows and the listening gap (evaluate --per-clip, report)
    overlays: bool            # predict --overlay / --labelimg (drawn from one 0/1 mask per frame)
    loss: Callable            # (outputs, device batch, LossWeights, audio_proj) -> (loss, {term: float})
    new_metric: Callable      # (batch_videos, class names) -> accumulator
    add_to_metric: Callable   # (accumulator, logits, device batch) -> None
    metric_result: Callable   # (accumulator, class names, per_clip) -> metrics dict (all ranks gathered)
    document: Callable        # (metrics, dataset, batch_videos, precision) -> the evaluate document's head
    ablation_keys: tuple      # the metrics each audio ablation reports in that document
    write_masks: Callable     # (logits, cpu batch, mask_files.MaskSink) -> (masks, overlays) written
    format_table: Callable    # (evaluate document) -> the text table of ``avstrain evaluate``

    def head_classes(self, num_classes: int) -> int:
        """Output channels of the segmentation head for a dataset of ``num_classes`` classes."""
        return num_classes if self.semantic else 1


# ----------------------------------------------------------------------------- binary: S4, MS3

BINARY_PROTOCOL = {
    "miou": "official: mean over batches of the AVSBench mask_iou on each batch's frames",
    "fscore": "official: mean over batches of Eval_Fmeasure (max over 255 thresholds within each batch)",
    "miou_dataset": "per-dataset: mean IoU over all frames with a GT mask",
    "fscore_dataset": "per-dataset: one max over thresholds of the frame-mean F (all frames pooled)",
}


def binary_loss(outputs: dict, batch: dict, weights: LossWeights,
                audio_proj: Optional[nn.Module]) -> tuple[torch.Tensor, dict]:
    """``avstrain.losses.total_loss`` on a device batch (crop flags regrouped per clip)."""
    lb = {"masks": batch["masks"], "mask_valid": batch["mask_valid"], "label": batch["label"]}
    if "crop_valid" in batch:  # shards built with crops
        lb["crop_valid"] = batch["crop_valid"].reshape(batch["batch_size"], -1)  # [B*T] -> [B,T]
    return total_loss(outputs, lb, weights, audio_proj=audio_proj)


def binary_metric(batch_videos: int, classes: Optional[list]) -> MetricAccumulator:
    return MetricAccumulator(batch_videos=batch_videos)


def add_binary(acc: MetricAccumulator, logits: torch.Tensor, batch: dict) -> None:
    """Per-video records (frames without a GT mask dropped), keyed by dataset index."""
    acc.update(logits.float().squeeze(1), batch["masks"], batch["index"], class_ids=batch["label"],
               frame_valid=batch["mask_valid"].reshape(batch["batch_size"], -1))  # [B*T,1,S,S] -> [B*T,S,S]


def binary_result(acc: MetricAccumulator, classes: Optional[list], per_clip: bool) -> dict:
    """``MetricAccumulator.compute`` over all ranks; ``per_clip``: also ``"per_clip"``, dataset
    index -> that clip's ``iou``, ``fscore``, ``frames``; per-class rows keyed by class name."""
    acc.all_reduce()
    result = acc.compute()
    if per_clip:
        result["per_clip"] = records_to_clips(acc.videos)
    if "per_class" in result:
        names = classes or []
        result["per_class"] = {(names[c] if 0 <= c < len(names) else str(c)): v
                               for c, v in result["per_class"].items()}
    return result


def binary_document(res: dict, ds, batch_videos: int, precision: str) -> dict:
    return {"miou": res["miou"], "fscore": res["fscore"], "miou_dataset": res["miou_dataset"],
            "fscore_dataset": res["fscore_dataset"], "clips": res["clips"], "n_clips": res["clips"],
            "frames": res["frames"], "split": ds.split,
            "protocol": {**BINARY_PROTOCOL, "batch_videos": batch_videos, "order": ds.order_source,
                         "precision": precision}}


def binary_table(doc: dict) -> str:
    title = f"{doc['split']}: {doc['n_clips']} clips, {doc['frames']} frames with a GT mask"
    rows = [(f"official (batches of {doc['protocol']['batch_videos']})", doc["miou"], doc["fscore"]),
            ("dataset (all frames pooled)", doc["miou_dataset"], doc["fscore_dataset"])]
    return metrics_table(doc, title, rows, "class {name}")


# ----------------------------------------------------------------------------- semantic: AVSS

SEMANTIC_PROTOCOL = {
    "miou": "official AVSS: per class the mean over frames where it is predicted or present of the frame IoU, "
            "then the mean over all 71 classes (0 for classes never seen); padded v1 steps count",
    "fscore": "official AVSS: the same averaging of the per-frame F (beta^2 0.3) at the argmax labelling",
    "miou_seen": "labelled extra: the mean over the classes seen (predicted or present) only",
    "fscore_seen": "labelled extra: the F-score mean over the classes seen only",
}


def semantic_metric(batch_videos: int, classes: Optional[list]) -> AVSSMetric:
    return AVSSMetric(num_classes=NUM_CLASSES, class_names=classes)


def add_semantic(acc: AVSSMetric, logits: torch.Tensor, batch: dict) -> None:
    """Every step counts, padded ones included (docs/reference/avss.md 6.3)."""
    acc.update(logits.float(), batch["masks"].long())


def semantic_result(acc: AVSSMetric, classes: Optional[list], per_clip: bool) -> dict:
    acc.all_reduce()
    return acc.compute()


def semantic_document(res: dict, ds, batch_videos: int, precision: str) -> dict:
    doc = {k: res[k] for k in ("miou", "fscore", "miou_seen", "fscore_seen", "classes_seen", "frames")}
    # "checkpoint" is filled in by the caller; its slot here keeps the AVSS document's key order
    doc.update(clips=len(ds), n_clips=len(ds), split=ds.split, checkpoint=None, setting="avss",
               protocol=dict(SEMANTIC_PROTOCOL))
    return doc


def semantic_table(doc: dict) -> str:
    title = f"{doc['split']}: {doc['clips']} clips, {doc['frames']} time steps (padded v1 steps included)"
    rows = [("official AVSS (mean over 71 classes)", doc["miou"], doc["fscore"]),
            (f"mean over the {doc['classes_seen']} classes seen", doc["miou_seen"], doc["fscore_seen"])]
    return metrics_table(doc, title, rows, "class {name} ({frames} frames)")


# ----------------------------------------------------------------------------- the table

def metrics_table(doc: dict, title: str, rows: list, class_label: str) -> str:
    """``title``, then the ``rows`` (label, mIoU, F), the audio ablations and the per-class rows
    of an evaluate document, as aligned text columns."""
    rows = rows + [(f"audio {name} (official)", r["miou"], r["fscore"]) for name, r in doc.get("ablations", {}).items()]
    rows += [(class_label.format(name=name, frames=r.get("frames")), r["miou"], r["fscore"])
             for name, r in doc.get("per_class", {}).items()]
    cells = [("", "mIoU", "F-score")] + [(a, f"{b:.4f}", f"{c:.4f}") for a, b, c in rows]
    w = max(len(r[0]) for r in cells)
    return "\n".join([title] + [f"{a:<{w}}  {b:>7}  {c:>7}" for a, b, c in cells])


S4 = Task(name="s4", title="S4 binary", steps=BINARY_STEPS, semantic=False, audio_bias=True,
          seg_loss_at_model_size=False, per_clip=True, overlays=True, loss=binary_loss, new_metric=binary_metric,
          add_to_metric=add_binary, metric_result=binary_result, document=binary_document,
          ablation_keys=("miou", "fscore", "miou_dataset", "fscore_dataset"),
          write_masks=partial(write_binary_masks, by_category=True),  # GT: split/category/video/
          format_table=binary_table)
MS3 = replace(S4, name="ms3", title="MS3 binary",
              write_masks=partial(write_binary_masks, by_category=False))  # GT: split/video/
# AVSS training at a reduced image_size: 71 logit maps upsampled to 224 cost most of a CPU step, so
# the loss runs at the model resolution on nearest-downsampled masks instead (the metric still sees
# 224; the paper presets use the full size, where nothing changes)
AVSS = Task(name="avss", title="AVSS semantic", steps=SEMANTIC_STEPS, semantic=True, audio_bias=False,
            seg_loss_at_model_size=True, per_clip=False, overlays=False, loss=total_loss_avss, new_metric=semantic_metric,
            add_to_metric=add_semantic, metric_result=semantic_result, document=semantic_document,
            ablation_keys=("miou", "fscore", "miou_seen", "fscore_seen"), write_masks=write_semantic_masks,
            format_table=semantic_table)

TASKS: dict[str, Task] = {"s4": S4, "ms3": MS3, "avss": AVSS}


def format_table(doc: dict) -> str:
    """The text table of an ``avstrain evaluate`` document. Binary documents carry no
    ``setting`` key (their keys are stable: docs/architecture.md); S4 and MS3 share one table."""
    return TASKS[doc.get("setting", "s4")].format_table(doc)


# AVSS subsets that hold the clips of a binary task (docs/reference/avss.md 1.3: v1s = the S4
# clips, v1m = the MS3 clips); read as S4/MS3, an AVSS item is the binary view of such a clip
SUBSET_OF_TASK = {"s4": "v1s", "ms3": "v1m"}


def check_shards(setting: str, shards_setting: Optional[str], shards, subsets: Optional[list] = None) -> Optional[str]:
    """Whether shards built for ``shards_setting`` can serve the task ``setting`` (a config's, a
    preset's or a checkpoint's): DataError in one line if not, else a warning line for a likely
    mix-up, or None. Asked once, in the main process, when a ``ShardDataset`` opens a split.

    The semantic task needs AVSS shards; AVSS shards serve the binary tasks through the binary
    view of their v1s/v1m clips, so ``subsets`` (the AVSS subsets of the split) must hold no other.
    """
    built_for = TASKS.get(shards_setting)
    task = TASKS[setting]
    if task.semantic and not (built_for is not None and built_for.semantic):
        raise DataError(f"{shards}: setting={setting} needs shards built from an AVSS release "
                        f"(these are {shards_setting}); use a preset or checkpoint for {shards_setting}, "
                        "or build shards from an AVSS release")
    if not task.semantic and built_for is not None and built_for.semantic:
        other = sorted(set(subsets or ()) - set(SUBSET_OF_TASK.values()))
        if other:
            raise DataError(f"{shards}: the binary {setting} task reads the v1s/v1m clips of AVSS shards, but "
                            f"these hold {', '.join(other)} clips; build the shards with --subset "
                            f"{SUBSET_OF_TASK[setting]}, or use an AVSS preset or checkpoint")
    if (setting, shards_setting) == ("s4", "ms3"):
        return "the shards are MS3 but the config says setting=s4"
    return None
