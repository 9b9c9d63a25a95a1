"""Evaluation: AVSBench metrics of a model over a loader, and ``avstrain evaluate`` (a
checkpoint on one split, with the audio ablations)."""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import nn

from avsprep.common.clikit import progress
from avsprep.common.errors import DataError
from avstrain.checkpoints import load_checkpoint, system_from_checkpoint
from avstrain.config import TrainConfig
from avstrain.data import ShardDataset, make_eval_loader, to_device
from avstrain.devices import pick_device
from avstrain.system import unwrap


@torch.no_grad()
def evaluate(model: nn.Module, loader, device, cfg: Optional[TrainConfig] = None, batch_videos: int = 4,
             audio_ablation: str = "none", classes: Optional[list] = None, quiet: bool = True,
             desc: str = "eval", per_clip: bool = False) -> dict:
    """AVSBench metrics of ``model`` over ``loader`` (``avstrain.metrics.MetricAccumulator``).

    ``miou``/``fscore``: official protocol, videos in dataset order in batches of
    ``batch_videos`` (1 = the reference's validation, 4 = its test); ``*_dataset``: all
    frames pooled. Only frames with a GT mask count. Each rank records its videos by
    dataset index and the records are gathered, so DDP evaluation equals a single process.
    ``audio_ablation``: none | zero (zeroed audio features); shuffle is the dataset's job
    (``ShardDataset.with_audio_from``). ``per_clip``: also ``"per_clip"``, dataset index ->
    that clip's ``iou``, ``fscore``, ``frames`` (``avstrain.per_clip.clip_metrics``).
    """
    from avstrain.metrics import MetricAccumulator

    m = unwrap(model)
    m.eval()
    use_cuda = device.type == "cuda"
    channels_last = use_cuda and (cfg.channels_last if cfg else False)
    acc = MetricAccumulator(batch_videos=batch_videos)
    semantic = None  # AVSS semantic batches (gt_flag present): the official AVSS metric instead
    for cpu_batch in progress(loader, quiet=quiet, desc=desc, unit="batch", leave=False):
        batch = to_device(cpu_batch, device, channels_last, cfg.image_size if cfg else None)
        B = batch["batch_size"]
        # fp32 unless eval_amp (the official test loop is fp32; amp is for training steps)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_cuda and (cfg.eval_amp if cfg else False)):
            out = m(batch, crops=False, zero_audio=audio_ablation == "zero")
        if "gt_flag" in batch:  # every step counts, padded ones included (reference/avss.md 6.3)
            if semantic is None:
                from avstrain.metrics_avss import AVSSMetric

                semantic = AVSSMetric(class_names=classes)
            semantic.update(out["logits"].float(), batch["masks"].long())
            continue
        logits = out["logits"].float().squeeze(1)  # [B*5,1,S,S] -> [B*5,S,S]
        acc.update(logits, batch["masks"], batch["index"], class_ids=cpu_batch["label"],
                   frame_valid=batch["mask_valid"].reshape(B, -1))
    if semantic is not None:
        semantic.all_reduce()
        return semantic.compute()
    acc.all_reduce()
    result = acc.compute()
    if per_clip:
        from avstrain.per_clip import records_to_clips

        result["per_clip"] = records_to_clips(acc.videos)
    if "per_class" in result:
        names = classes or []
        result["per_class"] = {(names[c] if 0 <= c < len(names) else str(c)): v
                               for c, v in result["per_class"].items()}
    return result


def derangement(n: int, seed: int = 0) -> list[int]:
    """A fixed, seeded permutation with no fixed point (n >= 2): clip i gets the audio of clip
    ``audio_from[i] != i``. One random cycle through all clips."""
    if n < 2:
        return list(range(n))
    order = np.random.default_rng(seed).permutation(n)
    audio_from = [0] * n
    for i in range(n):
        audio_from[order[i]] = int(order[(i + 1) % n])
    return audio_from


PROTOCOL = {
    "miou": "official: mean over batches of the AVSBench mask_iou on each batch's frames",
    "fscore": "official: mean over batches of Eval_Fmeasure (max over 255 thresholds within each batch)",
    "miou_dataset": "per-dataset: mean IoU over all frames with a GT mask",
    "fscore_dataset": "per-dataset: one max over thresholds of the frame-mean F (all frames pooled)",
}


def run_evaluate(checkpoint, shards, split: str = "test", ablations=("none",), per_class: bool = False,
                 batch_videos: int = 4, device: str = "auto", workers: int = 0, quiet: bool = True,
                 seed: int = 0, per_clip: bool = False) -> dict:
    """``avstrain evaluate``: metrics of a checkpoint on one split, plus audio ablations.

    ``per_clip``: ``"clips"`` becomes the list of per-clip rows (``avstrain.per_clip``);
    ``"n_clips"`` is the clip count either way."""
    ckpt = load_checkpoint(checkpoint)
    model, cfg = system_from_checkpoint(ckpt, checkpoint)
    dev = pick_device(device)
    model.to(dev)
    ds = ShardDataset(shards, split, task=cfg.setting).in_csv_order()  # official batches follow the metadata CSV
    if model.audio_kind == "precomputed" and not ds.has_vggish:
        raise DataError(f"checkpoint {checkpoint} takes VGGish embeddings from the shards, but {shards} has "
                        "none: build them with avsprep build --vggish-weights, or convert the official file "
                        "with avstrain convert --vggish-weights FILE")
    if cfg.setting == "avss":
        if per_clip:
            raise DataError(f"--per-clip is for the binary S4/MS3 tasks; {checkpoint} is an AVSS semantic model "
                            "(use --per-class for its class table)")
        doc = _avss_doc(model, ds, dev, cfg, batch_videos, workers, ablations, quiet, seed, checkpoint, split,
                        per_class)
    else:
        doc = evaluate_split(model, cfg, dev, ds, ablations=ablations, per_class=per_class,
                             batch_videos=batch_videos, workers=workers, quiet=quiet, seed=seed, per_clip=per_clip)
        doc["checkpoint"] = str(checkpoint)
    if ckpt.get("warnings"):
        doc["warnings"] = list(ckpt["warnings"])
    return doc


