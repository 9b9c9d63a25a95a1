"""Loader throughput: our shard loader vs an AVSBench-style loader, clips/s, same clips and workers.

Ours: ``avstrain.data.ShardDataset`` (uint8 arrays from HDF5; normalisation happens
later on the device). Baseline, as the AVSBench S4 loader does per item: PIL-decode
the 5 PNG frames and the GT mask PNGs (1 for train, 5 otherwise), load the log-mel
pickle, ``ToTensor`` + ``Normalize`` on the CPU. Both go through a ``DataLoader`` with
the same batch size and worker count, in the same run, after one warm-up pass each
(so both read from the page cache), with persistent workers (start-up not timed).
Prints one JSON line last.

    python tools/bench_loader.py                     # builds a demo dataset + shards in a temp dir
    python tools/bench_loader.py --root R --shards S --split train --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset


class AVSBenchStyleDataset(Dataset):
    """The reference S4 item: frames and masks decoded from PNG with PIL, log-mel unpickled,
    ToTensor + Normalize on the CPU."""

    def __init__(self, root: Path, split: str):
        from torchvision import transforms

        from avsprep.datasets.avsbench import AVSBenchLayout

        self.layout = AVSBenchLayout.from_root(root)
        self.clips = self.layout.clips([split])
        self.img_tf = transforms.Compose([transforms.ToTensor(),
                                          transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
        self.mask_tf = transforms.ToTensor()

    def __len__(self):
        return len(self.clips)

    def __getitem__(self, i):
        from PIL import Image

        from avsprep.audio import load_logmel_pickle

        clip = self.clips[i]
        imgs = [self.img_tf(Image.open(self.layout.frame_path(clip, k)).convert("RGB")) for k in range(1, 6)]
        masks = [self.mask_tf(Image.open(self.layout.mask_path(clip, k)).convert("1"))
                 for k in self.layout.mask_frames(clip)]
        audio = torch.from_numpy(load_logmel_pickle(self.layout.logmel_path(clip))).unsqueeze(1)  # [5,1,96,64]
        return torch.stack(imgs), audio, torch.stack(masks)


def _rate(loader, passes: int) -> tuple[float, int]:
    for _ in loader:  # warm-up pass: page cache, worker start-up paths
        pass
    n = 0
    t0 = time.perf_counter()
    for _ in range(passes):
        for batch in loader:
            n += (batch["frames"] if isinstance(batch, dict) else batch[0]).shape[0]
    return n / (time.perf_counter() - t0), n


def build_demo(tmp: Path, clips: int) -> tuple[Path, Path]:
    from avsprep.importer import run_import
    from avsprep.build import BuildOptions, build_shards
    from avsprep.demo import write_demo

    root, shards = tmp / "demo", tmp / "shards"
    write_demo(root, clips=clips, seed=0, quiet=True)
    run_import(root, tmp / "boxes.csv", quiet=True)
    build_shards(tmp / "boxes.csv", root, shards, BuildOptions(workers=2), quiet=True)
    return root, shards


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, help="AVSBench root (default: build a demo dataset)")
    p.add_argument("--shards", type=Path, help="shards built from --root")
    p.add_argument("--clips", type=int, default=48, help="demo clips to build when no --root")
    p.add_argument("--split", default="train")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--passes", type=int, default=5)
    args = p.parse_args(argv)
    torch.set_num_threads(1)

    from avstrain.data import ShardDataset, collate

    with tempfile.TemporaryDirectory() as tmp:
        root, shards = args.root, args.shards
        if root is None or shards is None:
            root, shards = build_demo(Path(tmp), args.clips)
        ours_ds = ShardDataset(shards, args.split)
        base_ds = AVSBenchStyleDataset(root, args.split)
        # persistent workers: time the steady state of both loaders, not process start-up
        kw = dict(batch_size=args.batch_size, num_workers=args.workers, shuffle=False,
                  persistent_workers=args.workers > 0)
        base, n_base = _rate(DataLoader(base_ds, **kw), args.passes)
        ours, n_ours = _rate(DataLoader(ours_ds, collate_fn=collate, **kw), args.passes)
        # what our pipeline adds on a CPU-only machine: the normalisation that otherwise runs on the GPU
        from avstrain.data import to_device

        def timed_norm():
            t0, n = time.perf_counter(), 0
            for batch in DataLoader(ours_ds, collate_fn=collate, **kw):
                to_device(batch, torch.device("cpu"))
                n += batch["frames"].shape[0]
            return n / (time.perf_counter() - t0)

        ours_cpu_norm = timed_norm()
    doc = {"metric": "loader_clips_per_s", "unit": "clips/s", "ours": round(ours, 2), "baseline": round(base, 2),
           "ratio": round(ours / base, 2), "workers": args.workers, "clips": len(ours_ds), "split": args.split,
           "batch_size": args.batch_size, "clips_timed": n_ours,
           "ours_with_cpu_normalise": round(ours_cpu_norm, 2),
           "ratio_with_cpu_normalise": round(ours_cpu_norm / base, 2),
           "load_average_1min": round(os.getloadavg()[0], 2)}
    assert n_base == n_ours
    print(json.dumps(doc))
    return doc


if __name__ == "__main__":
    main()
