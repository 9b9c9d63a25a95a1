"""Benchmark ``avsprep build`` against a naive h5py writer on the same demo clips.

Baseline (one process): per clip, PIL-open every frame and mask, crop and
resize the largest box, load the log-mel pickle, then one ``create_dataset``
per array in a group per clip (contiguous, no chunking, no compression).
Ours: ``python -m avsprep build --workers W``. Both run as child processes,
timed end to end; the headline rate is marginal (extra clips of the large set
over its extra seconds), so the fixed start-up (imports, worker start) cancels; peak RSS is the largest process of each
run, for two dataset sizes, to show that memory stays flat. Both load the pickles with
``avsprep.audio.load_logmel_pickle`` (no torch import since it rebuilds float tensors
with numpy), so neither pays the torch import any more.

The floor (one process, nothing else): the same clips' frames and masks decoded with PIL, the
largest box of each frame cropped and resized (``avsprep.build.crops``), the log-mel pickle loaded;
nothing written, no table look-ups (boxes grouped once up front). It is what decoding the inputs
costs on one core. It is read in CPU time (user + sys of every process, per extra clip of the large
set), which a loaded machine disturbs far less than wall time: ``per_core_vs_floor`` = floor CPU ms
per clip / ours, so 1.0 means our build costs a core no more than decoding the inputs does.

Progress goes to stderr; the last stdout line is one JSON document.

    python tools/bench_build.py [--small 48] [--large 192] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BASELINE = r"""
import sys, h5py, numpy as np
from PIL import Image
from avsprep.datasets.avsbench import AVSBenchLayout
from avsprep.annotations.table import read_table
from avsprep.audio import load_logmel_pickle
root, table, out = sys.argv[1:4]
layout = AVSBenchLayout.from_root(root)
df = read_table(table)
with h5py.File(out, "w") as f:
    for clip in layout.clips():
        g = f.create_group(clip.name)
        frames, masks, crops = [], [], []
        for k in range(1, 6):
            im = np.asarray(Image.open(layout.frame_path(clip, k)).convert("RGB"))
            frames.append(im)
            rows = df[(df.video == clip.name) & (df.frame == k)].dropna(subset=["xmin"])
            crop = np.zeros((224, 224, 3), np.uint8)
            if len(rows):
                b = rows.assign(a=(rows.xmax - rows.xmin) * (rows.ymax - rows.ymin)).sort_values("a").iloc[-1]
                x0, y0 = int(b.xmin), int(b.ymin)
                x1, y1 = max(int(np.ceil(b.xmax)), x0 + 1), max(int(np.ceil(b.ymax)), y0 + 1)
                crop = np.asarray(Image.fromarray(im[y0:y1, x0:x1]).resize((224, 224), Image.BILINEAR))
            crops.append(crop)
            mp = layout.mask_path(clip, k)
            m = np.zeros((224, 224), np.uint8)
            if k in layout.mask_frames(clip):
                m = (np.asarray(Image.open(mp).convert("L")) > 127).astype(np.uint8)
            masks.append(m)
        g.create_dataset("frames", data=np.stack(frames))
        g.create_dataset("masks", data=np.stack(masks))
        g.create_dataset("crops", data=np.stack(crops))
        g.create_dataset("audio_logmel", data=load_logmel_pickle(layout.logmel_path(clip)))
        g.create_dataset("label", data=layout.classes().index(clip.category))
"""

FLOOR = r"""
import sys, collections, numpy as np
from PIL import Image
from avsprep.datasets.avsbench import AVSBenchLayout
from avsprep.annotations.table import read_table
from avsprep.audio import load_logmel_pickle
from avsprep.build.crops import crop_and_resize, select_box
root, table = sys.argv[1:3]
layout = AVSBenchLayout.from_root(root)
df = read_table(table).dropna(subset=["xmin"])
boxes = collections.defaultdict(list)
for v, k, x0, y0, x1, y1 in zip(df.video, df.frame, df.xmin, df.ymin, df.xmax, df.ymax):
    boxes[(v, int(k))].append((x0, y0, x1, y1))
n = 0
for clip in layout.clips():
    for k in range(1, 6):
        with Image.open(layout.frame_path(clip, k)) as im:
            full = np.asarray(im.convert("RGB"))
        b = boxes.get((clip.name, k))
        if b:
            crop_and_resize(full, select_box(np.asarray(b, np.float64), "largest"), 224)
    for k in layout.mask_frames(clip):
        with Image.open(layout.mask_path(clip, k)) as im:
            np.asarray(im.convert("L")) > 127
    load_logmel_pickle(layout.logmel_path(clip))
    n += 1
