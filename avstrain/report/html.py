"""The ``avstrain report`` page: ``render_html``, a pure function of the collected facts
(``ReportFacts``), and its small HTML pieces. No scripts, fonts or network."""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field
from typing import Optional

GALLERIES = (
    ("worst", "Worst clips by IoU (real audio)", "iou", False),
    ("no_listen", "Smallest listening gap: segments the same thing whatever it hears", "gap", False),
    ("best", "Best clips by IoU (real audio)", "iou", True),
)
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
    # a partner of the clip's own class: another clip (a clip's own audio is never a partner)
    n_same = sum(1 for r in m["clips"] if r["gap"] < NO_LISTEN_GAP and r.get("shuffle_audio_class") == r["class"]
                 and r.get("shuffle_audio_from") not in (None, r["video"]))
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
