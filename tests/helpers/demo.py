"""Comparing whole demo releases."""

from __future__ import annotations

from pathlib import Path

from lxml import etree


def demo_tree_bytes(root: Path) -> dict[str, bytes]:
    """relative path -> bytes of every file of a release; an XML's absolute <path> (which must lie
    under ``root``) is cut out, so two releases written to different folders compare equal."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            data = p.read_bytes()
            if p.suffix == ".xml":
                doc = etree.fromstring(data)
                assert Path(doc.findtext("path")).is_relative_to(root.resolve())
                data = data.replace(doc.findtext("path").encode(), b"")
            out[str(p.relative_to(root))] = data
    return out
