"""The labelImg Pascal-VOC XML writer: the exact bytes labelImg's ``PascalVocWriter`` saves
(1.8.6's by default; the 2017 v1.3 writers' for files they wrote, see "Writer styles" below).

Facts (docs/reference/labelimg_voc.md, fixtures/labelimg/README.md): no XML declaration,
no BOM, UTF-8, LF, one TAB per indent level (labelImg pretty-prints with two
spaces and then turns *every* pair of spaces into a TAB, text included), a
trailing newline; element order folder, filename, path (only when given),
source/database, size/width,height,depth, segmented, object*; ``pose`` is
``Unspecified``, ``segmented`` ``0``; ``truncated`` is computed from the
written values (1 when ``int(float(v))`` of ymax equals the height, of xmax the
width, or of xmin/ymin equals 1); ``verified="yes"`` on the root only when
verified. Coordinates are written as given (``str`` of the value).

Used by ``avsprep propose``, ``avsprep export``, ``avstrain predict --labelimg``
and the demo generator, so every file the toolkit writes is one labelImg opens
and re-saves unchanged.

**Writer styles (the rule).** Older labelImg writers saved other bytes for the
same content, and ``avsprep export`` gives such a file back the way it came.
:func:`detect_writer` tells the style from a file's bytes at import (recorded
per frame in the box table's ``xml_writer``); :func:`labelimg_xml_bytes`
writes the style named in :attr:`XmlFile.writer`:

* ``labelimg-1.8`` (labelImg v1.4.4 to 1.8.6, the default): what is described
  above. Recognised by a TAB before the first child, no ``verified="no"``, no
  ``<Difficult>``.
* ``labelimg-1.3.0`` (v1.3.0 and v1.3.1, 2017): ``<annotation verified="no">``
  whenever not verified, 2-space indentation (double spaces in text stay),
  ``<path>`` always written (``<path/>`` when there is none), ``<Difficult>``
  with a capital D, ASCII bytes with every non-ASCII character as a decimal
  numeric character reference (``&#44592;``).
* ``labelimg-1.3.2`` (v1.3.2 and v1.3.3): the same with ``<difficult>``.

Both 1.3 styles are recognised by a ``verified`` attribute, 2-space indentation
and ASCII-only bytes, told apart by the difficult tag (a file with no object is
given ``labelimg-1.3.0``: both write it the same). Common to all: no XML
declaration, LF only, a trailing newline. Anything else (other tools, hand
edits that break the layout) gets ``""`` and is exported as ``labelimg-1.8``;
so are proposals and frames imported from YOLO or CreateML. The ``<filename>``
without extension of 1.3-era files is kept as data (``xml_filename``).
Reading keeps ``<Difficult>`` in any case (:mod:`avsprep.annotations.voc`), unlike
labelImg 1.8.6's own reader, which drops it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional, Sequence, Union

from lxml import etree

Number = Union[int, float, str]

# <source><database> of box proposals (``avsprep propose``, ``avstrain predict --labelimg``).
# labelImg writes "Unknown" whenever it saves a file, so a frame still carrying this
# value (and not verified) has not been checked by an annotator yet.
PROPOSAL_DATABASE = "avsprep-propose"


LABELIMG_1_8 = "labelimg-1.8"
LABELIMG_1_3_0 = "labelimg-1.3.0"
LABELIMG_1_3_2 = "labelimg-1.3.2"
DEFAULT_WRITER = LABELIMG_1_8


@dataclass(frozen=True)
class WriterStyle:
    """How one labelImg writer lays out the same content (see the module docstring)."""

    tab_indent: bool       # every two spaces become a TAB, text included (1.8); else 2-space indent
    ascii: bool            # non-ASCII written as numeric character references
    verified_always: bool  # verified="no" on the root when not verified
    path_always: bool      # <path> written even when there is none
    difficult_tag: str


WRITERS = {
    LABELIMG_1_8: WriterStyle(tab_indent=True, ascii=False, verified_always=False, path_always=False,
                              difficult_tag="difficult"),
    LABELIMG_1_3_0: WriterStyle(tab_indent=False, ascii=True, verified_always=True, path_always=True,
                                difficult_tag="Difficult"),
    LABELIMG_1_3_2: WriterStyle(tab_indent=False, ascii=True, verified_always=True, path_always=True,
                                difficult_tag="difficult"),
}

_HEAD = re.compile(rb'<annotation(?: verified="(yes|no)")?>\n(\t|  )<[a-z]')


def detect_writer(data: bytes) -> str:
    """The labelImg writer style of a file's bytes (pure), or ``""`` when none fits."""
    m = _HEAD.match(data)
    if m is None or b"\r" in data or not data.endswith(b"</annotation>\n"):
        return ""
    verified, indent = m.group(1), m.group(2)
    upper, lower = b"<Difficult>" in data, b"<difficult>" in data
    if indent == b"\t":
        return LABELIMG_1_8 if verified != b"no" and not upper else ""
    if verified is None or not data.isascii() or (upper and lower):
        return ""
    return LABELIMG_1_3_2 if lower else LABELIMG_1_3_0


