"""``avstrain predict``'s files: a batch's predicted masks as PNGs named like the GT, their
overlays and labelImg box proposals. One writer per kind of task (``avstrain.tasks`` picks it);
``avstrain.prediction.run_predict`` runs the model and hands each batch here."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from PIL import Image

from avsprep.common.atomic import write_bytes
from avsprep.common.errors import DataError
from avsprep.common.paths import inside
from avsprep.datasets.base import safe_name
from avsprep.datasets.avss_classes import encode_rgb_mask
from avsprep.annotations.propose import ProposalWriter, propose_predicted
from avstrain.overlays import overlay, png_bytes

OVERLAY_DIR = "overlays"


@dataclass
class MaskSink:
    """Where the writers put a run's files: masks under ``out_dir/split`` (``out_dir`` None: no
    masks), overlays under ``out_dir/overlays/split``, box proposals into ``proposals``."""

    out_dir: Optional[Path]
    split: str
    setting: str  # the task name, for the proposals' folder layout (avsprep.annotations.propose)
    classes: list
    proposals: Optional[ProposalWriter] = None  # or a LabelStudioProposals (same calls)
    overlay: bool = False


def _png(img: np.ndarray, mode: Optional[str] = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img, mode).save(buf, format="PNG")
    return buf.getvalue()


def check_shard_names(names, classes, where) -> None:
    """Before predict writes anything: every clip name and class name of the shards (they become
    folder and file names) is a plain file name (:func:`avsprep.datasets.base.safe_name`)."""
    for kind, values in (("clip", names), ("class", classes)):
        for name in values:
            why = safe_name(name)
            if why is not None:
                raise DataError(f"{where}: {kind} name {name!r} {why}; predict names files after it, so nothing "
                                "was written - rebuild the shards from a fixed metadata CSV")


def clip_folder(sink: MaskSink, *names: str) -> Path:
    """``out_dir/split/*names``: each name (a clip name or category read from the shards) must be a
    plain file name and the folder must lie under ``out_dir``; else a one-line ``DataError``."""
    for name in names:
        why = safe_name(name)
        if why is not None:
            raise DataError(f"shard clip/category name {name!r} {why}; predict names files after it, so nothing "
                            f"is written under {sink.out_dir} - rebuild the shards from a fixed metadata CSV")
    return inside(sink.out_dir, Path(sink.out_dir, sink.split, *names), "predicted masks")


def write_binary_masks(logits: torch.Tensor, cpu_batch: dict, sink: MaskSink,
                       by_category: bool) -> tuple[int, int]:
    """S4/MS3: sigmoid > 0.5 masks ``logits [B*T,1,S,S]`` as 0/255 single-channel PNGs
    ``split/[category/]video/video_k.png`` (k = 1..T; the category folder for S4, as the GT),
    proposals for the frames without a GT mask, overlays. Returns (masks, overlays) written."""
    pred = (logits.squeeze(1) > 0).to(torch.uint8).mul_(255).cpu().numpy()  # sigmoid > 0.5 <=> logit > 0
    probs = torch.sigmoid(logits.squeeze(1)).cpu().numpy() if sink.proposals is not None else None  # box scores
    videos = cpu_batch["video"]
    steps = pred.shape[0] // len(videos)
    masks = overlays = 0
    for b, video in enumerate(videos):
        clip = pred[b * steps:(b + 1) * steps]  # [T, S, S]
        if sink.proposals is not None:
            category = sink.classes[int(cpu_batch["label"][b])]
            for t in range(steps):
                if not bool(cpu_batch["mask_valid"][b][t]):
                    propose_predicted(sink.proposals, sink.setting, sink.split, category, video, t + 1, clip[t],
                                      prob=probs[b * steps + t])
        if sink.out_dir is None:
            continue
        if by_category:
            folder = clip_folder(sink, sink.classes[int(cpu_batch["label"][b])], video)
        else:
            folder = clip_folder(sink, video)
        folder.mkdir(parents=True, exist_ok=True)
        for t in range(steps):
            write_bytes(folder / f"{video}_{t + 1}.png", _png(clip[t]))
            masks += 1
        if sink.overlay:
            overlays += write_overlays(sink.out_dir, folder, video, cpu_batch, b, clip)
    return masks, overlays


def write_overlays(out_dir: Path, folder: Path, video: str, cpu_batch: dict, b: int, pred) -> int:
    """``--overlay``: clip ``b``'s frames with its predicted 0/255 masks ``pred [T,S,S]`` painted
    over them and the GT outline where ``mask_valid``; written beside the masks' tree under
    ``OUT/overlays/``. Returns the number of files."""
    target = inside(out_dir, out_dir / OVERLAY_DIR / folder.relative_to(out_dir), "overlays")
    target.mkdir(parents=True, exist_ok=True)
    frames = cpu_batch["frames"][b].numpy()          # [T,S,S,3] uint8
    gts = cpu_batch["masks"][b].numpy()              # [T,S,S] 0/1
    valid = cpu_batch["mask_valid"][b].numpy()       # [T] bool
    for t in range(len(pred)):
        img = overlay(frames[t], pred[t] > 0, gts[t] if valid[t] else None)
        write_bytes(target / f"{video}_{t + 1}.png", png_bytes(img))
    return len(pred)


def write_semantic_masks(logits: torch.Tensor, cpu_batch: dict, sink: MaskSink) -> tuple[int, int]:
    """AVSS: argmax -> palette RGB PNG ``OUT/split/{uid}/{uid}_{t}.png``, t = 0..T-1 (padded steps
    included), as the official ``vis_mask.py`` names them. Written at the shard resolution without
    the official 360x240 bicubic resize, so every pixel is a palette colour and decodes back to its
    class. No proposals or overlays (they are binary-mask tools). Returns (masks, 0)."""
    if sink.out_dir is None:
        return 0, 0
    pred = logits.argmax(dim=1).to(torch.uint8).cpu().numpy()  # [B*T, S, S]
    videos = cpu_batch["video"]
    steps = pred.shape[0] // len(videos)
    n = 0
    for b, video in enumerate(videos):
        folder = clip_folder(sink, video)
        folder.mkdir(parents=True, exist_ok=True)
        for t in range(steps):
            write_bytes(folder / f"{video}_{t}.png", _png(encode_rgb_mask(pred[b * steps + t]), "RGB"))
            n += 1
    return n, 0
