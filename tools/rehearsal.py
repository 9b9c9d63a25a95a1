"""Full-scale rehearsal: the whole pipeline at a real AVSBench split's size and shape, measured.

    python tools/rehearsal.py --like ../shared/avsbench_meta/s4_meta_data.csv      # 4,932 clips
    python tools/rehearsal.py --like ../shared/avsbench_meta/ms3_meta_data.csv     # 424 clips
    python tools/rehearsal.py --like ../shared/avsbench_meta/s4_meta_data.csv --clips 24 --steps 1

Stages, each its own process, as a user runs them:
``avsprep demo --like CSV`` (the real clip names, categories and splits, ids starting with ``-``
included) -> import -> validate -> build -> verify -> open the train split as ``ShardDataset``
(and, for comparison, with every shard hashed: the old rule) -> a few training steps of the
real ResNet-50 model at 224 (preset ``s4-resnet50-croplosses``, or ``ms3-resnet50-avsbench``).

Per stage: wall time, peak RSS of the largest process of the stage (``wait4``'s ``ru_maxrss``:
the stage's process and the workers it waited for) and the bytes it wrote. A line per stage goes
to stderr as it finishes (so a long run shows how far it got); the last line on stdout is one
JSON document. ``--clips N`` keeps N rows of the CSV (evenly spaced, first row kept, every
split present) for a quick run; ``--train-preset demo`` swaps in the tiny CPU model.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_LIKE = REPO.parent / "shared" / "avsbench_meta" / "s4_meta_data.csv"
PRESETS = {"s4": "s4-resnet50-croplosses", "ms3": "ms3-resnet50-avsbench"}

OPEN_CODE = r"""
import json, sys, time
from avstrain.data import ShardDataset
from avsprep.shards import ShardSet
t = time.perf_counter(); ds = ShardDataset(sys.argv[1], "train"); cheap = time.perf_counter() - t
item = ds[0]
t = time.perf_counter(); full = ShardSet(sys.argv[1], split="train", verify="full"); full_s = time.perf_counter() - t
print(json.dumps({"open_s": round(cheap, 3), "open_full_hash_s": round(full_s, 3), "train_clips": len(ds),
                  "shards": len(full.shards), "hashed_at_open": len(ds._reader.unhashed)}))
