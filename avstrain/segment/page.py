"""``OUT/index.html`` of ``avstrain segment``: one static page with every output video (no
scripts, no network: the videos are files beside it). Pure: documents in, HTML text out."""

from __future__ import annotations

import html
from urllib.parse import quote

STYLE = """body{font-family:sans-serif;margin:1.5em;max-width:1400px;color:#222}
video{max-width:100%;background:#000;display:block;margin:.3em 0}
section{margin-bottom:2em}
table{border-collapse:collapse;font-size:90%}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}
.swatch{display:inline-block;width:1em;height:1em;vertical-align:middle;margin-right:.3em}
.note{color:#555}"""


def _video(src: str, caption: str) -> str:
    return (f'<figure><video controls preload="auto" src="{html.escape(quote(src))}"></video>'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _legend(doc: dict) -> str:
    items = doc.get("legend") or []
    if not items:
        return ""
    spans = "".join(f'<span><span class="swatch" style="background:rgb{tuple(x["rgb"])}"></span>'
                    f'{html.escape(x["name"])}</span> ' for x in items)
    return f"<p>Classes shown: {spans}</p>"


def _seconds_table(doc: dict) -> str:
    rows = doc["seconds"]
    ablated = doc.get("audio_ablation")
    head = "<tr><th>second</th><th>mask area</th><th>confidence</th>"
    if ablated:
        head += f"<th>IoU real vs {html.escape(ablated)}</th>"
    head += "</tr>"
    body = []
    for r in rows:
        cells = f"<td>{r['second']}</td><td>{r['area']:.3f}</td><td>{r['confidence']:.3f}</td>"
        if ablated:
            cells += f"<td>{r['iou_ablated']:.3f}</td>"
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead>{head}</thead><tbody>{''.join(body)}</tbody></table>"


def section(doc: dict) -> str:
    """One video's part of the page."""
    name = doc["video"]
    out = doc["outputs"]
    parts = [f'<section id="{html.escape(name)}"><h2>{html.escape(name)}</h2>',
             f'<p class="note">{doc["frames"]} frames at {doc["fps"]:.3f} fps, {doc["duration_s"]:.2f} s; '
             f'model run on {doc["windows"]} window(s) of 5 s, {doc["passes_per_window"]} passes each '
             f'(--fps {doc["model_fps"]}); audio: {html.escape(doc["audio"])}</p>',
             _video(out["video"], "mask over the video, with its sound")]
    if out.get("side_by_side"):
        parts.append(_video(out["side_by_side"], "left: with the sound | right: sound zeroed"))
    parts += [_legend(doc), _seconds_table(doc), "</section>"]
    return "\n".join(p for p in parts if p)


def render_page(docs: list[dict], checkpoint: str) -> str:
    """The whole page for the JSON documents of the videos segmented."""
    body = "\n".join(section(d) for d in docs)
    return (f"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>avstrain segment</title>"
            f"<style>{STYLE}</style></head><body>\n<h1>avstrain segment</h1>\n"
            f'<p class="note">checkpoint {html.escape(checkpoint)}; per second: mask area (fraction of the '
            f"frame) and mean confidence at the official frame.</p>\n{body}\n</body></html>\n")
