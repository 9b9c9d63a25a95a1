"""Box -> crop rectangle -> resized crop: the pure geometry behind the ``crops`` dataset.

Boxes are in the toolkit's internal convention (float pixel edges, 0-based,
``xmax``/``ymax`` exclusive; see ``voc.py``). A frame with several boxes is
cropped by a policy (``largest``, ``union`` or ``first``); every box still goes
into the shard's ``boxes`` dataset. Crops are resized with PIL bilinear.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
from PIL import Image

POLICIES = ("largest", "union", "first")

Box = tuple[float, float, float, float]


def _finite_boxes(boxes) -> np.ndarray:
    """``boxes`` as a float64 [k, 4] array, rows with a non-finite coordinate dropped."""
    arr = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return arr[np.isfinite(arr).all(axis=1)]


def select_box(boxes, policy: str = "largest") -> Optional[Box]:
    """The box to crop among a frame's boxes ``[k, 4]`` (x0, y0, x1, y1); None without one.

    ``largest``: largest area (first on ties); ``union``: the bounding box of all;
    ``first``: the first in table order. Rows with NaN/inf are ignored.
    """
    if policy not in POLICIES:
        raise ValueError(f"crop policy must be one of {POLICIES}, got {policy!r}")
    arr = _finite_boxes(boxes)
    if len(arr) == 0:
        return None
    if policy == "first":
        row = arr[0]
    elif policy == "union":
        row = np.array([arr[:, 0].min(), arr[:, 1].min(), arr[:, 2].max(), arr[:, 3].max()])
    else:
        area = np.clip(arr[:, 2] - arr[:, 0], 0, None) * np.clip(arr[:, 3] - arr[:, 1], 0, None)
        row = arr[int(np.argmax(area))]  # argmax returns the first maximum: stable on ties
    return tuple(float(v) for v in row)  # type: ignore[return-value]


def crop_rect(box: Sequence[float], width: int, height: int) -> tuple[int, int, int, int]:
    """Integer pixel rectangle covering ``box``, clamped to a ``width`` x ``height`` image.

    Edges are rounded outwards (floor / ceil), so a box never loses a pixel it
    touches; the result is at least 1 x 1 px even for a degenerate or outside box.
    """
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    x0, y0, x1, y1 = (float(v) for v in box)
    if x1 < x0:
        x0, x1 = x1, x0
    if y1 < y0:
        y0, y1 = y1, y0

    def span(lo: float, hi: float, size: int) -> tuple[int, int]:
        a = min(max(math.floor(lo), 0), size - 1)
        b = min(max(math.ceil(hi), 0), size)
        return (a, b) if b > a else (a, a + 1)

    ix0, ix1 = span(x0, x1, width)
    iy0, iy1 = span(y0, y1, height)
    return ix0, iy0, ix1, iy1


def crop_and_resize(frame: np.ndarray, box: Sequence[float], size: int) -> np.ndarray:
    """Crop ``box`` from an RGB uint8 frame [H, W, 3] and resize to [size, size, 3] (bilinear)."""
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"frame must be uint8 [H, W, 3], got {frame.dtype} {list(frame.shape)}")
    h, w = frame.shape[:2]
    x0, y0, x1, y1 = crop_rect(box, w, h)
    img = Image.fromarray(frame[y0:y1, x0:x1])
    return np.asarray(img.resize((size, size), Image.BILINEAR), dtype=np.uint8)


def rescale_boxes(boxes, xml_width: float, xml_height: float, width: int, height: int) -> np.ndarray:
    """Boxes drawn on an image of the XML's ``<size>`` mapped to the real ``width`` x ``height``.

    A zero / missing ``<size>`` (labelImg writes 0x0 when it cannot decode the
    image) leaves the boxes as they are; the validator reports both cases.
    """
    arr = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).copy()
    ok = lambda v: v is not None and np.isfinite(v) and v > 0  # noqa: E731
    if ok(xml_width) and ok(xml_height) and (xml_width != width or xml_height != height):
        arr[:, [0, 2]] *= width / float(xml_width)
        arr[:, [1, 3]] *= height / float(xml_height)
    return arr


def clamp_boxes(boxes, width: int, height: int) -> np.ndarray:
    """Boxes [k, 4] clipped to the image ``[0, width] x [0, height]`` (NaN rows stay NaN)."""
    arr = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).copy()
    arr[:, [0, 2]] = np.clip(arr[:, [0, 2]], 0, width)
    arr[:, [1, 3]] = np.clip(arr[:, [1, 3]], 0, height)
    return arr


def frame_boxes(rows, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """One frame's box-table rows ``(frame, label, xml_width, xml_height, xmin, ymin, xmax, ymax)``
    on its real ``width`` x ``height`` image: each box rescaled from its file's ``<size>`` and
    clamped (``[n,4]`` float64), and which of them are finite (``[n]`` bool)."""
    xyxy = np.array([r[4:8] for r in rows], np.float64)
    real = np.vstack([rescale_boxes(xyxy[i], r[2], r[3], width, height) for i, r in enumerate(rows)])
    real = clamp_boxes(real, width, height)
    return real, np.isfinite(real).all(axis=1)


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two ``(xmin, ymin, xmax, ymax)`` pixel-edge boxes (0 when the
    union is empty)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