assert n == len(layout.clips())
"""

RUSAGE = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
          "u = resource.getrusage(resource.RUSAGE_CHILDREN); "
          "print(u.ru_maxrss, r.returncode, u.ru_utime + u.ru_stime)")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def timed(cmd: list[str], env: dict) -> tuple[float, float, float]:
    """(wall seconds, peak RSS MiB of the largest process, CPU seconds of all its processes) of ``cmd``."""
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", RUSAGE, *cmd], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    last = res.stdout.strip().splitlines()[-1].split()
    if last[1] != "0":
        raise SystemExit(f"failed: {' '.join(cmd)}\n{res.stderr[-2000:]}")
    return wall, int(last[0]) / 1024, float(last[2])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", type=int, default=48)
    ap.add_argument("--large", type=int, default=192)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--clips-per-shard", type=int, default=32)
    args = ap.parse_args()
    env = dict(os.environ, OMP_NUM_THREADS="1", AVS_NO_PROGRESS="1")
    from avsprep.importer import run_import
    from avsprep.demo import write_demo

    figures = {}
    with tempfile.TemporaryDirectory(prefix="bench_build-") as tmp:
        tmp = Path(tmp)
        for size, n in (("small", args.small), ("large", args.large)):
            root, table = tmp / f"root-{n}", tmp / f"boxes-{n}.csv"
            log(f"writing demo dataset with {n} clips ...")
            write_demo(root, clips=n, seed=0, quiet=True)
            run_import(root, table, quiet=True)
            log(f"[{size}] baseline (naive h5py, 1 process) ...")
            b_wall, b_rss, b_cpu = timed([sys.executable, "-c", BASELINE, str(root), str(table), str(tmp / f"naive-{n}.h5")],
                                  env)
            log(f"[{size}] floor (decode + crop + resize, 1 process, nothing written) ...")
            f_wall, _, f_cpu = timed([sys.executable, "-c", FLOOR, str(root), str(table)], env)
            log(f"[{size}] ours (avsprep build --workers {args.workers}) ...")
            o_wall, o_rss, o_cpu = timed([sys.executable, "-m", "avsprep", "build", str(table), "--root", str(root),
                                   "-o", str(tmp / f"shards-{n}"), "--workers", str(args.workers),
                                   "--clips-per-shard", str(args.clips_per_shard), "-q"], env)
            naive_mib = (tmp / f"naive-{n}.h5").stat().st_size / 2**20
            ours_mib = sum(p.stat().st_size for p in (tmp / f"shards-{n}").rglob("*.h5")) / 2**20
            figures[size] = dict(clips=n, ours_s=o_wall, base_s=b_wall, floor_s=f_wall, ours_rss=o_rss, base_rss=b_rss,
                                 ours_cpu=o_cpu, floor_cpu=f_cpu, base_cpu=b_cpu,
                                 ours_mib=ours_mib, naive_mib=naive_mib)
            log(f"[{size}] ours {n / o_wall:.1f} clips/s ({o_wall:.1f} s, {o_rss:.0f} MiB peak, {ours_mib:.0f} MiB out); "
                f"baseline {n / b_wall:.1f} clips/s ({b_wall:.1f} s, {b_rss:.0f} MiB peak, {naive_mib:.0f} MiB out)")
    big, small = figures["large"], figures["small"]
    extra = big["clips"] - small["clips"]
    # marginal rate: the extra clips over the extra seconds; the fixed start-up cancels out
    ours = extra / max(big["ours_s"] - small["ours_s"], 1e-9)
    base = extra / max(big["base_s"] - small["base_s"], 1e-9)
    # the floor is read per core: CPU seconds per extra clip (user + sys of every process), which a
    # loaded machine disturbs far less than wall time
    cpu_ms = {k: 1000 * (big[f"{k}_cpu"] - small[f"{k}_cpu"]) / extra for k in ("ours", "floor", "base")}
    e2e_ours, e2e_base = big["clips"] / big["ours_s"], big["clips"] / big["base_s"]
    print(json.dumps({
        "metric": "build_clips_per_s", "unit": "clips/s", "ours": round(ours, 2), "baseline": round(base, 2),
        "ratio": round(ours / base, 3), "workers": args.workers,
        "method": "marginal rate (large-small clips)/(large-small wall s); end-to-end figures below",
        "floor_cpu_ms_per_clip": round(cpu_ms["floor"], 2), "ours_cpu_ms_per_clip": round(cpu_ms["ours"], 2),
        "baseline_cpu_ms_per_clip": round(cpu_ms["base"], 2),
        "floor_clips_per_core_s": round(1000 / cpu_ms["floor"], 2),
        "ours_clips_per_core_s": round(1000 / cpu_ms["ours"], 2),
        "per_core_vs_floor": round(cpu_ms["floor"] / cpu_ms["ours"], 3),
        "floor": "one process: decode frames + masks, crop + resize the largest box, load the log-mel pickle; "
                 "per_core_vs_floor = floor CPU ms per clip / ours (1.0 = our build costs no more than decoding)",
        "end_to_end_ours_large": round(e2e_ours, 2), "end_to_end_baseline_large": round(e2e_base, 2),
        "end_to_end_ratio_large": round(e2e_ours / e2e_base, 3),
        "clips_small": figures["small"]["clips"], "clips_large": big["clips"],
        "ours_clips_per_s_small": round(figures["small"]["clips"] / figures["small"]["ours_s"], 2),
        "baseline_clips_per_s_small": round(figures["small"]["clips"] / figures["small"]["base_s"], 2),
        "peak_rss_mib_small": round(figures["small"]["ours_rss"], 1),
        "peak_rss_mib_large": round(big["ours_rss"], 1),
        "baseline_peak_rss_mib_small": round(figures["small"]["base_rss"], 1),
        "baseline_peak_rss_mib_large": round(big["base_rss"], 1),
        "output_mib_large": round(big["ours_mib"], 1), "baseline_output_mib_large": round(big["naive_mib"], 1),
        "timing": "wall time of the whole command, process start-up included",
        "load_average_1min": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
    }))


if __name__ == "__main__":
    main()
