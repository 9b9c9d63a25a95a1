"""Training-step throughput: our ResNet-50 AVS model against the reference computation, same run.

Ours: ``build_avs_model("resnet50")`` as ``avstrain train`` runs it: the exact factorised
O(N*T) TPAVI; on CUDA also bf16 autocast + channels_last (the engine's defaults there).
Reference: the same model, the same weights (same seed) and the same input, with every TPAVI
block computing the full N x N attention matrix, in fp32 with contiguous memory, as the official
``Pred_endecoder`` does. One step = forward, S4 BCE on frame 1, backward, Adam step; random init
(no weights file needed), batch of B clips = 5 B frames at S x S. Each variant runs in its own
process, so its peak memory (CPU: ``ru_maxrss``; CUDA: ``max_memory_allocated``) is its own.

    python tools/bench_train.py                       # CPU; CUDA variants too when a GPU is present
    python tools/bench_train.py --device cpu --steps 3 --batch 1 --size 224

The last line is one JSON document: ``ours`` / ``baseline`` in images (frames) per second,
``ratio`` = ours / reference (higher is better), per-variant step time and peak memory, and the
first-step losses of the variants (they agree: same computation, same numbers).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# variant -> (naive N x N TPAVI, bf16 autocast, channels_last)
VARIANTS = {
    "ours": (False, False, False),
    "reference": (True, False, False),
    "ours_bf16_channels_last": (False, True, True),
}


def run_variant(name: str, device: str, steps: int, warmup: int, batch: int, size: int, seed: int) -> dict:
    """Time ``steps`` training steps of one variant in this process."""
    import torch
    import torch.nn.functional as F

    from avstrain.models import build_avs_model
    from avstrain.models.tpavi import TPAVIModule

    naive, bf16, channels_last = VARIANTS[name]
    dev = torch.device(device)
    torch.manual_seed(seed)
    model = build_avs_model("resnet50", tpavi_stages=(0, 1, 2, 3), pretrained=None)
    for m in model.modules():
        if isinstance(m, TPAVIModule):
            m.naive = naive
    model.to(dev).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(seed + 1)
    frames = torch.randn(batch * 5, 3, size, size, generator=g).to(dev)
    audio = torch.randn(batch * 5, 128, generator=g).to(dev)
    masks = (torch.rand(batch, size, size, generator=g) > 0.7).float().to(dev)
    if channels_last:
        frames = frames.contiguous(memory_format=torch.channels_last)

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=bf16):
            out = model(frames, audio)
            logits = out[0] if isinstance(out, (tuple, list)) else out
        first = logits.float().reshape(batch, 5, 1, size, size)[:, 0, 0]  # S4: GT mask on frame 1
        loss = F.binary_cross_entropy_with_logits(first, masks)
        loss.backward()
        opt.step()
        return float(loss.detach())

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    first_loss = step()
    for _ in range(max(warmup - 1, 0)):
        step()
    sync()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t)
    step_s = sorted(times)[len(times) // 2]  # median
    peak = (torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"variant": name, "device": device, "step_s": round(step_s, 4),
            "images_per_s": float(f"{batch * 5 / step_s:.4g}"), "peak_mib": round(peak, 1),
            "first_loss": first_loss, "steps": steps, "threads": torch.get_num_threads()}


def _child(name: str, args) -> dict:
    argv = [sys.executable, os.path.abspath(__file__), "--variant", name, "--device", args.device_for[name],
            "--steps", str(args.steps), "--warmup", str(args.warmup), "--batch", str(args.batch),
            "--size", str(args.size), "--seed", str(args.seed)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([REPO] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    res = subprocess.run(argv, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        tail = (res.stderr.strip().splitlines() or ["?"])[-1]
        raise SystemExit(f"bench_train: variant {name} on {args.device_for[name]} failed: {tail}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                    help="auto: CPU always, plus the CUDA variants when a GPU is present")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per variant (median reported)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps first (default 1)")
    ap.add_argument("--batch", type=int, default=1, help="clips per step (5 frames each); default 1")
    ap.add_argument("--size", type=int, default=224, help="frame side (default 224, as AVSBench)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variant", choices=list(VARIANTS), help=argparse.SUPPRESS)  # child process
    args = ap.parse_args(argv)

    if args.variant:
        print(json.dumps(run_variant(args.variant, args.device, args.steps, args.warmup, args.batch,
                                     args.size, args.seed)))
        return 0

    import torch

    cuda = torch.cuda.is_available() and args.device in ("auto", "cuda")
    if args.device == "cuda" and not cuda:
        raise SystemExit("bench_train: --device cuda but no CUDA device is visible; use --device cpu")
    results: dict[str, dict] = {}
    if args.device in ("auto", "cpu"):
        args.device_for = {"ours": "cpu", "reference": "cpu"}
        for name in ("ours", "reference"):
            results[f"cpu_{name}"] = _child(name, args)
            print(f"bench_train: {json.dumps(results[f'cpu_{name}'])}", file=sys.stderr, flush=True)
    if cuda:
        args.device_for = {k: "cuda" for k in VARIANTS}
        for name in ("ours", "ours_bf16_channels_last", "reference"):
            results[f"cuda_{name}"] = _child(name, args)
            print(f"bench_train: {json.dumps(results[f'cuda_{name}'])}", file=sys.stderr, flush=True)
    # headline: CUDA when present (our default there: bf16 + channels_last), else CPU fp32
    ours, ref = ((results["cuda_ours_bf16_channels_last"], results["cuda_reference"]) if cuda
                 else (results["cpu_ours"], results["cpu_reference"]))
    doc = {"metric": "train_step_images_per_s", "unit": "images/s",
           "ours": ours["images_per_s"], "baseline": ref["images_per_s"],
           "ratio": round(ref["step_s"] / ours["step_s"], 3),  # = ours / reference in images/s
           "device": ours["device"], "batch_clips": args.batch, "size": args.size, "steps": args.steps,
           "cores": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2),
           "gpu": torch.cuda.get_device_name(0) if cuda else None}
    for key, r in results.items():
        doc[f"{key}_step_s"] = r["step_s"]
        doc[f"{key}_images_per_s"] = r["images_per_s"]
        doc[f"{key}_peak_mib"] = r["peak_mib"]
        doc[f"{key}_first_loss"] = round(r["first_loss"], 6)
    if "cpu_ours" in results:
        doc["cpu_ratio"] = round(results["cpu_reference"]["step_s"] / results["cpu_ours"]["step_s"], 3)
    if cuda:
        doc["cuda_fp32_ratio"] = round(results["cuda_reference"]["step_s"] / results["cuda_ours"]["step_s"], 3)
    print(json.dumps(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
