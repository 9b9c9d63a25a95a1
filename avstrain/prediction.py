"""``avstrain predict`` (a checkpoint's masks written as PNGs named like the GT) and
``predict_masks`` (binary masks of chosen clips, for the report galleries and TensorBoard)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from avsprep.common.clikit import progress
from avsprep.common.errors import DataError
from avsprep.annotations.propose import LabelStudioProposals, ProposalWriter
from avsprep.datasets.avsbench import CLASSES
from avstrain.checkpoints import load_checkpoint, system_from_checkpoint
from avstrain.data import ShardDataset, collate, make_eval_loader, to_device
from avstrain.devices import eval_forward, pick_device
from avstrain.mask_files import OVERLAY_DIR, MaskSink, check_shard_names


def run_predict(checkpoint, shards, out_dir, split: str = "test", device: str = "auto", batch_videos: int = 4,
                quiet: bool = False, labelimg=None, overlay: bool = False, label_studio=None) -> dict:
    """``avstrain predict``: sigmoid > 0.5 masks as 0/255 single-channel PNGs named like the GT
    (S4 ``OUT/split/category/video/video_k.png``, MS3 ``OUT/split/video/video_k.png``, k = 1..5);
    AVSS: palette RGB PNGs (``avstrain.mask_files.write_semantic_masks``).

    ``labelimg``: also (or only, when ``out_dir`` is None) write box proposals of the frames that
    have no GT mask as labelImg XML under that folder (:mod:`avsprep.annotations.propose`; existing annotation
    files are never touched). ``overlay``: also each frame with the mask painted over it (and the
    GT outline where the frame has a GT mask) at the same path under ``OUT/overlays/``.
    ``label_studio``: the same proposals as Label Studio predictions (a score per box: the mean
    predicted probability of its mask pixels) in ``label_studio/tasks.json``, images relative to
    the release root."""
    ckpt = load_checkpoint(checkpoint)
    model, cfg = system_from_checkpoint(ckpt, checkpoint)
    if (labelimg is not None or overlay) and not model.task.overlays:
        flags = " and ".join(f for f, on in (("--labelimg", labelimg is not None), ("--overlay", overlay)) if on)
        raise DataError(f"{flags}: {checkpoint} is an {model.task.title} model and these are drawn from a binary "
                        "mask (S4/MS3 models only); run avstrain predict without them for its palette PNGs")
    dev = pick_device(device)
    model.to(dev).eval()
    ds = ShardDataset(shards, split, task=cfg.setting)
    out_dir = Path(out_dir) if out_dir is not None else None
    check_shard_names(ds.names, ds.classes, f"{shards} ({split})")
    proposals = ProposalWriter(Path(labelimg), "model") if labelimg is not None else None
    if label_studio is not None:
        proposals = LabelStudioProposals(Path(label_studio), f"avstrain predict {Path(checkpoint).name}",
                                         CLASSES.get(cfg.setting, []), None)
    sink = MaskSink(out_dir, split, cfg.setting, ds.classes, proposals, overlay)
    written = overlays_written = 0
    for cpu_batch in progress(make_eval_loader(ds, batch_videos), quiet=quiet, desc="predict", unit="batch"):
        batch = to_device(cpu_batch, dev, False, cfg.image_size)
        logits = eval_forward(model, batch, dev, cfg)["logits"].float()
        masks, overlays = model.task.write_masks(logits, cpu_batch, sink)
        written += masks
        overlays_written += overlays
    text = f"wrote {written} masks for {len(ds)} clips under {out_dir / split}" if out_dir is not None else ""
    out = {"masks": written, "clips": len(ds)}
    if overlay and out_dir is not None:
        text += f"; {overlays_written} overlays under {out_dir / OVERLAY_DIR / split}"
        out["overlays"] = overlays_written
    if isinstance(proposals, LabelStudioProposals):
        proposals.finish()
        c = proposals.counts
        text += ("\n" if text else "") + (f"wrote {c['written']} Label Studio task(s) (frames without a GT mask, "
                                           f"boxes as predictions) to {label_studio}/tasks.json")
        out.update(proposals=c["written"], proposal_boxes=c["boxes"])
    elif proposals is not None:
        c = proposals.counts
        text += ("\n" if text else "") + (f"wrote {c['written']} box proposal(s) (frames without a GT mask) under "
                                           f"{labelimg}; skipped {c['skipped_existing']} frame(s) that already "
                                           "have an annotation file")
        out.update(proposals=c["written"], proposal_boxes=c["boxes"], skipped_existing=c["skipped_existing"])
    out["text"] = text
    return out


def predict_masks(model, cfg, dev, ds, indices: list[int], batch_videos: int = 4) -> dict[int, np.ndarray]:
    """Binary masks ``[T,S,S]`` (sigmoid > 0.5) of the clips ``indices`` of ``ds`` (S4/MS3 models)."""
    out = {}
    model.eval()
    for s in range(0, len(indices), batch_videos):
        idx = indices[s:s + batch_videos]
        batch = to_device(collate([ds[i] for i in idx]), dev, False, cfg.image_size)
        logits = eval_forward(model, batch, dev, cfg)["logits"].float().squeeze(1)  # [B*T,1,S,S] -> [B*T,S,S]
        pred = (logits > 0).cpu().numpy().reshape(len(idx), -1, *logits.shape[1:])  # [B,T,S,S]
        for k, i in enumerate(idx):
            out[i] = pred[k]
    return out
