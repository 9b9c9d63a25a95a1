"""Checks of the boxes of one frame: label, coordinates, size against the real frame, duplicates.

Pure functions over table rows; :mod:`avsprep.validate.coverage` calls them per annotated frame.
"""

from __future__ import annotations

import difflib
import math
import re
from collections import Counter
from typing import Iterable, Optional

from avsprep.common.findings import Finding
from avsprep.datasets.avss_classes import canonical_label
from avsprep.datasets.classes import class_of

EPS = 1e-6


def check_label(label: str, classes: list[str], category: Optional[str]) -> tuple[Optional[str], list[tuple[str, str]]]:
    """(class the label means or None, [(code, message)]) for one box label."""
    if label.strip() == "":
        return None, [("label-empty", f"label {label!r} is empty")]
    out: list[tuple[str, str]] = []
    canon = class_of(label, classes)
    if canon != label:
        if canon is None:
            near = difflib.get_close_matches(label.strip(), classes, n=1, cutoff=0.6)
            hint = f"; did you mean {near[0]!r}?" if near else f"; use one of predefined_classes ({len(classes)})"
            return None, [("label-unknown", f"label {label!r} is not a class{hint}")]
        if re.sub(r"\s+", "", label) == re.sub(r"\s+", "", canon):
            out.append(("label-whitespace", f"label {label!r} read as {canon!r} (stray spaces/TABs)"))
        else:
            out.append(("label-case-drift", f"label {label!r} read as {canon!r}"))
    if category is not None and canon != category:
        out.append(("label-category-mismatch",
                    f"label {canon!r} but the clip's category is {category!r}; box the sounding object"))
    return canon, out


def check_box_labels(clip: str, frame: int, labels: Iterable[str], allowed: set[str], box_classes: list[str],
                     xml: str) -> list[Finding]:
    """AVSS: each label that names a class (typos mapped) must be one of ``allowed``, the clip's a_obj
    classes (pure)."""
    out = []
    for label in labels:
        canon = canonical_label(label)
        if canon in box_classes and canon not in allowed:
            out.append(Finding("label-not-in-a-obj", "error",
                               f"box {label!r} but a_obj lists {', '.join(sorted(allowed))}; box a sounding object "
                               "or fix metadata.csv", xml, clip, frame))
    return out


def check_frame(clip: str, k: int, boxes: list, real: Optional[tuple[int, int]], classes: list[str],
                category: Optional[str], size_policy: str, findings: list, labels: Counter) -> None:
    """Label, coordinate, size and duplicate checks for the table rows ``boxes`` of frame ``k`` of clip
    ``clip``: labels against ``classes`` (and ``category``, when every box must name it), boxes
    against the real frame size ``real`` (None: unknown). Appends to ``findings``, counts ``labels``."""
    xml = boxes[0].xml
    sx = sy = 1.0
    reject = False
    xw, xh = boxes[0].xml_width, boxes[0].xml_height
    if real is not None and math.isfinite(xw) and math.isfinite(xh) and xw > 0 and xh > 0 \
            and (int(xw), int(xh)) != tuple(real):
        if size_policy == "rescale":
            sx, sy = real[0] / xw, real[1] / xh
            findings.append(Finding.of("size-mismatch", f"<size> {int(xw)}x{int(xh)} but the frame is "
                                     f"{real[0]}x{real[1]}; boxes rescaled by {sx:.4g}x{sy:.4g}",
                                     xml, clip, k))
        else:
            reject = True
            findings.append(Finding.of("size-mismatch", f"<size> {int(xw)}x{int(xh)} but the frame is "
                                     f"{real[0]}x{real[1]}; boxes rejected (--size-policy reject)",
                                     xml, clip, k, severity="error"))
    seen = set()
    for i, r in enumerate(boxes, start=1):
        labels[r.label] += 1
        where = f"box {i} ({r.label!r})"
        _, problems = check_label(r.label, classes, category)
        for code, msg in problems:
            findings.append(Finding.of(code, f"{where}: {msg}", r.xml, clip, k))
        coords = (r.xmin, r.ymin, r.xmax, r.ymax)
        if not all(math.isfinite(v) for v in coords):
            findings.append(Finding.of("box-not-finite", f"{where}: coordinates {list(coords)} are not finite",
                                     r.xml, clip, k))
            continue
        if r.xmin > r.xmax or r.ymin > r.ymax:
            findings.append(Finding.of("box-inverted", f"{where}: xmin,ymin,xmax,ymax = {_fmt(coords)} "
                                     "(min above max)", r.xml, clip, k))
            continue
        x0, y0, x1, y1 = r.xmin * sx, r.ymin * sy, r.xmax * sx, r.ymax * sy
        if x1 - x0 < 1 or y1 - y0 < 1:
            findings.append(Finding.of("box-degenerate", f"{where}: {_fmt((x0, y0, x1, y1))} is "
                                     f"{x1 - x0:.3g}x{y1 - y0:.3g} px (under 1 px)", r.xml, clip, k))
            continue
        key = (r.label, round(x0, 2), round(y0, 2), round(x1, 2), round(y1, 2))
        if key in seen:
            findings.append(Finding.of("box-duplicate", f"{where}: same label and box as an earlier box",
                                     r.xml, clip, k))
        seen.add(key)
        if real is None or reject:
            continue
        w, h = real
        if x0 >= -EPS and y0 >= -EPS and x1 <= w + EPS and y1 <= h + EPS:
            continue
        cx0, cy0, cx1, cy1 = max(x0, 0.0), max(y0, 0.0), min(x1, float(w)), min(y1, float(h))
        if cx1 - cx0 < 1 or cy1 - cy0 < 1:
            findings.append(Finding.of("box-outside", f"{where}: {_fmt((x0, y0, x1, y1))} lies outside the "
                                     f"{w}x{h} frame", r.xml, clip, k))
        else:
            findings.append(Finding.of("box-partly-outside", f"{where}: {_fmt((x0, y0, x1, y1))} crosses the "
                                     f"{w}x{h} frame edge; clamped to {_fmt((cx0, cy0, cx1, cy1))}",
                                     r.xml, clip, k))


def _fmt(vals) -> str:
    return ",".join(f"{v:g}" for v in vals)


def _fmt(vals) -> str:
    return ",".join(f"{v:g}" for v in vals)
