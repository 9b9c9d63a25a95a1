"""``avstrain report``: a static HTML report of one checkpoint on one split.

One ``index.html`` with its PNGs, CSV and JSON beside it, no scripts, fonts or network:
it opens offline in any browser. It holds the run (closest preset, resolved config,
weight files and their hashes, warnings, curves from metrics.csv), the metrics (official
per-batch and per-dataset, per class, audio ablations), the per-clip listening gap
(``avstrain.per_clip``) and three galleries (worst IoU, smallest listening gap, best IoU):
per clip its 5 frames with the prediction painted over and the GT outlined, the same with
shuffled audio, and the clip's log-mel. ``render_html`` is a pure function of the
collected facts; ``build_report`` does the I/O.
"""

from __future__ import annotations

import csv
import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

GALLERIES = (
    ("worst", "Worst clips by IoU (real audio)", "iou", False),
    ("no_listen", "Smallest listening gap: segments the same thing whatever it hears", "gap", False),
    ("best", "Best clips by IoU (real audio)", "iou", True),
)
TILE = 104  # gallery frame side in px
LOGMEL_HEIGHT = 56  # gallery log-mel height in px (5 s = 420 px wide)
NO_LISTEN_GAP = 0.05  # gap below this: the clip's prediction barely depends on the sound


@dataclass
class GalleryRow:
    """One clip of a gallery: its per-clip row and the file names of its three strips."""

    row: dict
    real_png: str
    shuffle_png: str
    logmel_png: str


@dataclass
class ReportFacts:
    """Everything ``index.html`` shows (all file names relative to the report folder)."""

    title: str
    run: dict                      # checkpoint, sha256, epoch, closest preset, differences, weights, warnings
    config: dict
    metrics: dict                  # the ``avstrain evaluate`` document (ablations, per_class, clips rows)
    check: dict                    # avstrain.per_clip.summary of the rows
    galleries: dict = field(default_factory=dict)  # key -> list[GalleryRow]
    history: list = field(default_factory=list)
    files: dict = field(default_factory=dict)       # curves, gaps, per_clip_csv, results_json, metrics_csv


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
    from avsprep.common.atomic import file_sha256

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


# ----------------------------------------------------------------------------- HTML (pure)

def _fmt(v) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4f}"
    if isinstance(v, (list, tuple)):
        return ", ".join(_fmt(x) for x in v)
    return "" if v is None else str(v)


