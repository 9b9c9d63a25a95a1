"""Evaluation: AVSBench metrics of a model over a loader, and ``avstrain evaluate`` (a
checkpoint on one split, with the audio ablations)."""

from __future__ import annotations

from typing import Optional

import numpy as np
from torch import nn

from avsprep.common.clikit import progress
from avsprep.common.errors import DataError
from avstrain.checkpoints import load_checkpoint, system_from_checkpoint
from avstrain.config import TrainConfig
from avstrain.data import ShardDataset, make_eval_loader, to_device
from avstrain.devices import eval_forward, pick_device
from avstrain.per_clip import per_clip_rows
from avstrain.system import unwrap


def evaluate(model: nn.Module, loader, device, cfg: Optional[TrainConfig] = None, batch_videos: int = 4,
             audio_ablation: str = "none", classes: Optional[list] = None, quiet: bool = True,
             desc: str = "eval", per_clip: bool = False) -> dict:
    """The task's metrics of ``model`` over ``loader`` (``avstrain.tasks``: S4/MS3
    ``avstrain.metrics.MetricAccumulator``, AVSS ``avstrain.metrics.avss.AVSSMetric``).

    Binary tasks: ``miou``/``fscore``: official protocol, videos in dataset order in batches of
    ``batch_videos`` (1 = the reference's validation, 4 = its test); ``*_dataset``: all
    frames pooled. Only frames with a GT mask count. Each rank records its videos by
    dataset index and the records are gathered, so DDP evaluation equals a single process.
    ``audio_ablation``: none | zero (zeroed audio features); shuffle is the dataset's job
    (``ShardDataset.with_audio_from``). ``per_clip``: also ``"per_clip"``, dataset index ->
    that clip's ``iou``, ``fscore``, ``frames`` (``avstrain.per_clip.clip_metrics``).
    """
    m = unwrap(model)
    m.eval()
    task = m.task
    channels_last = device.type == "cuda" and (cfg.channels_last if cfg else False)
    acc = task.new_metric(batch_videos, classes)
    for cpu_batch in progress(loader, quiet=quiet, desc=desc, unit="batch", leave=False):
        batch = to_device(cpu_batch, device, channels_last, cfg.image_size if cfg else None)
        out = eval_forward(m, batch, device, cfg, zero_audio=audio_ablation == "zero")
        task.add_to_metric(acc, out["logits"], batch)
    return task.metric_result(acc, classes, per_clip)


def derangement(n: int, seed: int = 0) -> list[int]:
    """A fixed, seeded permutation with no fixed point: clip i gets the audio of clip
    ``audio_from[i] != i``. One random cycle through all clips (indices of the dataset, so no
    clip gets its own audio whatever the batches). ``n`` < 2 has none: ValueError (callers
    refuse such a split first, ``check_shuffle``)."""
    if n < 2:
        raise ValueError(f"no derangement of {n} clip(s): the shuffle ablation needs at least two")
    order = np.random.default_rng(seed).permutation(n)
    audio_from = [0] * n
    for i in range(n):
        audio_from[order[i]] = int(order[(i + 1) % n])
    return audio_from


def check_shuffle(ds, where) -> None:
    """The shuffle audio ablation gives each clip another clip's audio: DataError (one line, in
    the main process) for a split of fewer than two clips, where there is no other clip."""
    if len(ds) < 2:
        raise DataError(f"{where} ({ds.split}): {len(ds)} clip(s); the shuffle audio ablation (also run by "
                        "evaluate --per-clip and avstrain report) needs at least two clips, so that no clip gets "
                        "its own audio: evaluate a larger split, or drop shuffle from --audio-ablation")


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
    if per_clip and not model.task.per_clip:
        raise DataError(f"--per-clip is for the binary S4/MS3 tasks; {checkpoint} is an {model.task.title} model "
                        "(use --per-class for its class table)")
    if "shuffle" in ablations:
        check_shuffle(ds, shards)
    doc = evaluate_split(model, cfg, dev, ds, ablations=ablations, per_class=per_class, batch_videos=batch_videos,
                         workers=workers, quiet=quiet, seed=seed, per_clip=per_clip)
    doc["checkpoint"] = str(checkpoint)
    if ckpt.get("warnings"):
        doc["warnings"] = list(ckpt["warnings"])
    return doc


def evaluate_split(model, cfg, dev, ds, ablations=("none",), per_class: bool = False, batch_videos: int = 4,
                   workers: int = 0, quiet: bool = True, seed: int = 0, per_clip: bool = False) -> dict:
    """The ``avstrain evaluate`` document of a built model on one ``ShardDataset`` (give it
    ``in_csv_order()`` for the official batches)."""
    task = unwrap(model).task
    res = evaluate(model, make_eval_loader(ds, batch_videos, workers), dev, cfg, batch_videos, classes=ds.classes,
                   quiet=quiet, desc=f"evaluate {ds.split}", per_clip=per_clip)
    precision = "bf16 autocast" if dev.type == "cuda" and cfg.eval_amp else "fp32"
    doc = task.document(res, ds, batch_videos, precision)
    if per_class:
        doc["per_class"] = res["per_class"]
    results, audio_from = ablation_results(model, cfg, dev, ds, ablations, batch_videos, workers, quiet, seed,
                                           per_clip=per_clip)
    if results:
        doc["ablations"] = {name: {k: r[k] for k in task.ablation_keys} for name, r in results.items()}
    if per_clip:  # --per-clip: "clips" is the list of rows, "n_clips" the count (docs/architecture.md, stable interfaces)
        clip_ablations = {name: r["per_clip"] for name, r in results.items()}
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
