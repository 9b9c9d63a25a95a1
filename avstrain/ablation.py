"""``avstrain ablate``: every configuration on every seed, evaluated on the test split with the
audio ablations, summarised with statistics (issue 18, Build 4).

Layout: ``DIR/NAME/seedS/`` is an ordinary run (config.json, best.pt, ...) plus ``eval.json``
(the ``avstrain evaluate --per-clip`` document with shuffle and zero audio, and the distractor
rate when the demo's distractor masks are given). A run with ``eval.json`` is finished and
skipped; one with ``last.pt`` is resumed. Under torchrun every rank trains (DDP, as ``avstrain
train``) and rank 0 alone evaluates and writes. ``DIR/ablation.json`` and ``DIR/ablation.md`` hold the
summary: per configuration the mean and 95% CI (Student t over seeds) of test mIoU, F, the
listening gap (mIoU - mIoU with shuffled audio) and the distractor rate; per configuration vs the
baseline, the paired difference of per-clip IoU with a bootstrap CI over seeds and clips.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from scipy import stats

from avsprep.common.atomic import write_text
from avsprep.common.errors import AvsError
from avsprep.common.images import open_image
from avstrain import dist, engine
from avstrain.checkpoints import load_checkpoint, system_from_checkpoint
from avstrain.config import ConfigError, TrainConfig, resolve_config
from avstrain.data import ShardDataset, make_eval_loader, to_device
from avstrain.devices import eval_forward, pick_device
from avstrain.dist import env_info
from avstrain.evaluation import run_evaluate

log = logging.getLogger("avstrain")

METRICS = ("miou", "fscore", "gap", "distractor_rate", "distractor_rate_zero")
# keys a rerun may legitimately differ in (where and how fast it ran, not what it trains)
NOT_COMPARED = ("device", "workers")


@dataclass(frozen=True)
class ConfigSpec:
    name: str
    preset: str
    overrides: tuple  # ((key, value-string), ...) in the order given


def parse_config(spec: str) -> ConfigSpec:
    """``NAME=PRESET[,KEY=VALUE...]`` -> ``ConfigSpec`` (``ConfigError`` naming the problem)."""
    head, *rest = [p.strip() for p in spec.split(",")]
    if "=" not in head or not head.split("=", 1)[0] or not head.split("=", 1)[1]:
        raise ConfigError(f"--config {spec!r}: expected NAME=PRESET[,KEY=VALUE...]")
    name, preset = head.split("=", 1)
    pairs = []
    for item in rest:
        if "=" not in item:
            raise ConfigError(f"--config {spec!r}: {item!r} is not KEY=VALUE")
        k, v = item.split("=", 1)
        pairs.append((k.strip(), v.strip()))
    return ConfigSpec(name.strip(), preset.strip(), tuple(pairs))


def wanted_config(spec: ConfigSpec, seed: int, common: dict) -> TrainConfig:
    """The config asked for: preset, then the common ``--set`` keys, then the spec's, then the seed."""
    return resolve_config(spec.preset, None, {**common, **dict(spec.overrides), "seed": seed})


def config_mismatches(saved: dict, wanted: TrainConfig) -> list[str]:
    """``"key: asked -> run has"`` for every key the run's config.json differs in. Pure."""
    out = []
    for key, value in wanted.to_dict().items():
        if key in NOT_COMPARED:
            continue
        if key not in saved or saved[key] != value:
            out.append(f"{key}: asked {value!r}, run has {saved.get(key, '(missing)')!r}")
    return out


def mean_ci(values: list[float]) -> dict:
    """Mean and 95% CI (Student t over the values, e.g. one per seed); n=1 gives no interval."""
    v = np.asarray([x for x in values if x is not None and not math.isnan(x)], dtype=float)
    if len(v) == 0:
        return {"mean": None, "lo": None, "hi": None, "n": 0}
    mean = float(v.mean())
    if len(v) < 2:
        return {"mean": mean, "lo": None, "hi": None, "n": 1}

    half = float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    return {"mean": mean, "lo": mean - half, "hi": mean + half, "n": int(len(v))}