"""


def subsample_csv(src: Path, dst: Path, clips: int) -> int:
    """Keep ``clips`` rows of a metadata CSV, evenly spaced, the first row and every split kept."""
    lines = src.read_text(encoding="utf-8").splitlines()
    header, rows = lines[0], lines[1:]
    if clips >= len(rows):
        keep = list(range(len(rows)))
    else:
        step = len(rows) / clips
        keep = sorted({int(i * step) for i in range(clips)} | {0})
        split_col = header.split(",").index("split")
        for sp in ("train", "val", "test"):
            if not any(rows[i].split(",")[split_col] == sp for i in keep):
                keep.append(next(i for i, r in enumerate(rows) if r.split(",")[split_col] == sp))
        keep = sorted(set(keep))
    dst.write_text("\n".join([header] + [rows[i] for i in keep]) + "\n", encoding="utf-8")
    return len(keep)


def tree_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def run_stage(name: str, argv: list[str], env: dict, out: Path | None, log: Path) -> dict:
    """Run one stage to completion; wall time, peak RSS (MiB), bytes written, and its stdout."""
    t0 = time.perf_counter()
    with open(log, "ab") as err:
        err.write(f"\n=== {name}: {' '.join(argv)}\n".encode())
        err.flush()
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=err, cwd=str(REPO))
        stdout = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    res = {"wall_s": round(wall, 2), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
           "bytes": tree_bytes(out) if out is not None else 0, "exit": proc.returncode}
    print(f"rehearsal: {name}: {json.dumps(res)}", file=sys.stderr, flush=True)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-1:]
        raise SystemExit(f"rehearsal: stage {name} failed (exit {proc.returncode}): "
                         f"{tail[0] if tail else ''}; see {log}")
    res["stdout"] = stdout.decode(errors="replace")
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--like", type=Path, default=DEFAULT_LIKE,
                    help="real AVSBench metadata CSV to mimic (s4_meta_data.csv or ms3_meta_data.csv); "
                         f"default {DEFAULT_LIKE}")
    ap.add_argument("--clips", type=int, default=None, help="keep only N rows of the CSV (quick runs)")
    ap.add_argument("--workers", type=int, default=2, help="processes for demo and build (default 2)")
    ap.add_argument("--clips-per-shard", type=int, default=64, help="build --clips-per-shard (default 64)")
    ap.add_argument("--steps", type=int, default=3, help="training steps of batch 1 clip (default 3)")
    ap.add_argument("--train-preset", default=None,
                    help="avstrain preset for the training stage (default: s4-resnet50-croplosses, "
                         "ms3-resnet50-avsbench for MS3); 'demo' is the tiny CPU model")
    ap.add_argument("--work", type=Path, default=None,
                    help="folder for the data (default: a temporary folder, removed at the end)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    args = ap.parse_args(argv)

    if not args.like.is_file():
        raise SystemExit(f"rehearsal: {args.like} not found; pass --like PATH/s4_meta_data.csv")
    setting = "ms3" if args.like.name.startswith("ms3") else "s4"
    work = args.work or Path(tempfile.mkdtemp(prefix="avs-rehearsal-"))
    if work.exists() and any(work.iterdir()):
        raise SystemExit(f"rehearsal: {work} is not empty; pass an empty or new --work folder")
    work.mkdir(parents=True, exist_ok=True)
    log = work / "rehearsal.log"
    like = args.like
    if args.clips:
        like = work / "like" / args.like.name
        like.parent.mkdir()
        subsample_csv(args.like, like, args.clips)
    n_clips = len(like.read_text(encoding="utf-8").splitlines()) - 1
    env = dict(os.environ, AVS_NO_PROGRESS="1", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    root, table, shards, run = work / "root", work / "boxes.csv", work / "shards", work / "run"
    report = work / "validate.json"
    py = [sys.executable]
    preset = args.train_preset or PRESETS[setting]
    stages: dict[str, dict] = {}
    t0 = time.perf_counter()
    try:
        stages["demo"] = run_stage("demo", py + ["-m", "avsprep", "demo", str(root), "--like", str(like),
                                                 "--workers", str(args.workers), "--quiet"], env, root, log)
        stages["import"] = run_stage("import", py + ["-m", "avsprep", "import", "--root", str(root),
                                                     "-o", str(table), "--quiet"], env, table, log)
        stages["validate"] = run_stage("validate", py + ["-m", "avsprep", "validate", str(table), "--root",
                                                         str(root), "--json", "--quiet"], env, None, log)
        report.write_text(stages["validate"]["stdout"])
        stages["validate"]["bytes"] = report.stat().st_size
        stages["build"] = run_stage("build", py + ["-m", "avsprep", "build", str(table), "--root", str(root),
                                                   "-o", str(shards), "--workers", str(args.workers),
                                                   "--clips-per-shard", str(args.clips_per_shard), "--quiet"],
                                    env, shards, log)
        stages["verify"] = run_stage("verify", py + ["-m", "avsprep", "verify", str(shards), "--quiet"],
                                     env, None, log)
        stages["open"] = run_stage("open", py + ["-c", OPEN_CODE, str(shards)], env, None, log)
        opened = json.loads(stages["open"]["stdout"].strip().splitlines()[-1])
        stages["open"].update(opened)
        stages["train"] = run_stage("train", py + [
            "-m", "avstrain", "train", str(shards), "-o", str(run), "--preset", preset, "--epochs", "1",
            "--batch-size", "1", "--device", "cpu", "--set", f"max_steps_per_epoch={args.steps}",
            "--set", "max_eval_clips=1", "--set", "workers=0", "--quiet"], env, run, log)
    finally:
        total = time.perf_counter() - t0
        for st in stages.values():
            st.pop("stdout", None)
        if not args.keep and args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    v = json.loads(report.read_text()) if report.exists() else {}
    doc = {
        "metric": "open_train_split", "unit": "s",
        "ours": round(stages["open"]["open_s"], 3), "baseline": round(stages["open"]["open_full_hash_s"], 3),
        "ratio": round(stages["open"]["open_full_hash_s"] / max(stages["open"]["open_s"], 1e-9), 1),
        "like": args.like.name, "setting": setting, "clips": n_clips,
        "train_preset": preset, "train_steps": args.steps, "workers": args.workers, "cores": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2), "total_wall_s": round(total, 1),
        "validate_errors": sum(f.get("severity") == "error" for f in v.get("findings", [])) if v else None,
        "stages": stages,
    }
    print(json.dumps(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
