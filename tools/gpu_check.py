"""One short check for a lent GPU: ResNet-50 AVS model training throughput and memory.

A few Adam steps of the full ResNet-50 TPAVI model (stages 0-3, random init, random data,
batch of 4 clips = 20 frames) in fp32 and in bf16 autocast + channels_last; images/s,
peak memory (torch.cuda.max_memory_allocated) of each, and the memory of one TPAVI
block at stage 0 (factorised vs the reference's naive N x N form). Prints ONE JSON line.

    python tools/gpu_check.py                                  # on the GPU, 224 px
    python tools/gpu_check.py --device cpu --steps 2 --size 64 # smoke test anywhere
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_reset(device):
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mib(device):
    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if device.type == "cuda" else None


def train_steps(device, size: int, clips: int, steps: int, bf16: bool, channels_last: bool) -> dict:
    """Time ``steps`` Adam steps (after one warm-up step) on random frames and audio."""
    from avstrain.losses import s4_bce
    from avstrain.models import build_avs_model

    torch.manual_seed(0)
    model = build_avs_model("resnet50", tpavi_stages=(0, 1, 2, 3)).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    n = clips * 5
    frames = torch.randn(n, 3, size, size, device=device)
    if channels_last:
        frames = frames.contiguous(memory_format=torch.channels_last)
    audio = torch.randn(n, 128, device=device)
    masks = (torch.rand(clips, 5, size, size, device=device) > 0.5).float()
    valid = torch.zeros(clips, 5, dtype=torch.bool, device=device)
    valid[:, 0] = True

    def step():
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(frames, audio)[0]
        loss = s4_bce(logits.float(), masks, valid)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    step()  # warm-up (cuDNN autotune, allocator)
    _sync(device)
    _peak_reset(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = step()
    _sync(device)
    dt = time.perf_counter() - t0
    out = {"images_per_s": round(n * steps / dt, 2), "step_s": round(dt / steps, 4),
           "peak_mib": _peak_mib(device), "loss": round(float(loss.detach()), 4)}
    del model, opt
    return out


def tpavi_memory(device, size: int, clips: int) -> dict:
    """Forward+backward of one stage-0 TPAVI block (C=256, H=W=size/4, T=5), both forms."""
    from avstrain.models.tpavi import TPAVIModule

    h = size // 4
    res = {"stage0_hw": h, "n_tokens": 5 * h * h}
    for naive in (False, True):
        torch.manual_seed(0)
        block = TPAVIModule(256).to(device)
        x = torch.randn(clips, 256, 5, h, h, device=device, requires_grad=True)
        a = torch.randn(clips, 5, 128, device=device)
        _peak_reset(device)
        try:
            z, _ = block(x, a, naive=naive)
            z.float().sum().backward()
            _sync(device)
            res["naive_mib" if naive else "factorised_mib"] = _peak_mib(device)
        except torch.cuda.OutOfMemoryError:  # the point of the factorised form
            res["naive_mib"] = "out of memory"
        del block, x, a
    return res


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--size", type=int, default=224, help="frame side (multiple of 32)")
    p.add_argument("--clips", type=int, default=4, help="clips per batch (x5 frames)")
    p.add_argument("--steps", type=int, default=10)
    args = p.parse_args(argv)
    device = torch.device(args.device)
    doc = {"metric": "train_images_per_s_bf16_vs_fp32", "unit": "images/s", "device": str(device),
           "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
           "size": args.size, "clips": args.clips, "steps": args.steps}
    fp32 = train_steps(device, args.size, args.clips, args.steps, bf16=False, channels_last=False)
    fast = device.type == "cuda"  # bf16 + channels_last is the CUDA path of the engine
    mixed = train_steps(device, args.size, args.clips, args.steps, bf16=fast, channels_last=fast)
    doc.update({"fp32": fp32, "bf16_channels_last": mixed if fast else None,
                "ours": mixed["images_per_s"], "baseline": fp32["images_per_s"],
                "ratio": round(mixed["images_per_s"] / fp32["images_per_s"], 3),
                "tpavi": tpavi_memory(device, args.size, args.clips)})
    if not fast:
        doc["note"] = "CPU: fp32 both times (bf16/channels_last are CUDA-only in the engine)"
    print(json.dumps(doc))
    return doc


if __name__ == "__main__":
    main()
