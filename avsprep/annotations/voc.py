"""Hardened reader for labelImg / Pascal-VOC XML: bytes in, boxes and findings out.

Untrusted input (docs/RELIABILITY.md): no DTD, no entity expansion, no network,
a size limit; a file with a DOCTYPE or ENTITY declaration (billion laughs, XXE)
is refused as a finding before parsing. Nothing here raises on bad data: every
problem becomes a :class:`~avsprep.common.findings.Finding` with a stable code.

Tolerated (docs/reference/labelimg_voc.md 1.4, 3, 5): any or no XML declaration
(``us-ascii`` included), a BOM, CRLF, numeric character references, any child
order, ``<Difficult>`` in any case, empty ``<difficult/>`` (read as 0 with a
warning), ``<occluded>``, ``<part>``, ``<attributes>`` (ignored), a missing
``<size>`` or a 0x0 one (reported), float and negative coordinates.

**Box convention.** Boxes come out in the internal convention (float pixel
edges, 0-based, ``xmax`` exclusive); the rule that turns file coordinates into
edges, and how it is decided once per import, is defined in
:mod:`avsprep.annotations.convention` and nowhere else. :func:`read_voc` alone decides per
file; ``avsprep import`` reads every file first and then applies one decision
to all of them (:meth:`VocResult.boxes_as`).

Files that are not Pascal VOC (MIT LabelMe, roLabelImg, CVAT task files, dlib)
and mis-declared or undeclared encodings get findings that name the cause
(:mod:`avsprep.annotations.sniff`).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

from avsprep.common.findings import Finding

MAX_XML_BYTES = 1 << 20  # 1 MiB: a labelImg file for one frame is ~1 KB per box

from lxml import etree

from avsprep.annotations import sniff
from avsprep.annotations.convention import (  # noqa: F401  (re-exported: the names callers know)
    LABELIMG_1BASED,
    ZERO_BASED,
    detect_convention,
    not_labelimg_reason,
    to_edges,
)
from avsprep.annotations.labelimg_xml import detect_writer

_HOSTILE = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.I)
_APPLEDOUBLE_MAGIC = b"\x00\x05\x16\x07"
_COORDS = ("xmin", "ymin", "xmax", "ymax")


@dataclass(frozen=True)
class VocBox:
    """One box in the internal convention (float pixel edges, 0-based, xmax exclusive)."""

    label: str
    xmin: float
    ymin: float
    xmax: float
    ymax: float
    difficult: int = 0


@dataclass
class VocResult:
    """What one XML file says; ``readable`` is False when nothing could be taken from it."""

    boxes: list[VocBox] = field(default_factory=list)
    width: Optional[int] = None
    height: Optional[int] = None
    depth: Optional[int] = None
    filename: Optional[str] = None
    verified: bool = False
    convention: str = ZERO_BASED
    findings: list[Finding] = field(default_factory=list)
    readable: bool = True
    folder: Optional[str] = None
    path: Optional[str] = None
    database: Optional[str] = None
    depth_text: Optional[str] = None
    writer: str = ""  # labelImg writer style of the bytes (avsprep.annotations.labelimg_xml.detect_writer)
    owner: Optional[str] = None  # <owner><name>: "Label Studio" for its converter's files
    # (label, difficult, file values, file texts) per box, before any convention is applied
    raw_boxes: list[tuple[str, int, tuple[float, float, float, float], tuple[str, str, str, str]]] = \
        field(default_factory=list)

    @property
    def not_labelimg(self) -> Optional[str]:
        """Why this file cannot be labelImg 1-based output (None: it can, or it has no box)."""
        if self.raw_boxes and (self.owner or "").strip() == "Label Studio":
            return "written by Label Studio's VOC export (<owner><name>Label Studio</name>), 0-based edges"
        return not_labelimg_reason([t for *_, t in self.raw_boxes])

    def boxes_as(self, convention: str) -> list[VocBox]:
        """The file's boxes read with ``convention`` (the import's decision)."""
        return [VocBox(label, *to_edges(*vals, convention), diff) for label, diff, vals, _ in self.raw_boxes]


def _parser(encoding: Optional[str] = None):
    """lxml parser with every external or expanding feature off."""
    return etree.XMLParser(encoding=encoding, resolve_entities=False, no_network=True,
                           load_dtd=False, dtd_validation=False, huge_tree=False,
                           remove_comments=True, remove_pis=True)


def _local(el) -> str:
    tag = el.tag
    if not isinstance(tag, str):  # comments, PIs, entity references
        return ""
    return tag.rsplit("}", 1)[-1].lower()


def _child(el, name: str):
    """First child element named ``name``, case-insensitively (``<Difficult>``)."""
    for c in el:
        if _local(c) == name:
            return c
    return None


def _text(el) -> Optional[str]:
    if el is None:
        return None
    return "".join(el.itertext())


def _size_value(size_el, name: str, file: str, findings: list) -> Optional[int]:
    text = _text(_child(size_el, name))
    if text is None or not text.strip():
        return None
    try:
        v = float(text.strip())
    except ValueError:
        findings.append(Finding("size-bad-value", "warning",
                                f"<size>/<{name}> is {text.strip()!r}, not a number; ignored", file))
        return None
    if not math.isfinite(v) or v < 0 or v != int(v):
        findings.append(Finding("size-bad-value", "warning",
                                f"<size>/<{name}> is {text.strip()!r}, not a pixel count; ignored", file))
        return None
    return int(v)


def _difficult(obj, file: str, index: int, findings: list) -> int:
    el = _child(obj, "difficult")
    if el is None:
        return 0
    text = (_text(el) or "").strip().lower()
    if text in ("0", "false", "no"):
        return 0
    if text in ("1", "true", "yes"):
        return 1
    if text == "":
        findings.append(Finding("difficult-empty", "warning",
                                f"object {index}: empty <difficult/> read as 0 (labelme2voc writes these)",
                                file))
        return 0
    findings.append(Finding("difficult-bad-value", "warning",
                            f"object {index}: <difficult> is {text!r}; expected 0 or 1, read as 0", file))
    return 0


def _stem(file: str) -> str:
    name = Path(file).name
    return name[:-4] if name.lower().endswith(".xml") else name


def read_voc(data: bytes, file: str = "<bytes>", max_bytes: Optional[int] = MAX_XML_BYTES,
             convention: Optional[str] = None) -> VocResult:
    """Parse one labelImg/VOC XML document (pure: no file access). Never raises on bad data.

    ``convention`` None decides from this file alone (:func:`detect_convention`).
    """
    res = VocResult()
    f = res.findings

    def fail(code: str, message: str) -> VocResult:
        res.readable = False
        f.append(Finding.of(code, message, file))  # the code's severity (info: no annotation file at all)
        return res

    if max_bytes is not None and len(data) > max_bytes:
        return fail("xml-too-large", f"{len(data)} bytes, over the {max_bytes}-byte limit for one frame; "
                                     "not read")
    if data.startswith(_APPLEDOUBLE_MAGIC):
        return fail("xml-unreadable", "macOS AppleDouble resource file ('._' prefix), not XML; "
                                          "delete the ._* files")
    # NUL bytes dropped so the scan also sees declarations in UTF-16/UTF-32 files.
    if _HOSTILE.search(data) or (b"\x00" in data[:4] and _HOSTILE.search(data.replace(b"\x00", b""))):
        return fail("xml-entity", "has a DOCTYPE/ENTITY declaration (possible XXE or entity bomb); "
                                  "refused. labelImg never writes one: re-save the file with labelImg")
    declared = sniff.declared_encoding(data)
    force = None
    if declared and declared not in sniff.UTF8_NAMES and not declared.startswith("utf") \
            and sniff.is_utf8_non_ascii(data):
        force = "utf-8"
        f.append(Finding("encoding-mismatch", "warning",
                         f"declares encoding {declared!r} but the bytes are UTF-8; read as UTF-8 "
                         "(fix the declaration or re-save the file)", file))
    try:
        root = etree.fromstring(data, _parser(force))
    except etree.XMLSyntaxError as first:
        # labelImg's own reader forces UTF-8 whatever the declaration says; try that too.
        try:
            root = etree.fromstring(data, _parser("utf-8"))
        except (etree.XMLSyntaxError, ValueError, LookupError):
            msg = str(first).splitlines()[0] if str(first) else type(first).__name__
            if "encoding" in msg.lower() or "utf-8" in msg.lower() or "bytes" in msg.lower():
                guess = sniff.guess_encoding(data)
                said = f"declared {declared!r}" if declared else "no encoding declared"
                if guess and (declared is None or declared in sniff.UTF8_NAMES):
                    return fail("xml-encoding", f"bytes are not UTF-8 ({said}); they look like {guess}: "
                                                f"re-save the file as UTF-8, or declare "
                                                f"<?xml version=\"1.0\" encoding=\"{guess}\"?>")
                return fail("xml-encoding", f"cannot decode the bytes ({said}: {msg[:120]}); "
                                            "re-save the file as UTF-8")
            return fail("xml-unreadable", f"not well-formed XML ({msg[:160]})")
    except (ValueError, LookupError) as exc:  # e.g. unknown encoding name
        return fail("xml-unreadable", f"cannot decode ({str(exc)[:160]})")

    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:
        return fail("xml-entity", "has a DOCTYPE declaration; refused (re-save the file with labelImg)")
    if _local(root) != "annotation":
        known = sniff.foreign_root(root)
        if known:
            return fail(*known)
        return fail("xml-not-annotation", f"root element is <{_local(root) or '?'}>, not <annotation>; "
                                          "not a Pascal-VOC file (export as PASCAL VOC or YOLO)")
    known = sniff.foreign_annotation(root)
    if known:
        return fail(*known)

    res.writer = detect_writer(data)
    res.verified = (root.get("verified") or "").strip().lower() == "yes"
    fn = _text(_child(root, "filename"))
    res.filename = fn.strip() if fn is not None else None
    res.folder = _text(_child(root, "folder"))
    res.path = _text(_child(root, "path"))
    src = _child(root, "source")
    res.database = _text(_child(src, "database")) if src is not None else None
    owner = _child(root, "owner")
    res.owner = _text(_child(owner, "name")) if owner is not None else None
    if res.filename:
        want = _stem(file)
        base = re.split(r"[\\/]", res.filename)[-1]  # CVAT writes the task's sub-folder
        got = base.rsplit(".", 1)[0] if "." in base else base
        if want not in (base, got) and file != "<bytes>":
            f.append(Finding("filename-mismatch", "warning",
                             f"<filename> is {res.filename!r} but the file is named {Path(file).name!r}; "
                             "matched by the file name (was the XML copied from another frame?)", file))

    size = _child(root, "size")
    if size is None:
        f.append(Finding("size-missing", "info", "no <size>; boxes are checked against the real frame", file))
    else:
        res.width = _size_value(size, "width", file, f)
        res.height = _size_value(size, "height", file, f)
        res.depth = _size_value(size, "depth", file, f)
        res.depth_text = _text(_child(size, "depth"))
        if res.width == 0 or res.height == 0:
            f.append(Finding("size-zero", "warning",
                             f"<size> is {res.width}x{res.height} (labelImg could not decode the image); "
                             "boxes are checked against the real frame", file))

    raw: list[tuple[str, str, str, str]] = []
    parts = 0
    for i, obj in enumerate((c for c in root if _local(c) == "object"), start=1):
        label = _text(_child(obj, "name"))
        label = "" if label is None else label
        if any(_local(c) == "part" for c in obj):
            parts += 1
        bnd = _child(obj, "bndbox")
        if bnd is None and _child(obj, "robndbox") is not None:
            f.append(Finding("box-rotated", "error",
                             f"object {i} ({label!r}): a rotated box (<robndbox>, roLabelImg); not read: "
                             "redraw it as a normal box", file))
            continue
        if bnd is None and (_child(obj, "polygon") is not None or _child(obj, "segm") is not None):
            f.append(Finding("box-polygon", "error",
                             f"object {i} ({label!r}): a polygon (LabelMe), not a box; not read", file))
            continue
        texts = [_text(_child(bnd, k)) if bnd is not None else None for k in _COORDS]
        missing = [k for k, t in zip(_COORDS, texts) if t is None or not t.strip()]
        if missing:
            f.append(Finding("box-missing-coord", "error",
                             f"object {i} ({label!r}): no {'/'.join(missing)} in <bndbox>; box skipped", file))
            continue
        try:
            vals = tuple(float(t.strip()) for t in texts)
        except ValueError:
            f.append(Finding("box-bad-coord", "error",
                             f"object {i} ({label!r}): coordinates {[t.strip() for t in texts]} are not numbers; "
                             "box skipped", file))
            continue
        if not all(math.isfinite(v) for v in vals):
            f.append(Finding("box-not-finite", "error",
                             f"object {i} ({label!r}): coordinates {list(vals)} are not finite "
                             "(Datumaro: InvalidValue); box skipped", file))
            continue
        raw.append(tuple(t.strip() for t in texts))  # type: ignore[arg-type]
        res.raw_boxes.append((label, _difficult(obj, file, i, f), vals, raw[-1]))  # type: ignore[arg-type]

    if parts:
        f.append(Finding("object-part-ignored", "info",
                         f"{parts} object(s) carry <part> boxes; only the object's own box is read", file))
    res.convention = convention or detect_convention(raw)
    res.boxes = res.boxes_as(res.convention)
    return res


def read_voc_file(path: os.PathLike | str, name: Optional[str] = None,
                  max_bytes: int = MAX_XML_BYTES) -> VocResult:
    """Read one XML file with the size limit; ``name`` is how findings refer to it."""
    name = str(path) if name is None else name
    try:
        size = os.stat(path).st_size
        if size > max_bytes:
            res = VocResult(readable=False)
            res.findings.append(Finding("xml-too-large", "error",
                                        f"{size} bytes, over the {max_bytes}-byte limit for one frame; "
                                        "not read", name))
            return res
        with open(path, "rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        res = VocResult(readable=False)
        res.findings.append(Finding("xml-unreadable", "error",
                                    f"cannot open ({exc.strerror or exc}); check permissions", name))
        return res
    return read_voc(data, name, max_bytes=max_bytes)


def with_place(finding: Finding, clip: Optional[str], frame: Optional[int]) -> Finding:
    """The same finding, tied to a clip and frame once the file is matched."""
    return replace(finding, clip=clip, frame=frame)
