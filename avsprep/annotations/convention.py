"""The box convention: file coordinates <-> internal pixel edges, decided once per import.

**The one place the rule is defined.** Inside avsprep a box is ``(xmin, ymin,
xmax, ymax)`` as floats in *pixel edges*: 0-based, ``xmax`` exclusive, so a box
over a W x H image is ``(0, 0, W, H)``. Pascal-VOC files come in two conventions:

* ``labelimg-1based`` (``--box-convention labelimg``): what labelImg's GUI
  writes (it raises ``xmin``/``ymin`` below 1 to 1 and truncates to int). Read
  with the VOC-devkit meaning, 1-based inclusive pixels: edges = ``(xmin - 1,
  ymin - 1, xmax, ymax)``, so labelImg's full-frame box ``1,1,W,H`` becomes
  exactly ``(0, 0, W, H)``; written back as ``(x0 + 1, y0 + 1, x1, y1)``.
* ``zero-based``: CVAT, Roboflow, labelme2voc, VoTT, scripts. Values are edges
  as they are, both ways.

``--box-convention auto`` decides **once for all the VOC files of an import**
(:func:`decide`): ``labelimg-1based`` only when every coordinate of every file
is written as an integer and no ``xmin``/``ymin`` is 0 or negative; otherwise
``zero-based`` for every file, and the files that forced it are reported. A
zero-based writer's file with no box at the left/top edge looks exactly like a
labelImg file, so a per-file decision would read one dataset with two
conventions (shifted by one pixel file by file); a per-import decision cannot.
The decision is recorded per row in the table's ``source_convention``.

YOLO (normalised edges) and CreateML (pixel centre and size) are edge-based by
definition and always read ``zero-based``; the VOC decision does not touch them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Optional

LABELIMG_1BASED = "labelimg-1based"
ZERO_BASED = "zero-based"
CONVENTIONS = (LABELIMG_1BASED, ZERO_BASED)
# --box-convention values -> what they force (None: decide)
CHOICES = {"auto": None, "labelimg": LABELIMG_1BASED, "zero-based": ZERO_BASED}

_INT_TEXT = re.compile(r"^[+-]?[0-9]+$")


def not_labelimg_reason(raw: Iterable[tuple[str, str, str, str]]) -> Optional[str]:
    """Why a file's coordinate texts cannot be labelImg 1-based output, or None when they can."""
    for quad in raw:
        for name, t in zip(("xmin", "ymin", "xmax", "ymax"), quad):
            if not _INT_TEXT.match(t.strip()):
                return f"{name} {t.strip()!r} is not an integer"
        for name, t in zip(("xmin", "ymin"), quad[:2]):
            if float(t) < 1:  # float: int() caps at 4300 digits
                return f"{name} {t.strip()} at the {'left' if name == 'xmin' else 'top'} edge or beyond"
    return None


def detect_convention(raw: list[tuple[str, str, str, str]]) -> str:
    """One file's convention on its own (used when a single file is read outside an import)."""
    if not raw:
        return ZERO_BASED
    return ZERO_BASED if not_labelimg_reason(raw) else LABELIMG_1BASED


@dataclass
class Decision:
    """The convention of one import, how it was chosen, and the files that forced it."""

    convention: str
    how: str  # "auto" or "forced"
    files_with_boxes: int = 0
    forced_by: list[tuple[str, str]] = field(default_factory=list)  # (file, reason), zero-based evidence

    def describe(self, limit: int = 3) -> str:
        if self.how == "forced":
            return f"box convention {self.convention} (--box-convention)"
        if self.convention == LABELIMG_1BASED:
            return (f"box convention {self.convention}: every coordinate of the {self.files_with_boxes} VOC "
                    "file(s) with boxes is an integer and none is at the left/top edge")
        shown = "; ".join(f"{f}: {r}" for f, r in self.forced_by[:limit])
        more = f" (and {len(self.forced_by) - limit} more)" if len(self.forced_by) > limit else ""
        if not self.forced_by:
            return f"box convention {self.convention}: no VOC box to decide from"
        return (f"box convention {self.convention} for all {self.files_with_boxes} VOC file(s) with boxes, "
                f"forced by {len(self.forced_by)} file(s): {shown}{more}")

    def to_dict(self) -> dict:
        return {"convention": self.convention, "how": self.how, "files_with_boxes": self.files_with_boxes,
                "forced_by": [{"file": f, "reason": r} for f, r in self.forced_by]}


def decide(evidence: Mapping[str, Optional[str]], choice: str = "auto") -> Decision:
    """The import's convention. ``evidence``: file -> :func:`not_labelimg_reason` for every VOC file
    with at least one box (files with no box do not vote)."""
    if choice not in CHOICES:
        raise ValueError(f"box convention must be one of {', '.join(CHOICES)}, got {choice!r}")
    forced_by = sorted((f, r) for f, r in evidence.items() if r is not None)
    if CHOICES[choice] is not None:
        return Decision(CHOICES[choice], "forced", len(evidence), forced_by)
    if not evidence or forced_by:
        return Decision(ZERO_BASED, "auto", len(evidence), forced_by)
    return Decision(LABELIMG_1BASED, "auto", len(evidence), [])


def to_edges(xmin: float, ymin: float, xmax: float, ymax: float,
             convention: str) -> tuple[float, float, float, float]:
    """File coordinates -> internal edges."""
    if convention == LABELIMG_1BASED:
        return xmin - 1.0, ymin - 1.0, xmax, ymax
    return xmin, ymin, xmax, ymax


def from_edges(x0: float, y0: float, x1: float, y1: float,
               convention: str) -> tuple[float, float, float, float]:
    """Internal edges -> file coordinates (the exact inverse of :func:`to_edges`)."""
    if convention == LABELIMG_1BASED:
        return x0 + 1.0, y0 + 1.0, x1, y1
    return x0, y0, x1, y1


def coord_texts(values: tuple[float, float, float, float]) -> tuple[str, str, str, str]:
    """How a box's file coordinates are written: all integers when all four are whole numbers,
    else Python's shortest round-trip float text for each (``12.5``, ``180.0``), as a script
    passing floats to labelImg's writer gets."""
    if all(math.isfinite(v) and float(v).is_integer() for v in values):
        return tuple(str(int(v)) for v in values)  # type: ignore[return-value]
    return tuple(repr(float(v)) for v in values)  # type: ignore[return-value]
