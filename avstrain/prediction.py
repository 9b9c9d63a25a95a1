"""``avstrain predict``: a checkpoint's masks written as PNGs named like the GT."""

from __future__ import annotations

import io
from pathlib import Path

import torch

from avsprep.common.clikit import progress
from avstrain.checkpoints import load_checkpoint, system_from_checkpoint
from avstrain.data import ShardDataset, make_eval_loader, to_device
from avstrain.devices import pick_device


@torch.no_grad()
def run_predict(checkpoint, shards, out_dir, split: str = "test", device: str = "auto", batch_videos: int = 4,
                quiet: bool = False, labelimg=None, overlay: bool = False) -> dict:
    """``avstrain predict``: sigmoid > 0.5 masks as 0/255 single-channel PNGs named like the GT
    (S4 ``OUT/split/category/video/video_k.png``, MS3 ``OUT/split/video/video_k.png``, k = 1..5).

    ``labelimg``: also (or only, when ``out_dir`` is None) write box proposals of the frames that
    have no GT mask as labelImg XML under that folder (:mod:`avsprep.annotations.propose`; existing annotation
    files are never touched). ``overlay``: also each frame with the mask painted over it (and the
    GT outline where the frame has a GT mask) at the same path under ``OUT/overlays/``."""
    from PIL import Image

    from avsprep.common.atomic import write_bytes

    ckpt = load_checkpoint(checkpoint)
    model, cfg = system_from_checkpoint(ckpt, checkpoint)
    dev = pick_device(device)
    model.to(dev).eval()
    ds = ShardDataset(shards, split, task=cfg.setting)
    out_dir = Path(out_dir) if out_dir is not None else None
    written = overlays_written = 0
    proposals = None
    if labelimg is not None:
        from avsprep.annotations.propose import ProposalWriter, propose_predicted

        proposals = ProposalWriter(Path(labelimg), "model")
    for cpu_batch in progress(make_eval_loader(ds, batch_videos), quiet=quiet, desc="predict", unit="batch"):
        batch = to_device(cpu_batch, dev, False, cfg.image_size)
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda" and cfg.eval_amp):
            logits = model(batch, crops=False)["logits"].float()
        if cfg.setting == "avss":
            if out_dir is not None:
                written += _write_avss(logits, batch, out_dir / split)
            continue
        pred = (logits.squeeze(1) > 0).to(torch.uint8).mul_(255).cpu().numpy()  # sigmoid > 0.5 <=> logit > 0
        T_ = pred.shape[0] // batch["batch_size"]
        for b, video in enumerate(batch["video"]):
            if proposals is not None:
                category = ds.classes[int(cpu_batch["label"][b])]
                for t in range(T_):
                    if not bool(cpu_batch["mask_valid"][b][t]):
                        propose_predicted(proposals, cfg.setting, split, category, video, t + 1, pred[b * T_ + t])
            if out_dir is None:
                continue
            if cfg.setting == "s4":
                folder = out_dir / split / ds.classes[int(cpu_batch["label"][b])] / video
            else:
                folder = out_dir / split / video
            folder.mkdir(parents=True, exist_ok=True)
            for t in range(T_):
                buf = io.BytesIO()
                Image.fromarray(pred[b * T_ + t]).save(buf, format="PNG")
                write_bytes(folder / f"{video}_{t + 1}.png", buf.getvalue())
                written += 1
            if overlay:
                overlays_written += write_overlays(out_dir, folder, video, cpu_batch, b, pred[b * T_:(b + 1) * T_])
    text = f"wrote {written} masks for {len(ds)} clips under {out_dir / split}" if out_dir is not None else ""
    out = {"masks": written, "clips": len(ds)}
    if overlay and out_dir is not None:
        text += f"; {overlays_written} overlays under {out_dir / OVERLAY_DIR / split}"
        out["overlays"] = overlays_written
    if proposals is not None:
        c = proposals.counts
        text += ("\n" if text else "") + (f"wrote {c['written']} box proposal(s) (frames without a GT mask) under "
                                           f"{labelimg}; skipped {c['skipped_existing']} frame(s) that already "
                                           "have an annotation file")
        out.update(proposals=c["written"], proposal_boxes=c["boxes"], skipped_existing=c["skipped_existing"])
    out["text"] = text
    return out


OVERLAY_DIR = "overlays"


def write_overlays(out_dir: Path, folder: Path, video: str, cpu_batch: dict, b: int, pred) -> int:
    """``--overlay``: clip ``b``'s frames with its predicted 0/255 masks ``pred [5,S,S]`` painted
    over them and the GT outline where ``mask_valid``; written beside the masks' tree under
    ``OUT/overlays/``. Returns the number of files."""
    from avsprep.common.atomic import write_bytes
    from avstrain.overlays import overlay, png_bytes

    target = out_dir / OVERLAY_DIR / folder.relative_to(out_dir)
    target.mkdir(parents=True, exist_ok=True)
    frames = cpu_batch["frames"][b].numpy()          # [5,S,S,3] uint8
    gts = cpu_batch["masks"][b].numpy()              # [5,S,S] 0/1
    valid = cpu_batch["mask_valid"][b].numpy()       # [5] bool
    for t in range(len(pred)):
        img = overlay(frames[t], pred[t] > 0, gts[t] if valid[t] else None)
        write_bytes(target / f"{video}_{t + 1}.png", png_bytes(img))
    return len(pred)


def _write_avss(logits, batch, out_dir: Path) -> int:
    """AVSS: argmax -> palette RGB PNG ``OUT/split/{uid}/{uid}_{t}.png``, t = 0..9 (padded steps included),
    as the official ``vis_mask.py`` names them. Written at the shard resolution without the official
    360x240 bicubic resize, so every pixel is a palette colour and decodes back to its class."""
    from PIL import Image

    from avsprep.common.atomic import write_bytes
    from avsprep.datasets.avss_classes import encode_rgb_mask

    pred = logits.argmax(dim=1).to(torch.uint8).cpu().numpy()  # [B*T, S, S]
    steps = pred.shape[0] // batch["batch_size"]
    n = 0
    for b, video in enumerate(batch["video"]):
        folder = out_dir / video
        folder.mkdir(parents=True, exist_ok=True)
        for t in range(steps):
            buf = io.BytesIO()
            Image.fromarray(encode_rgb_mask(pred[b * steps + t]), "RGB").save(buf, format="PNG")
            write_bytes(folder / f"{video}_{t}.png", buf.getvalue())
            n += 1
    return n
