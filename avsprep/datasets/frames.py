"""Real frame sizes: the one place frame images are opened for their size (header only, no decode).

``import`` needs them for YOLO fractions, ``validate`` for boxes against the frame and the AVSS
mask sizes, ``export`` for YOLO files. Each frame is opened once per run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional

from avsprep.common.errors import DataError
from avsprep.common.findings import Finding
from avsprep.common.images import image_size

Size = tuple[int, int]  # (width, height)


def frame_size(path: Path) -> Size:
    """(width, height) from the image header; raises OSError / ValueError when it cannot be read,
    ``DataError`` when it is over the pixel limit (:func:`avsprep.common.images.image_size`)."""
    return image_size(path)


def read_frame_sizes(layout, keys: Iterable[tuple[object, int]]):
    """Sizes of the frames ``(clip, frame)``: ``({(name, frame): size or None}, {(name, frame): error})``,
    each frame opened once."""
    sizes: dict[tuple[str, int], Optional[Size]] = {}
    errors: dict[tuple[str, int], Exception] = {}
    for clip, k in keys:
        key = (clip.name, k)
        if key in sizes:
            continue
        try:
            sizes[key] = frame_size(layout.frame_path(clip, k))
        except (OSError, ValueError, DataError) as exc:
            sizes[key] = None
            errors[key] = exc
    return sizes, errors


class FrameSizes:
    """Frame sizes read on first use (``import`` asks only for frames with YOLO boxes)."""

    def __init__(self, layout):
        self.layout = layout
        self._sizes: dict[tuple[str, int], Optional[Size]] = {}

    def get(self, clip, k: int) -> Optional[Size]:
        key = (clip.name, k)
        if key not in self._sizes:
            sizes, _ = read_frame_sizes(self.layout, [(clip, k)])
            self._sizes[key] = sizes[key]
        return self._sizes[key]


def frame_image_findings(layout, keys: Iterable[tuple[object, int]], errors: dict) -> list[Finding]:
    """``frame-image-missing`` / ``frame-image-unreadable`` for the frames of ``keys`` that could not be read."""
    out = []
    seen = set()
    for clip, k in keys:
        key = (clip.name, k)
        if key not in errors or key in seen:
            continue
        seen.add(key)
        exc = errors[key]
        rel = _rel(layout.frame_path(clip, k), layout.root)
        if isinstance(exc, FileNotFoundError):
            out.append(Finding.of("frame-image-missing", "annotated frame has no image at this path; "
                                  "boxes not checked against it", rel, clip.name, k))
        else:
            out.append(Finding.of("frame-image-unreadable", f"cannot open the frame ({exc})", rel, clip.name, k))
    return out


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)
