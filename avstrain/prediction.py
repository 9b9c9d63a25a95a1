"""``avstrain predict``: a checkpoint's masks written as PNGs named like the GT."""

from __future__ import annotations

import io
from pathlib import Path

import torch

from avsprep.clikit import progress
from avstrain.checkpoints import load_checkpoint, system_from_checkpoint
from avstrain.data import ShardDataset, make_eval_loader, to_device
from avstrain.devices import pick_device


@torch.no_grad()
def run_predict(checkpoint, shards, out_dir, split: str = "test", device: str = "auto", batch_videos: int = 4,
                quiet: bool = False) -> dict:
    """``avstrain predict``: sigmoid > 0.5 masks as 0/255 single-channel PNGs named like the GT
    (S4 ``OUT/split/category/video/video_k.png``, MS3 ``OUT/split/video/video_k.png``, k = 1..5)."""
    from PIL import Image

    from avsprep.atomic import write_bytes

    ckpt = load_checkpoint(checkpoint)
    model, cfg = system_from_checkpoint(ckpt, checkpoint)
    dev = pick_device(device)
    model.to(dev).eval()
    ds = ShardDataset(shards, split)
    out_dir = Path(out_dir)
    written = 0
    for cpu_batch in progress(make_eval_loader(ds, batch_videos), quiet=quiet, desc="predict", unit="batch"):
        batch = to_device(cpu_batch, dev, False, cfg.image_size)
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda" and cfg.eval_amp):
            logits = model(batch, crops=False)["logits"].float()
        pred = (logits.squeeze(1) > 0).to(torch.uint8).mul_(255).cpu().numpy()  # sigmoid > 0.5 <=> logit > 0
        T_ = pred.shape[0] // batch["batch_size"]
        for b, video in enumerate(batch["video"]):
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
    return {"text": f"wrote {written} masks for {len(ds)} clips under {out_dir / split}", "masks": written,
            "clips": len(ds)}
