"""The labelImg Pascal-VOC XML writer: the exact bytes labelImg 1.8.6's ``PascalVocWriter`` saves.

Facts (reference/labelimg_voc.md, fixtures/labelimg/README.md): no XML declaration,
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
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence, Union

Number = Union[int, float, str]

# <source><database> of box proposals (``avsprep propose``, ``avstrain predict --labelimg``).
# labelImg writes "Unknown" whenever it saves a file, so a frame still carrying this
# value (and not verified) has not been checked by an annotator yet.
PROPOSAL_DATABASE = "avsprep-propose"


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
    """The file's bytes, as labelImg writes them (pure)."""
    from lxml import etree

    def sub(parent, tag, text):
        el = etree.SubElement(parent, tag)
        el.text = None if text is None or str(text) == "" else str(text)  # ElementTree writes <x />
        return el

    top = etree.Element("annotation")
    if doc.verified:
        top.set("verified", "yes")
    sub(top, "folder", doc.folder)
    sub(top, "filename", doc.filename)
    if doc.path is not None:
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
        sub(obj, "difficult", str(bool(o.difficult) & 1))
        box = etree.SubElement(obj, "bndbox")
        for tag in ("xmin", "ymin", "xmax", "ymax"):
            sub(box, tag, getattr(o, tag))
    return etree.tostring(top, pretty_print=True, encoding="utf-8").replace(b"  ", b"\t")