def evaluate_split(model, cfg, dev, ds, ablations=("none",), per_class: bool = False, batch_videos: int = 4,
                   workers: int = 0, quiet: bool = True, seed: int = 0, per_clip: bool = False) -> dict:
    """The ``avstrain evaluate`` document of a built model on one ``ShardDataset`` (give it
    ``in_csv_order()`` for the official batches)."""
    split = ds.split
    res = evaluate(model, make_eval_loader(ds, batch_videos, workers), dev, cfg, batch_videos, classes=ds.classes,
                   quiet=quiet, desc=f"evaluate {split}", per_clip=per_clip)
    doc = {"miou": res["miou"], "fscore": res["fscore"], "miou_dataset": res["miou_dataset"],
           "fscore_dataset": res["fscore_dataset"], "clips": res["clips"], "n_clips": res["clips"],
           "frames": res["frames"], "split": split,
           "protocol": {**PROTOCOL, "batch_videos": batch_videos, "order": ds.order_source,
                        "precision": "bf16 autocast" if dev.type == "cuda" and cfg.eval_amp else "fp32"}}
    if per_class:
        doc["per_class"] = res["per_class"]
    results, audio_from = ablation_results(model, cfg, dev, ds, ablations, batch_videos, workers, quiet, seed,
                                           per_clip=per_clip)
    if results:
        doc["ablations"] = {name: {k: r[k] for k in ("miou", "fscore", "miou_dataset", "fscore_dataset")}
                            for name, r in results.items()}
    if per_clip:
        clip_ablations = {name: r["per_clip"] for name, r in results.items()}  # --per-clip: "clips" is the list of rows, "n_clips" the count (DESIGN 13)
        from avstrain.per_clip import per_clip_rows

        doc["clips"] = per_clip_rows(ds.names, ds.classes, res["per_clip"], clip_ablations, audio_from)
    return doc


def ablation_results(model, cfg, dev, ds, ablations, batch_videos: int, workers: int, quiet: bool, seed: int,
                     per_clip: bool = False) -> tuple[dict, Optional[list]]:
    """``evaluate`` once per audio ablation other than ``none``, in the order given: ``shuffle``
    gives each clip the audio of ``derangement(len(ds), seed)``, ``zero`` zeroes the audio
    features. Returns ({name: result}, the shuffle's ``audio_from`` or None)."""
    results, audio_from = {}, None
    for name in [a for a in ablations if a != "none"]:
        d = ds
        if name == "shuffle":
            audio_from = derangement(len(ds), seed)
            d = ds.with_audio_from(audio_from)
        results[name] = evaluate(model, make_eval_loader(d, batch_videos, workers), dev, cfg, batch_videos,
                                 audio_ablation="zero" if name == "zero" else "none", classes=ds.classes,
                                 quiet=quiet, desc=f"audio {name}", per_clip=per_clip)
    return results, audio_from


AVSS_PROTOCOL = {
    "miou": "official AVSS: per class the mean over frames where it is predicted or present of the frame IoU, "
            "then the mean over all 71 classes (0 for classes never seen); padded v1 steps count",
    "fscore": "official AVSS: the same averaging of the per-frame F (beta^2 0.3) at the argmax labelling",
    "miou_seen": "labelled extra: the mean over the classes seen (predicted or present) only",
    "fscore_seen": "labelled extra: the F-score mean over the classes seen only",
}


def _avss_doc(model, ds, dev, cfg, batch_videos, workers, ablations, quiet, seed, checkpoint, split,
              per_class) -> dict:
    """``avstrain evaluate`` on AVSS semantic shards: the official AVSS metric, labelled extras,
    the per-class table (with ``--per-class``), and the audio ablations."""
    res = evaluate(model, make_eval_loader(ds, batch_videos, workers), dev, cfg, batch_videos, classes=ds.classes,
                   quiet=quiet, desc=f"evaluate {split}")
    doc = {k: res[k] for k in ("miou", "fscore", "miou_seen", "fscore_seen", "classes_seen", "frames")}
    doc.update(clips=len(ds), n_clips=len(ds), split=split, checkpoint=str(checkpoint), setting="avss",
               protocol=dict(AVSS_PROTOCOL))
    if per_class:
        doc["per_class"] = res["per_class"]
    results, _ = ablation_results(model, cfg, dev, ds, ablations, batch_videos, workers, quiet, seed)
    if results:
        doc["ablations"] = {name: {k: r[k] for k in ("miou", "fscore", "miou_seen", "fscore_seen")}
                            for name, r in results.items()}
    return doc
