"""Which loss terms reach which parts of the model (issue 18).

One backward per active loss term on one batch, each with only that term's weight on, counting
the parameter tensors of each module group that get a non-zero gradient. It is a fact of the
wiring, not of the data: the recipe's crop losses reach only their own head, and nothing said so
before. The table is printed and saved at the start of every training run (RUN/reachability.json)
and shown by ``avstrain presets NAME --explain``.
"""

from __future__ import annotations

import dataclasses
import random
from contextlib import contextmanager
from typing import Optional

import numpy as np
import torch
from torch import nn

from avstrain.config import apply
from avstrain.data import to_device
from avstrain.losses import OPTIONAL_TERMS, TERMS, LossWeights
from avstrain.metrics.avss import NUM_CLASSES
from avstrain.system import build_system, loss_weights, task_losses
from avstrain.tasks import TASKS

# module groups by parameter-name prefix, first match wins (plain table; the AVS model's own
# prefixes are those of avstrain.models.avs_model)
GROUPS = (
    ("seg_encoder", ("avs.backbone.", "avs.conv")),      # visual backbone + ASPP neck
    ("tpavi_decoder", ("avs.",)),                        # TPAVI blocks (their audio projection too) + decoder
    ("audio_encoder", ("audio_encoder.",)),
    ("crop_head", ("crop_head.",)),
    ("projections", ("audio_proj.", "mask_proj.")),
)
SEGMENTATION = ("seg_encoder", "tpavi_decoder")  # the segmentation model: what the masks are decoded by
AUX_TERMS = ("ce", "pairwise", "audio", "mask_crop")  # the crop losses
COUPLING = "crop_encoder=segmentation, audio_crop_source=tpavi or w_mask_crop>0"


def group_of(name: str) -> Optional[str]:
    return next((g for g, prefixes in GROUPS if name.startswith(prefixes)), None)


def group_sizes(model: nn.Module) -> dict[str, int]:
    """Trainable parameter tensors per group (frozen ones, e.g. VGGish, cannot be reached)."""
    sizes = {g: 0 for g, _ in GROUPS}
    for name, p in model.named_parameters():
        if p.requires_grad and group_of(name):
            sizes[group_of(name)] += 1
    return sizes


def only(weights: LossWeights, term: str) -> LossWeights:
    """``weights`` with every term but ``term`` off (its own weight kept)."""
    off = {t: 0.0 for t in TERMS + OPTIONAL_TERMS if t != term}
    return dataclasses.replace(weights, **off)


def active_terms(weights: LossWeights) -> list[str]:
    return [t for t in TERMS + OPTIONAL_TERMS if getattr(weights, t)]


@contextmanager
def side_effect_free(model: nn.Module):
    """Eval mode (no BatchNorm statistics updated), every RNG restored, gradients cleared after:
    a run with the check trains exactly as one without it."""
    states = (random.getstate(), np.random.get_state())
    was_training = model.training
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        try:
            model.eval()
            yield
        finally:
            model.zero_grad(set_to_none=True)
            model.train(was_training)
            random.setstate(states[0])
            np.random.set_state(states[1])


def reachability(model: nn.Module, batch: dict, weights: LossWeights) -> dict:
    """``{"groups": {group: trainable tensors}, "terms": {term: {group: tensors reached}}}`` for
    every active term of ``weights``; ``model`` a ``TrainableAVS`` (not DDP-wrapped), ``batch``
    a device batch."""
    table = {}
    with side_effect_free(model):
        for term in active_terms(weights):
            model.zero_grad(set_to_none=True)
            out, loss_batch = model.outputs(batch, for_loss=True)  # not a training step (no step hooks)
            task_losses(model, out, loss_batch, only(weights, term))[0].backward()
            reached = {g: 0 for g, _ in GROUPS}
            for name, p in model.named_parameters():
                if p.grad is not None and group_of(name) and bool(p.grad.detach().abs().sum() > 0):
                    reached[group_of(name)] += 1
            table[term] = reached
    return {"groups": group_sizes(model), "terms": table}


def segmentation_reach(terms: dict, term: str) -> int:
    return sum(terms[term][g] for g in SEGMENTATION)


