"""CreateML JSON: a list of images, each with its boxes as pixel centre and size.

Two layouts are read: labelImg's (``image``, ``verified``, ``annotations`` ->
``label``, ``coordinates`` {x, y, width, height}, one ``{stem}.json`` per image)
and Apple's newer one (``imagefilename``, ``annotation``). ``x, y`` is the box
centre in pixels, so edges are ``x - width/2 .. x + width/2`` (``zero-based``,
:mod:`avsprep.annotations.convention`). One JSON file may hold many images; each is matched
to a frame by its own image file stem. JSON that is some other tool's format
(COCO, LabelMe, Label Studio, VoTT) is named in the finding, with the export to
ask for. Pure: text in, records and findings out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

from avsprep.common.findings import Finding
from avsprep.common.jsonread import JsonLimitError, loads_limited

MAX_JSON_BYTES = 64 << 20


@dataclass
class CreateMLImage:
    image: str
    verified: bool
    boxes: list[tuple[str, float, float, float, float]]  # label, edges


@dataclass
class CreateMLResult:
    images: list[CreateMLImage] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    readable: bool = True


def _what_json(doc) -> Optional[str]:
    """The tool a non-CreateML JSON document most likely comes from, with the export to choose."""
    if isinstance(doc, dict):
        if {"images", "annotations", "categories"} <= set(doc):
            return "a COCO JSON file; export as YOLO or Pascal VOC instead (or CreateML)"
        if "shapes" in doc and ("imagePath" in doc or "imageData" in doc):
            return "a labelme JSON file; convert with labelme2voc or export boxes as Pascal VOC"
        if "assets" in doc or "regions" in doc:
            return "a VoTT JSON file; export from VoTT as Pascal VOC"
    if isinstance(doc, list) and doc and isinstance(doc[0], dict) and ("data" in doc[0] or "result" in str(doc[0])[:2000]):
        return "a Label Studio JSON export (read with --format auto or label-studio)"
    return None


def load_json(text: str, file: str = "<json>"):
    """(document, None), or (None, an unreadable result with the finding) for invalid or hostile JSON
    (depth and size capped: :func:`avsprep.common.jsonread.loads_limited`)."""
    res = CreateMLResult(readable=False)
    try:
        return loads_limited(text, max_chars=MAX_JSON_BYTES), None
    except JsonLimitError as exc:
        res.findings.append(Finding("json-too-deep", "error", f"{exc}; fix or remove the file", file))
    except ValueError as exc:
        res.findings.append(Finding("json-unreadable", "error", f"not valid JSON ({str(exc)[:120]})", file))
    return None, res


def parse_createml(text: str, file: str = "<json>") -> CreateMLResult:
    doc, problem = load_json(text, file)
    return problem if problem is not None else parse_createml_doc(doc, file)


def parse_createml_doc(doc, file: str = "<json>") -> CreateMLResult:
    """A parsed JSON document -> CreateML images (pure)."""
    res = CreateMLResult()
    if isinstance(doc, dict) and "categories" in doc and set(doc) <= {"categories", "info"}:
        res.readable = False
        res.findings.append(Finding("file-not-annotation", "info",
                                    "Label Studio's notes.json (the class list of a YOLO export; the classes "
                                    "are read from classes.txt); not read", file))
        return res
    items = doc if isinstance(doc, list) else None
    ok = items is not None and all(isinstance(i, dict) and ("image" in i or "imagefilename" in i) for i in items)
    if not ok or not items:
        what = _what_json(doc)
        res.readable = False
        res.findings.append(Finding("json-not-createml", "error",
                                    (f"{what}" if what else "JSON that is not CreateML (a list of "
                                     "{image, annotations})") + "; not read", file))
        return res
    for n, item in enumerate(items, start=1):
        image = str(item.get("image", item.get("imagefilename")))
        anns = item.get("annotations", item.get("annotation")) or []
        boxes = []
        for m, a in enumerate(anns if isinstance(anns, list) else [], start=1):
            try:
                c = a["coordinates"]
                x, y, w, h = (float(c[k]) for k in ("x", "y", "width", "height"))
                label = str(a.get("label", ""))
            except (KeyError, TypeError, ValueError):
                res.findings.append(Finding("json-bad-box", "error",
                                            f"image {image!r} box {m}: no coordinates x/y/width/height; "
                                            "box skipped", file))
                continue
            if not all(math.isfinite(v) for v in (x, y, w, h)):
                res.findings.append(Finding("box-not-finite", "error",
                                            f"image {image!r} box {m}: non-finite coordinates; box skipped", file))
                continue
            boxes.append((label, x - w / 2, y - h / 2, x + w / 2, y + h / 2))
        res.images.append(CreateMLImage(image, bool(item.get("verified", False)), boxes))
    return res