def _table(header: Optional[list[str]], rows: list[list], cls: str = "") -> str:
    e = html.escape
    if header is None:  # a key/value table: first column as row headers
        body = "".join(f"<tr><th>{e(_fmt(r[0]))}</th>" + "".join(f"<td>{e(_fmt(c))}</td>" for c in r[1:]) + "</tr>"
                       for r in rows)
        return f'<table class="{cls}"><tbody>{body}</tbody></table>'
    head = "".join(f"<th>{e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{e(_fmt(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:1.5em auto;max-width:1700px;
padding:0 1em;color:#222}
h1{font-size:1.5em}h2{margin-top:1.6em;border-bottom:1px solid #ccc}table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #ccc;padding:2px 8px;text-align:left;font-size:.9em;vertical-align:top}
th{background:#f0f0f0}.headline{background:#fff8e0;border:1px solid #e0c060;padding:.6em 1em}
.warn{color:#a04000}.gallery td{padding:3px}.gallery td:first-child{white-space:nowrap;font-size:.8em}.gallery img{display:block}code{font-size:.9em}
.legend span{display:inline-block;width:1em;height:1em;vertical-align:middle;margin:0 .3em}
"""


def render_html(f: ReportFacts) -> str:
    """The report page: a pure function of the facts (every figure also as a table)."""
    e = html.escape
    m, run, check = f.metrics, f.run, f.check
    shuf = m.get("ablations", {}).get("shuffle", {})
    parts = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{e(f.title)}</title>"
             f"<style>{CSS}</style></head><body>", f"<h1>{e(f.title)}</h1>"]
    # headline: the point of the method
    n_deaf = sum(1 for r in m["clips"] if r["gap"] < NO_LISTEN_GAP)
    n_same = sum(1 for r in m["clips"] if r["gap"] < NO_LISTEN_GAP and r.get("shuffle_audio_class") == r["class"])
    parts.append(
        '<p class="headline" id="headline">'
        f"<b>Listening gap</b> (IoU with real audio minus IoU with another clip's audio), mean over "
        f"{check['clips']} {e(m['split'])} clips: <b>{_fmt(check['mean_gap'])}</b> = miou_dataset "
        f"{_fmt(m['miou_dataset'])} &minus; shuffled-audio miou_dataset {_fmt(shuf.get('miou_dataset'))}. "
        f"{n_deaf} of {check['clips']} clips have a gap below {NO_LISTEN_GAP}: their prediction barely changes "
        f"when the audio is swapped. {n_same} of them got the audio of a clip of their own class (the same kind "
        f"of sound, so no change is expected); the other {n_deaf - n_same} show a model that did not listen. "
        f"Per-clip table: <a href=\"{e(f.files['per_clip_csv'])}\">"
        f"{e(f.files['per_clip_csv'])}</a>; all numbers: <a href=\"{e(f.files['results_json'])}\">"
        f"{e(f.files['results_json'])}</a>.</p>")
    # the run
    parts.append('<h2 id="run">The run</h2>')
    diff = run["preset_differences"]
    preset_txt = (f"{run['preset']} (identical)" if run["preset"] and not diff else
                  f"{run['preset']}, differing in " + ", ".join(f"{k}={_fmt(a)} (preset {_fmt(b)})"
                                                             for k, (a, b) in diff.items()) if run["preset"] else "none")
    parts.append(_table(None, [["checkpoint", run["checkpoint"]], ["checkpoint sha256", run["sha256"]],
                                   ["epoch of this checkpoint", run["epoch"]], ["best val mIoU", run["best_miou"]],
                                   ["closest preset", preset_txt], ["shards", run["shards"]],
                                   ["evaluated on", f"{m['split']} split, device {run['device']}"]], "run"))
    parts.append("<h3>Weight files</h3>" + _table(["config key", "path", "sha256"],
                                                   [[w["key"], w["path"], w["sha256"]] for w in run["weights"]]))
    if run["warnings"]:
        parts.append("<h3>Warnings</h3><ul>" + "".join(f'<li class="warn">{e(w)}</li>' for w in run["warnings"])
                     + "</ul>")
    if f.files.get("curves"):
        parts.append(f'<h3>Curves</h3><img src="{e(f.files["curves"])}" alt="training curves" width="800">')
    if f.history:
        keys = [k for k in f.history[-1] if k != "time_s"] + (["time_s"] if "time_s" in f.history[-1] else [])
        src = (f' (<a href="{e(f.files["metrics_csv"])}">{e(f.files["metrics_csv"])}</a>)'
               if f.files.get("metrics_csv") else " (from the checkpoint)")
        parts.append(f"<p>Per epoch{src}:</p>" + _table(keys, [[r.get(k) for k in keys] for r in f.history]))
    parts.append("<details><summary>Resolved config</summary>"
                 + _table(["key", "value"], [[k, json.dumps(v)] for k, v in f.config.items()]) + "</details>")
    # the metrics
    parts.append('<h2 id="metrics">Metrics</h2>')
    bv = m["protocol"]["batch_videos"]
    rows = [["real audio", m["miou"], m["fscore"], m["miou_dataset"], m["fscore_dataset"]]]
    for name, r in m.get("ablations", {}).items():
        rows.append([f"audio {name}", r["miou"], r["fscore"], r["miou_dataset"], r["fscore_dataset"]])
    parts.append(f"<p>{m['n_clips']} clips, {m['frames']} frames with a GT mask. Official: mean over batches of "
                 f"{bv} videos (AVSBench test.py); dataset: all frames pooled. shuffle = each clip gets another "
                 "clip's audio (a fixed derangement); zero = zeroed audio features.</p>")
    parts.append(_table(["audio", "mIoU (official)", "F (official)", "mIoU (dataset)", "F (dataset)"], rows,
                        "metrics"))
    if m.get("per_class"):
        parts.append("<h3>Per class (dataset pooling)</h3>" + _table(
            ["class", "clips", "mIoU", "F"],
            [[c, r["clips"], r["miou"], r["fscore"]] for c, r in m["per_class"].items()], "per-class"))
    # listening gap
    parts.append('<h2 id="gap">Per-clip listening gap</h2>')
    if f.files.get("gaps"):
        parts.append(f'<img src="{e(f.files["gaps"])}" alt="histogram of per-clip listening gaps" width="640">')
    parts.append(_table(["check", "value"], [
        ["clips", check["clips"]], ["mean per-clip IoU (real audio)", check["mean_iou"]],
        ["frame-weighted per-clip IoU (= miou_dataset)", check["frame_weighted_iou"]],
        ["miou_dataset", m["miou_dataset"]],
        ["mean per-clip IoU (shuffled audio)", check["mean_iou_shuffle"]],
        ["shuffled miou_dataset", shuf.get("miou_dataset")], ["mean gap", check["mean_gap"]],
        [f"clips with gap < {NO_LISTEN_GAP}", n_deaf]], "check"))
    # galleries
    parts.append('<h2 id="galleries">Galleries</h2><p class="legend">Each row: the 5 frames with the prediction '
                 'painted in <span style="background:#00e5ff"></span>cyan stripes and the GT outlined '
                 '<span style="background:#fff;border:2px solid #000"></span>white on black; the prediction with shuffled audio (the audio '
                 'of the clip named); the clip\'s log-mel (time left to right, 5 s).</p>')
    for key, title, _, _ in GALLERIES:
        gal = f.galleries.get(key, [])
        parts.append(f'<h3 id="gallery-{key}">{e(title)}</h3><table class="gallery"><thead><tr><th>clip</th>'
                     "<th>real audio</th><th>shuffled audio</th><th>log-mel</th></tr></thead><tbody>")
        for g in gal:
            r = g.row
            info = (f"<b>{e(r['video'])}</b><br>{e(r['class'])}<br>IoU {_fmt(r['iou'])}<br>"
                    f"IoU shuffled {_fmt(r['iou_shuffle'])}<br>gap {_fmt(r['gap'])}<br>"
                    f"audio of {e(r.get('shuffle_audio_from', ''))}<br>({e(r.get('shuffle_audio_class', ''))})")
            parts.append(f"<tr><td>{info}</td><td><img src=\"{e(g.real_png)}\" alt=\"{e(r['video'])} real\"></td>"
                         f"<td><img src=\"{e(g.shuffle_png)}\" alt=\"{e(r['video'])} shuffled\"></td>"
                         f"<td><img src=\"{e(g.logmel_png)}\" alt=\"{e(r['video'])} log-mel\"></td></tr>")
        parts.append("</tbody></table>")
    parts.append("<p>Made by <code>avstrain report</code>; opens offline (no scripts, no network).</p></body></html>")
    return "\n".join(parts)


# ----------------------------------------------------------------------------- figures

def plot_gaps(rows: list[dict]) -> bytes:
    """Histogram of the per-clip listening gaps with the mean marked (PNG bytes)."""
    import io

    import matplotlib

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


def clip_strip(frames: np.ndarray, pred: np.ndarray, gt: np.ndarray, valid: np.ndarray, side: int = TILE) -> np.ndarray:
    """A clip's 5 frames side by side, prediction painted, GT outlined where it exists."""
    from avstrain.overlays import hstack, overlay, resize

    return hstack([resize(overlay(frames[t], pred[t], gt[t] if valid[t] else None), side) for t in range(len(frames))])


def predict_masks(model, cfg, dev, ds, indices: list[int], batch_videos: int = 4) -> dict[int, np.ndarray]:
    """Binary masks ``[5,S,S]`` (sigmoid > 0.5) of the clips ``indices`` of ``ds``."""
    import torch

    from avstrain.data import collate, to_device

    out = {}
    model.eval()
    with torch.no_grad():
        for s in range(0, len(indices), batch_videos):
            idx = indices[s:s + batch_videos]
            batch = to_device(collate([ds[i] for i in idx]), dev, False, cfg.image_size)
            with torch.autocast(device_type=dev.type, dtype=torch.bfloat16,
                                enabled=dev.type == "cuda" and bool(getattr(cfg, "eval_amp", False))):
                logits = model(batch, crops=False)["logits"].float().squeeze(1)  # [B*5,S,S]
            pred = (logits > 0).cpu().numpy().reshape(len(idx), -1, *logits.shape[1:])
            for k, i in enumerate(idx):
                out[i] = pred[k]
    return out


# ----------------------------------------------------------------------------- the command

def build_report(checkpoint, shards, out_dir, split: str = "test", per_gallery: int = 6, device: str = "auto",
                 batch_videos: int = 4, workers: int = 0, seed: int = 0, quiet: bool = True) -> dict:
    """Evaluate CHECKPOINT on SHARDS/SPLIT (real, shuffled and zeroed audio) and write the report
    folder. Returns ``{"index", "per_clip_csv", "results_json", "summary"}``."""
    from avsprep.common.atomic import file_sha256, write_bytes, write_text
    from avstrain.checkpoints import load_checkpoint, system_from_checkpoint
    from avstrain.config import load_preset, preset_names
    from avstrain.data import ShardDataset
    from avstrain.devices import pick_device
    from avstrain.evaluation import derangement, evaluate_split
    from avstrain.overlays import logmel_image, png_bytes
    from avstrain.per_clip import rows_to_csv, select, summary
    from avstrain.rundir import plot_curves

    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    ckpt = load_checkpoint(checkpoint)
    model, cfg = system_from_checkpoint(ckpt, checkpoint)
    dev = pick_device(device)
    model.to(dev)
    if cfg.setting == "avss":
        from avsprep.common.errors import DataError

        raise DataError(f"avstrain report covers the binary S4/MS3 tasks; {checkpoint} is an AVSS semantic model: "
                        "use avstrain evaluate --per-class and avstrain predict (palette PNGs) for it")
    ds = ShardDataset(shards, split, task=cfg.setting).in_csv_order()  # the same batches as avstrain evaluate
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