def paired_bootstrap(diffs: np.ndarray, reps: int = 2000, seed: int = 0) -> dict:
    """``diffs [seeds, clips]`` (config - baseline, same seed and clip): the mean difference and a
    95% percentile CI, resampling seeds and then clips with replacement (both are random)."""
    diffs = np.asarray(diffs, dtype=float)
    rng = np.random.default_rng(seed)
    s, c = diffs.shape
    si = rng.integers(0, s, (reps, s))
    ci = rng.integers(0, c, (reps, c))
    means = np.array([diffs[si[r]][:, ci[r]].mean() for r in range(reps)])
    return {"mean": float(diffs.mean()), "lo": float(np.percentile(means, 2.5)),
            "hi": float(np.percentile(means, 97.5)), "seeds": int(s), "clips": int(c)}


def run_metrics(doc: dict) -> dict:
    """The summary's per-run numbers from an eval.json."""
    return {"miou": doc["miou"], "fscore": doc["fscore"],
            "gap": doc["miou"] - doc["ablations"]["shuffle"]["miou"],
            "distractor_rate": doc.get("distractor", {}).get("rate"),
            "distractor_rate_zero": doc.get("distractor", {}).get("rate_zero")}


def summarise(evals: dict, baseline: str) -> dict:
    """``evals``: {config: {seed: eval.json doc}} -> the ablation.json document."""
    configs = {}
    for name, by_seed in evals.items():
        rows = [run_metrics(d) for d in by_seed.values()]
        configs[name] = {m: mean_ci([r[m] for r in rows]) for m in METRICS}
        configs[name]["seeds"] = sorted(by_seed)
    diffs = {}
    base = evals[baseline]
    for name, by_seed in evals.items():
        if name == baseline:
            continue
        seeds = sorted(set(by_seed) & set(base))
        table = [[a["iou"] - b["iou"] for a, b in zip(clip_rows(by_seed[s]), clip_rows(base[s]))] for s in seeds]
        diffs[name] = paired_bootstrap(np.asarray(table)) if seeds else None
    return {"baseline": baseline, "configs": configs, "vs_baseline_miou_per_clip": diffs}


def clip_rows(doc: dict) -> list[dict]:
    """Per-clip rows in video order (so two runs on the same split pair up)."""
    return sorted(doc["clips"], key=lambda r: r["video"])


def _fmt(ci: dict) -> str:
    if ci is None or ci.get("mean") is None:
        return "-"
    if ci.get("lo") is None:
        return f"{ci['mean']:.3f}"
    return f"{ci['mean']:.3f} [{ci['lo']:.3f}, {ci['hi']:.3f}]"