def is_unchecked_proposal(database: Optional[str], verified: bool) -> bool:
    return bool(database) and database.startswith(PROPOSAL_DATABASE) and not verified


@dataclass
class XmlObject:
    """One ``<object>``: label, the four coordinate values as they are to be written, difficult."""

    name: str
    xmin: Number
    ymin: Number
    xmax: Number
    ymax: Number
    difficult: int = 0


@dataclass
class XmlFile:
    """Everything a labelImg XML file holds."""

    folder: str
    filename: str
    width: int
    height: int
    depth: Union[int, str] = 3
    path: Optional[str] = None
    database: str = "Unknown"
    verified: bool = False
    objects: Sequence[XmlObject] = field(default_factory=list)
    writer: str = DEFAULT_WRITER  # a key of WRITERS: whose bytes to write


def _truncated(o: XmlObject, width, height) -> str:
    def iv(v) -> Optional[int]:
        try:
            return int(float(v))
        except (TypeError, ValueError, OverflowError):
            return None
    w, h = iv(width), iv(height)
    edge = (iv(o.ymax) == h or iv(o.ymin) == 1 or iv(o.xmax) == w or iv(o.xmin) == 1)
    return "1" if edge else "0"


def labelimg_xml_bytes(doc: XmlFile) -> bytes:
    """The file's bytes, as the labelImg writer ``doc.writer`` saves them (pure)."""
    style = WRITERS.get(doc.writer)
    if style is None:
        raise ValueError(f"unknown labelImg writer style {doc.writer!r}; expected one of {', '.join(WRITERS)}")

    def sub(parent, tag, text):
        el = etree.SubElement(parent, tag)
        el.text = None if text is None or str(text) == "" else str(text)  # ElementTree writes <x />
        return el

    top = etree.Element("annotation")
    if doc.verified or style.verified_always:
        top.set("verified", "yes" if doc.verified else "no")
    sub(top, "folder", doc.folder)
    sub(top, "filename", doc.filename)
    if doc.path is not None or style.path_always:
        sub(top, "path", doc.path)
    source = etree.SubElement(top, "source")
    sub(source, "database", doc.database)
    size = etree.SubElement(top, "size")
    sub(size, "width", doc.width)
    sub(size, "height", doc.height)
    sub(size, "depth", doc.depth)
    sub(top, "segmented", "0")
    for o in doc.objects:
        obj = etree.SubElement(top, "object")
        sub(obj, "name", o.name)
        sub(obj, "pose", "Unspecified")
        sub(obj, "truncated", _truncated(o, doc.width, doc.height))
        sub(obj, style.difficult_tag, str(bool(o.difficult) & 1))
        box = etree.SubElement(obj, "bndbox")
        for tag in ("xmin", "ymin", "xmax", "ymax"):
            sub(box, tag, getattr(o, tag))
    if style.ascii:  # lxml's default encoding: ASCII, other characters as &#N;
        return etree.tostring(top, pretty_print=True)
    body = etree.tostring(top, pretty_print=True, encoding="utf-8")
    return body.replace(b"  ", b"\t") if style.tab_indent else body