def warning(doc: dict) -> Optional[str]:
    """One line when a crop loss term reaches no parameter of the segmentation model, naming the
    config keys that couple it; None when every active one does."""
    dead = [t for t in AUX_TERMS if t in doc["terms"] and segmentation_reach(doc["terms"], t) == 0]
    if not dead:
        return None
    total = sum(doc["groups"][g] for g in SEGMENTATION)
    via_audio = [t for t in dead if doc["terms"][t]["audio_encoder"]]
    effect = ("only their own head and projections, so they leave the masks as the baseline's" if not via_audio
              else f"{', '.join(via_audio)} changes the masks only through the trainable audio encoder")
    return (f"crop loss term(s) {', '.join(dead)} reach no parameter of the segmentation model (0 of {total} "
            f"tensors; {effect}); couple them with {COUPLING} (docs/reproducing.md)")


def verdict(doc: dict) -> str:
    """The line under the table: the warning, or what holds."""
    if doc.get("warning"):
        return "warning: " + doc["warning"]
    if not any(t in doc["terms"] for t in AUX_TERMS):
        return "no crop loss term is on"
    return "every active crop loss term reaches the segmentation model"


def format_table(doc: dict) -> str:
    """Plain text: one row per term, ``reached/trainable`` per group."""
    groups = [g for g, _ in GROUPS]
    rows = [["term", *groups]]
    for term, reached in doc["terms"].items():
        rows.append([term, *(f"{reached[g]}/{doc['groups'][g]}" for g in groups)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(groups) + 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "loss reachability (parameter tensors with a non-zero gradient / trainable):\n" + "\n".join(lines)


# ----------------------------------------------------------------------------- avstrain presets --explain

# Reachability is a property of the wiring, not of the backbone's size: the explanation swaps
# the preset's backbones for the tiny ones (no weight files, seconds on a CPU) and keeps the rest.
TINY_WIRING = {"backbone": "tiny", "crop_backbone": "tiny", "backbone_weights": None, "crop_backbone_weights": None,
               "image_size": 64, "batch_size": 2, "require_pretrained": False, "device": "cpu"}
EXPLAIN_CLASSES = 23  # the AVSBench S4/MS3 class count (AVSS: its own NUM_CLASSES)


def synthetic_batch(steps: int, semantic: bool, num_classes: int, clips: int = 2, size: int = 64,
                    crop: int = 32, vggish: bool = True, seed: int = 0) -> dict:
    """A collated CPU batch in the shards' layout (``avstrain.data.collate``), random content,
    every crop valid; AVSS keys when ``semantic``. Enough to run every loss term once."""
    g = torch.Generator().manual_seed(seed)
    b, t = clips, steps
    masks = torch.randint(0, num_classes if semantic else 2, (b, t, size, size), generator=g).to(torch.uint8)
    batch = {
        "frames": torch.randint(0, 256, (b, t, size, size, 3), generator=g).to(torch.uint8),
        "masks": masks,
        "mask_valid": torch.ones(b, t, dtype=torch.bool),
        "crops": torch.randint(0, 256, (b, t, crop, crop, 3), generator=g).to(torch.uint8),
        "crop_valid": torch.ones(b, t, dtype=torch.bool),
        "audio_logmel": torch.randn(b, t, 96, 64, generator=g),
        "label": torch.randint(1 if semantic else 0, num_classes, (b,), generator=g),
        "mask_scale": torch.ones(b),
        "video": [f"clip{i}" for i in range(b)], "index": list(range(b)),
    }
    if vggish:
        batch["audio_vggish"] = torch.randn(b, t, 128, generator=g)
    if semantic:
        batch.update(frame_valid=torch.ones(b, t, dtype=torch.bool), gt_flag=torch.ones(b, t, dtype=torch.bool),
                     crop_label=torch.randint(1, num_classes, (b, t), generator=g))
    return batch


def explain(cfg) -> dict:
    """The reachability document of config ``cfg`` with its backbones swapped for tiny ones
    (``TINY_WIRING``), on a ``synthetic_batch``; audio as the README's shards give it (precomputed
    VGGish embeddings when the audio encoder is ``auto``)."""

    cfg = apply(cfg, TINY_WIRING, "the tiny wiring of --explain")
    task = TASKS[cfg.setting]
    classes = NUM_CLASSES if task.semantic else EXPLAIN_CLASSES
    torch.manual_seed(cfg.seed)
    model = build_system(cfg, num_classes=classes, has_vggish=True)
    batch = to_device(synthetic_batch(task.steps, task.semantic, classes), torch.device("cpu"), False,
                      cfg.image_size)
    doc = reachability(model, batch, loss_weights(cfg))
    doc["warning"] = warning(doc)
    doc["wiring"] = {k: getattr(cfg, k) for k in ("backbone", "crop_backbone", "image_size")}
    doc["audio_encoder"] = model.audio_kind
    return doc