def format_markdown(summary: dict) -> str:
    """One table: per configuration mean [95% CI] of each metric and the paired diff vs baseline."""
    head = "| config | seeds | mIoU | F | listening gap | distractor rate | distractor rate (zero audio) | ΔmIoU vs " \
           f"{summary['baseline']} (per clip, paired bootstrap) |"
    lines = [head, "|" + " --- |" * 8]
    for name, c in summary["configs"].items():
        diff = summary["vs_baseline_miou_per_clip"].get(name)
        lines.append(f"| {name} | {len(c['seeds'])} | " + " | ".join(_fmt(c[m]) for m in METRICS)
                     + f" | {_fmt(diff) if diff else '(baseline)'} |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- running

def distractor_rate(model, cfg, ds, device, masks_dir: Path) -> dict:
    """How often the prediction lands on the demo's silent distractor: a frame counts when the
    predicted mask overlaps the distractor's visible pixels more than the sounding object's, with
    the real audio (``rate``) and with zeroed audio (``rate_zero``)."""


    model.eval()
    counts = {"rate": [0, 0], "rate_zero": [0, 0]}
    for cpu_batch in make_eval_loader(ds, 1):
        batch = to_device(cpu_batch, device, False, cfg.image_size)
        gt = batch["masks"] > 0.5  # [T, S, S]
        video = batch["video"][0]
        dmask = torch.stack([torch.from_numpy(np.asarray(open_image(masks_dir / f"{video}_{k + 1}.png", video,
                                                                    f"distractor mask {k + 1}", "L")) > 127)
                             for k in range(gt.shape[0])]).to(device)
        for key, zero in (("rate", False), ("rate_zero", True)):
            with torch.no_grad():
                pred = eval_forward(model, batch, device, cfg, zero_audio=zero)["logits"][:, 0] > 0  # [T, S, S]
            on_d = (pred & dmask).flatten(1).sum(1)
            on_gt = (pred & gt).flatten(1).sum(1)
            counts[key][0] += int((on_d > on_gt).sum())
            counts[key][1] += int(gt.shape[0])
    return {k: (a / b if b else None) for k, (a, b) in counts.items()} | {"frames": counts["rate"][1]}


def run_one(spec: ConfigSpec, seed: int, shards: Path, out: Path, common: dict,
            distractor_masks: Optional[Path], quiet: bool = True) -> dict:
    """Train (or resume, or skip) one run and evaluate it once; returns its eval.json document."""

    run = out / spec.name / f"seed{seed}"
    done = run / "eval.json"
    wanted = wanted_config(spec, seed, common)
    if done.is_file():
        log.info("skip %s seed %d: finished (%s)", spec.name, seed, done)
    else:
        resume = (run / "last.pt").is_file()
        log.info("%s %s seed %d -> %s", "resume" if resume else "train", spec.name, seed, run)
        engine.train(wanted, shards, run, resume=resume, overwrite=not resume and run.exists(), quiet=quiet)
    if not env_info().is_main:  # under torchrun the other ranks only help train; rank 0 evaluates and writes
        return None
    with dist.local():  # rank 0 alone: the metrics' gathers must not wait for the other ranks
        return _evaluate_run(spec, seed, run, shards, wanted, distractor_masks)


def _evaluate_run(spec: ConfigSpec, seed: int, run: Path, shards: Path, wanted: TrainConfig,
                  distractor_masks: Optional[Path]) -> dict:
    """Check a finished run's config, evaluate it on the test split (once: eval.json), return the document."""
    done = run / "eval.json"
    mismatch = config_mismatches(json.loads((run / "config.json").read_text()), wanted)
    if mismatch:
        raise AvsError(f"{run}: the run's resolved config is not the one asked for: " + "; ".join(mismatch))
    if done.is_file():
        return json.loads(done.read_text())
    doc = run_evaluate(run / "best.pt", shards, split="test", ablations=("shuffle", "zero"), per_clip=True,
                       device=wanted.device, quiet=True)
    if distractor_masks is not None:
        model, cfg = system_from_checkpoint(load_checkpoint(run / "best.pt"), run / "best.pt")
        dev = pick_device(wanted.device)
        ds = ShardDataset(shards, "test", task=cfg.setting).in_csv_order()
        doc["distractor"] = distractor_rate(model.to(dev), cfg, ds, dev, Path(distractor_masks))
    doc["config_name"], doc["seed"] = spec.name, seed
    write_text(done, json.dumps(doc, indent=2) + "\n")
    return doc


def run_ablation(shards: Path, out: Path, specs: list[ConfigSpec], seeds: list[int], common: dict,
                 baseline: Optional[str] = None, distractor_masks: Optional[Path] = None,
                 quiet: bool = True) -> dict:
    """Every spec on every seed (finished runs skipped), then ablation.json and ablation.md."""
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ConfigError(f"--config names must differ: {', '.join(names)}")
    baseline = baseline or names[0]
    if baseline not in names:
        raise ConfigError(f"--baseline {baseline!r} is not one of the --config names: {', '.join(names)}")
    for spec in specs:  # every config resolves before anything trains
        wanted_config(spec, seeds[0], common)
    device = pick_device(wanted_config(specs[0], seeds[0], common).device)
    with dist.session(device.type):  # one process group for every run (torchrun); each train joins it
        evals = {}
        for s in specs:
            evals[s.name] = {}
            for seed in seeds:
                evals[s.name][seed] = run_one(s, seed, shards, out, common, distractor_masks, quiet)
                dist.barrier()  # the other ranks wait while rank 0 evaluates, then train the next run together
    if not env_info().is_main:
        return {}
    summary = summarise(evals, baseline)
    summary["seeds"] = seeds
    summary["configs_asked"] = {s.name: {"preset": s.preset, **dict(s.overrides), **common} for s in specs}
    write_text(out / "ablation.json", json.dumps(summary, indent=2) + "\n")
    write_text(out / "ablation.md", format_markdown(summary))
    return summary
