"""YOLO box files: ``{stem}.txt`` with ``class cx cy w h`` rows (normalised to 0..1), and the class file.

As labelImg writes them (``classes.txt`` beside the files, ``"%d %.6f %.6f %.6f %.6f"``
rows), as CVAT exports "YOLO 1.1" (``obj.names``, ``obj_train_data/``) and as
Roboflow / Ultralytics export YOLOv5/v8 (``data.yaml`` with ``names``). The class
file is looked for beside the label file and then in each folder above it, up to
the annotation folder. Rows are normalised edges, so they are converted to pixel
edges on the *real* frame size (``zero-based`` convention, :mod:`avsprep.annotations.convention`).

A YOLOv8-seg polygon row (``class x1 y1 x2 y2 ...``) becomes its bounding box,
reported as such. Everything here is pure except :func:`find_class_file` and
:func:`read_class_file`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import yaml

from avsprep.common.findings import Finding
from avsprep.common.jsonread import safe_load_limited

CLASS_FILES = ("classes.txt", "obj.names", "data.yaml", "data.yml")
# .txt files that are never label files (CVAT's image lists, Roboflow's notes)
NOT_LABEL_TXT = {"classes.txt", "train.txt", "valid.txt", "val.txt", "test.txt"}


@dataclass
class YoloBox:
    cls: int
    cx: float
    cy: float
    w: float
    h: float
    polygon: bool = False


@dataclass
class YoloResult:
    boxes: list[YoloBox] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    readable: bool = True


def _numeric(tok: str) -> bool:
    try:
        float(tok)
        return True
    except ValueError:
        return False


def looks_like_yolo(text: str) -> bool:
    """True when the text is empty (labelImg's file for a frame with no box) or has at least one
    row of 5 or more numbers. Image lists (CVAT's ``train.txt``, VOC ``ImageSets``), CVAT's
    ``labelmap.txt`` and READMEs have none."""
    lines = [ln.split() for ln in text.splitlines() if ln.strip()]
    return not lines or any(len(p) >= 5 and all(_numeric(t) for t in p) for p in lines)


def parse_yolo(text: str, file: str = "<text>") -> YoloResult:
    """Rows -> normalised boxes; bad rows are findings (pure). ``readable`` is False for a text
    file with no YOLO row at all (the caller decides whether that is an error)."""
    res = YoloResult()
    if not looks_like_yolo(text):
        res.readable = False
        first = next(ln.strip() for ln in text.splitlines() if ln.strip())
        res.findings.append(Finding("yolo-unreadable", "error",
                                    f"a text file with no YOLO row 'class cx cy w h' (first line {first[:50]!r}); "
                                    "not read", file))
        return res
    for n, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        try:
            cls_f = float(parts[0])
            vals = [float(v) for v in parts[1:]]
        except ValueError:
            res.findings.append(Finding("yolo-bad-row", "error",
                                        f"line {n}: {line.strip()[:60]!r} is not 'class cx cy w h' numbers; "
                                        "row skipped", file))
            continue
        if not cls_f.is_integer() or cls_f < 0:
            res.findings.append(Finding("yolo-bad-row", "error", f"line {n}: class {parts[0]!r} is not a "
                                        "class index (0, 1, ...); row skipped", file))
            continue
        if not all(math.isfinite(v) for v in vals):
            res.findings.append(Finding("yolo-bad-row", "error", f"line {n}: non-finite value; row skipped", file))
            continue
        if len(vals) == 4:
            cx, cy, w, h = vals
            res.boxes.append(YoloBox(int(cls_f), cx, cy, w, h))
        elif len(vals) >= 6 and len(vals) % 2 == 0:
            xs, ys = vals[0::2], vals[1::2]
            x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
            res.boxes.append(YoloBox(int(cls_f), (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0, polygon=True))
            res.findings.append(Finding("yolo-polygon", "warning",
                                        f"line {n}: a polygon row ({len(xs)} points, YOLOv8-seg); read as "
                                        "its bounding box", file))
        else:
            res.findings.append(Finding("yolo-bad-row", "error",
                                        f"line {n}: {len(parts)} fields; expected 5 (class cx cy w h) "
                                        "or a polygon (class x1 y1 x2 y2 ...); row skipped", file))
            continue
        b = res.boxes[-1]
        if not (0 <= b.cx <= 1 and 0 <= b.cy <= 1 and 0 < b.w <= 1 and 0 < b.h <= 1):
            res.findings.append(Finding("yolo-not-normalised", "warning",
                                        f"line {n}: values {vals[:4]} are not all in 0..1 (pixels instead "
                                        "of normalised?); read as normalised", file))
    return res


def to_pixel_edges(b: YoloBox, width: int, height: int) -> tuple[float, float, float, float]:
    """Normalised centre/size -> pixel edges on a width x height frame."""
    return ((b.cx - b.w / 2) * width, (b.cy - b.h / 2) * height,
            (b.cx + b.w / 2) * width, (b.cy + b.h / 2) * height)


def from_pixel_edges(x0: float, y0: float, x1: float, y1: float, width: int, height: int) -> tuple:
    """Pixel edges -> (cx, cy, w, h) normalised (labelImg's ``bnd_box_to_yolo_line`` arithmetic)."""
    return ((x0 + x1) / 2 / width, (y0 + y1) / 2 / height, (x1 - x0) / width, (y1 - y0) / height)


def yolo_line(cls: int, cx: float, cy: float, w: float, h: float) -> str:
    return "%d %.6f %.6f %.6f %.6f\n" % (cls, cx, cy, w, h)


def parse_class_text(text: str, name: str) -> Optional[list[str]]:
    """Class names from a class file's text: one per line (classes.txt, obj.names) or YAML ``names``.

    None when there are none; a YAML nested deeper than ``jsonread.MAX_DEPTH`` raises
    ``JsonLimitError`` (a ValueError) for the caller's finding. A name must be a plain value:
    a list or mapping in its place (or a YAML alias to one) makes the file unreadable."""
    if name.lower().endswith((".yaml", ".yml")):
        try:
            doc = safe_load_limited(text)
        except yaml.YAMLError:
            return None
        names = doc.get("names") if isinstance(doc, dict) else None
        if isinstance(names, dict):  # Ultralytics: {0: person, 1: car}
            try:
                names = [names[k] for k in sorted(names, key=int)]
            except (TypeError, ValueError):
                return None
        if not isinstance(names, list) or not all(isinstance(n, (str, int, float)) for n in names):
            return None
        return [str(n) for n in names]
    return [ln.rstrip("\r") for ln in text.strip("\n").split("\n") if ln.strip()]


def find_class_file(label_file: Path, top: Path) -> Optional[Path]:
    """The nearest class file beside ``label_file`` or in a folder above it, up to ``top``."""
    folder = label_file.parent
    top = top.absolute()
    while True:
        for name in CLASS_FILES:
            if (folder / name).is_file():
                return folder / name
        if folder.absolute() == top or folder.parent == folder:
            return None
        folder = folder.parent
