"""``avstrain report``: a static HTML report of one checkpoint on one split.

One ``index.html`` with its PNGs, CSV and JSON beside it, no scripts, fonts or network:
it opens offline in any browser. It holds the run (closest preset, resolved config,
weight files and their hashes, warnings, curves from metrics.csv), the metrics (official
per-batch and per-dataset, per class, audio ablations), the per-clip listening gap
(``avstrain.per_clip``) and three galleries (worst IoU, smallest listening gap, best IoU):
per clip its 5 frames with the prediction painted over and the GT outlined, the same with
shuffled audio, and the clip's log-mel. ``avstrain.report.html.render_html`` is a pure
function of the collected facts; ``build_report`` does the I/O.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Optional

import numpy as np

from avsprep.common.atomic import file_sha256, write_bytes, write_text
from avsprep.common.errors import DataError
from avstrain.checkpoints import load_checkpoint, system_from_checkpoint
from avstrain.config import load_preset, preset_names
from avstrain.data import ShardDataset
from avstrain.devices import pick_device
from avstrain.evaluation import check_shuffle, derangement, evaluate_split
from avstrain.overlays import clip_strip, logmel_image, png_bytes
from avstrain.per_clip import rows_to_csv, select, summary
from avstrain.prediction import predict_masks
from avstrain.report.html import GALLERIES, LOGMEL_HEIGHT, NO_LISTEN_GAP, GalleryRow, ReportFacts, render_html
from avstrain.rundir import plot_curves
from avstrain.tasks import TASKS

# ----------------------------------------------------------------------------- run facts (pure)

def closest_preset(cfg: dict, presets: dict[str, dict]) -> tuple[Optional[str], dict]:
    """The preset whose resolved config differs from ``cfg`` in the fewest keys, and those
    differences ``{key: (run value, preset value)}`` (``device``/``workers`` ignored)."""
    ignore = {"device", "workers"}
    best, best_diff = None, None
    for name, p in sorted(presets.items()):
        diff = {k: (cfg.get(k), p.get(k)) for k in sorted(set(cfg) | set(p))
                if k not in ignore and cfg.get(k) != p.get(k)}
        if best_diff is None or len(diff) < len(best_diff):
            best, best_diff = name, diff
    return best, best_diff or {}


def run_warnings(cfg: dict, device: str) -> list[str]:
    """What a reader must know before trusting the numbers."""
    out = []
    if not cfg.get("backbone_weights"):
        out.append(f"backbone {cfg.get('backbone')} trained from random init (no backbone_weights)")
    if cfg.get("crop_head") and not cfg.get("crop_backbone_weights"):
        out.append(f"crop backbone {cfg.get('crop_backbone')} trained from random init (no crop_backbone_weights)")
    if cfg.get("audio_encoder") == "tiny":
        out.append("audio encoder: the tiny trainable one, not VGGish")
    bf16_eval = device == "cuda" and cfg.get("eval_amp")
    if cfg.get("amp"):
        out.append("amp=true: training used bf16 autocast if it ran on CUDA")
    out.append(f"this report evaluated on {device} in " + ("bf16 autocast (eval_amp=true)" if bf16_eval else "fp32"))
    return out


def weight_files(cfg: dict) -> list[dict]:
    """The weight files the config names, with their sha256 (or why there is none)."""
    out = []
    for key in ("backbone_weights", "crop_backbone_weights", "vggish_weights"):
        path = cfg.get(key)
        if not path:
            out.append({"key": key, "path": None, "sha256": "none (random init or not used)"})
        elif Path(path).is_file():
            out.append({"key": key, "path": str(path), "sha256": file_sha256(path)})
        else:
            out.append({"key": key, "path": str(path), "sha256": "file not found here (weights are in the checkpoint)"})
    return out


def read_history(checkpoint: Path, ckpt_history: list) -> tuple[list[dict], Optional[Path]]:
    """Rows of RUN/metrics.csv beside the checkpoint (floats parsed), else the checkpoint's history."""
    path = checkpoint.parent / "metrics.csv"
    if not path.is_file():
        return list(ckpt_history), None
    rows = []
    with open(path, newline="", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            row = {}
            for k, v in r.items():
                try:
                    row[k] = int(v) if k == "epoch" else float(v)
                except (TypeError, ValueError):
                    row[k] = float("nan") if v in ("", None) else v
            rows.append(row)
    return rows, path


# ----------------------------------------------------------------------------- figures

def plot_gaps(rows: list[dict]) -> bytes:
    """Histogram of the per-clip listening gaps with the mean marked (PNG bytes)."""
    import matplotlib  # lazy, as rundir.plot_curves: importing avstrain must not pick a matplotlib backend

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gaps = [r["gap"] for r in rows]
    fig, ax = plt.subplots(figsize=(8, 3))
    ax.hist(gaps, bins=np.linspace(-1, 1, 41), color="C0")
    ax.axvline(float(np.mean(gaps)), color="C3", label=f"mean {np.mean(gaps):.3f}")
    ax.axvline(NO_LISTEN_GAP, color="0.4", ls="--", label=f"{NO_LISTEN_GAP} (did not listen below)")
    ax.set_xlabel("IoU(real audio) - IoU(shuffled audio), per clip")
    ax.set_ylabel("clips")
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()


# ----------------------------------------------------------------------------- the command

def build_report(checkpoint, shards, out_dir, split: str = "test", per_gallery: int = 6, device: str = "auto",
                 batch_videos: int = 4, workers: int = 0, seed: int = 0, quiet: bool = True) -> dict:
    """Evaluate CHECKPOINT on SHARDS/SPLIT (real, shuffled and zeroed audio) and write the report
    folder. Returns ``{"index", "per_clip_csv", "results_json", "summary"}``."""
    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    ckpt = load_checkpoint(checkpoint)
    model, cfg = system_from_checkpoint(ckpt, checkpoint)
    dev = pick_device(device)
    model.to(dev)
    if not TASKS[cfg.setting].per_clip:  # the report is built on the per-clip listening gap
        raise DataError(f"avstrain report covers the binary S4/MS3 tasks; {checkpoint} is an "
                        f"{TASKS[cfg.setting].title} model: use avstrain evaluate --per-class and avstrain "
                        "predict (palette PNGs) for it")
    ds = ShardDataset(shards, split, task=cfg.setting).in_csv_order()  # the same batches as avstrain evaluate
    check_shuffle(ds, shards)  # the report is built on the shuffled-audio gap
    doc = evaluate_split(model, cfg, dev, ds, ablations=("none", "shuffle", "zero"), per_class=True,
                         batch_videos=batch_videos, workers=workers, quiet=quiet, seed=seed, per_clip=True)
    doc["checkpoint"] = str(checkpoint)
    if ckpt.get("warnings"):
        doc["warnings"] = list(ckpt["warnings"])
    rows = doc["clips"]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "img").mkdir(exist_ok=True)
    files = {"per_clip_csv": "per_clip.csv", "results_json": "results.json"}
    write_text(out_dir / files["per_clip_csv"], rows_to_csv(rows))
    write_text(out_dir / files["results_json"], json.dumps(doc, indent=2) + "\n")

    # the run
    cfg_dict = cfg.to_dict()
    presets = {n: load_preset(n).to_dict() for n in preset_names()}
    preset, diff = closest_preset(cfg_dict, presets)
    run = {"checkpoint": str(checkpoint), "sha256": file_sha256(checkpoint), "epoch": ckpt.get("epoch"),
           "best_miou": ckpt.get("best_miou"), "preset": preset, "preset_differences": diff,
           "shards": str(shards), "device": dev.type, "weights": weight_files(cfg_dict),
           "warnings": list(ckpt.get("warnings") or []) + run_warnings(cfg_dict, dev.type)}
    history, metrics_csv = read_history(checkpoint, ckpt.get("history", []))
    if metrics_csv is not None:
        write_bytes(out_dir / "metrics.csv", metrics_csv.read_bytes())
        files["metrics_csv"] = "metrics.csv"
    if history:
        plot_curves(out_dir / "curves.png", history)
        files["curves"] = "curves.png"
    if rows:
        write_bytes(out_dir / "gaps.png", plot_gaps(rows))
        files["gaps"] = "gaps.png"

    # galleries: predictions of the chosen clips with real and with the same shuffled audio
    index_of = {n: i for i, n in enumerate(ds.names)}
    chosen = {key: select(rows, col, per_gallery, largest) for key, _, col, largest in GALLERIES}
    wanted = sorted({index_of[r["video"]] for g in chosen.values() for r in g})
    audio_from = derangement(len(ds), seed)
    real = predict_masks(model, cfg, dev, ds, wanted, batch_videos)
    shuffled = predict_masks(model, cfg, dev, ds.with_audio_from(audio_from), wanted, batch_videos)
    strips = {}
    for i in wanted:
        item = ds[i]
        frames, gt, valid = item["frames"].numpy(), item["masks"].numpy(), item["mask_valid"].numpy()
        names = [f"img/clip{i:05d}_{kind}.png" for kind in ("real", "shuffle", "logmel")]
        write_bytes(out_dir / names[0], png_bytes(clip_strip(frames, real[i], gt, valid)))
        write_bytes(out_dir / names[1], png_bytes(clip_strip(frames, shuffled[i], gt, valid)))
        write_bytes(out_dir / names[2], png_bytes(logmel_image(item["audio_logmel"].numpy(), height=LOGMEL_HEIGHT)))
        strips[i] = names
    galleries = {key: [GalleryRow(r, *strips[index_of[r["video"]]]) for r in g] for key, g in chosen.items()}
    facts = ReportFacts(title=f"avstrain report: {checkpoint.parent.name}/{checkpoint.name} on {split}",
                        run=run, config=cfg_dict, metrics=doc, check=summary(rows), galleries=galleries,
                        history=history, files=files)
    write_text(out_dir / "index.html", render_html(facts))
    return {"index": str(out_dir / "index.html"), "per_clip_csv": str(out_dir / files["per_clip_csv"]),
            "results_json": str(out_dir / files["results_json"]), "summary": facts.check,
            "miou_dataset": doc["miou_dataset"], "shuffle_miou_dataset": doc["ablations"]["shuffle"]["miou_dataset"]}
