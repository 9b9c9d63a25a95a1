"""What a file is when it is not what the reader expects: findings that name the cause.

Pure functions on parsed XML roots or raw bytes. Recognised (each with the
export to ask for instead):

* MIT LabelMe XML (``<object>`` with ``<polygon><pt>``, no ``<bndbox>``);
* roLabelImg rotated boxes (``<robndbox>`` with ``cx, cy, w, h, angle``);
* CVAT's "CVAT for images 1.1" / "CVAT for video 1.1" task file (root ``<annotations>``);
* dlib imglab XML (root ``<dataset>`` with ``<images><image><box>``);
* a Label Studio labeling config (root ``<View>``): no annotation file (an info finding);
* encodings: UTF-8 bytes under another declaration (read as UTF-8, warned), and
  undeclared non-UTF-8 bytes, with the likely encoding named.
"""

from __future__ import annotations

import re
from typing import Optional

_DECL = re.compile(rb"^\s*<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._:-]+)[\"']", re.S)
UTF8_NAMES = {"utf-8", "utf8", "us-ascii", "ascii", "utf_8"}


def _local(el) -> str:
    tag = el.tag
    return tag.rsplit("}", 1)[-1].lower() if isinstance(tag, str) else ""


def _has(el, name: str) -> bool:
    return any(_local(c) == name for c in el)


def foreign_root(root) -> Optional[tuple[str, str]]:
    """(code, message) for a known non-VOC XML whose root is not ``<annotation>``; None if unknown."""
    name = _local(root)
    if name == "annotations" and (_has(root, "version") or _has(root, "meta") or _has(root, "image")
                                  or _has(root, "track")):
        kind = "CVAT for video 1.1" if _has(root, "track") and not _has(root, "image") else "CVAT for images 1.1"
        return ("xml-cvat-task", f"a CVAT task file ('{kind}' export: all images in one file), not one "
                                 "Pascal-VOC file per frame; in CVAT export the task as 'PASCAL VOC 1.1' "
                                 "or 'YOLO 1.1' and import that")
    if name == "view":
        return ("file-not-annotation", "a Label Studio labeling config (<View>), not an annotation file; not read")
    if name == "dataset" and _has(root, "images"):
        return ("xml-dlib", "a dlib imglab dataset file (<dataset><images><image><box>), not Pascal VOC; "
                            "convert it to one VOC or YOLO file per frame (boxes are top/left/width/height)")
    return None


def foreign_annotation(root) -> Optional[tuple[str, str]]:
    """(code, message) for an ``<annotation>`` file whose objects are not VOC boxes; None when VOC."""
    objs = [c for c in root if _local(c) == "object"]
    if not objs:
        return None
    with_box = sum(1 for o in objs if _has(o, "bndbox"))
    poly = sum(1 for o in objs if _has(o, "polygon") or _has(o, "segm"))
    rot = sum(1 for o in objs if _has(o, "robndbox"))
    if with_box == 0 and rot:
        return ("xml-rotated-box", f"a roLabelImg file with {rot} rotated box(es) (<robndbox> cx/cy/w/h/angle) "
                                   "and no axis-aligned <bndbox>; redraw them as normal boxes "
                                   "(roLabelImg's 'Create RectBox') or save from labelImg")
    if with_box == 0 and poly:
        return ("xml-labelme", f"a MIT LabelMe XML file ({poly} <polygon> object(s), no <bndbox>), not "
                               "Pascal VOC; export boxes as Pascal VOC (labelme2voc, or the tool's VOC export)")
    return None


def declared_encoding(data: bytes) -> Optional[str]:
    """The encoding named in the XML declaration (lower case), or None."""
    m = _DECL.match(data[:200])
    return m.group(1).decode("ascii").lower() if m else None


def is_utf8_non_ascii(data: bytes) -> bool:
    """True when the bytes are valid UTF-8 and contain multi-byte characters."""
    if b"\x00" in data or not any(b >= 0x80 for b in data):
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def guess_encoding(data: bytes) -> Optional[str]:
    """The likely encoding of non-UTF-8 bytes (windows-1251, GBK, Shift_JIS, windows-1252), or None."""
    high = [b for b in data if b >= 0x80]
    if not high:
        return None
    # Russian text in windows-1251 is nearly all letters 0xC0-0xFF (and 0xA8/0xB8 for Ё/ё).
    letters = sum(1 for b in high if b >= 0xC0 or b in (0xA8, 0xB8))
    if letters / len(high) >= 0.9:
        try:
            data.decode("cp1251")
            return "windows-1251"
        except UnicodeDecodeError:
            pass
    for codec, name, ranges in (("gbk", "GBK", ((0x4E00, 0x9FFF),)),
                                ("shift_jis", "Shift_JIS", ((0x3040, 0x30FF), (0x4E00, 0x9FFF))),
                                ("cp1252", "windows-1252", ((0x00C0, 0x00FF),))):
        try:
            text = data.decode(codec)
        except UnicodeDecodeError:
            continue
        wide = [c for c in text if ord(c) >= 0x80]
        if wide and sum(1 for c in wide if any(a <= ord(c) <= b for a, b in ranges)) / len(wide) >= 0.8:
            return name
    return None
