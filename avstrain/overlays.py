"""Painting on frames: a predicted mask as a translucent fill, a GT mask as an outline, a
log-mel as a colour image, and rows of such tiles. Pure numpy functions (uint8 RGB in, uint8
RGB out) so they test without files; ``png_bytes`` is the one encoder."""

from __future__ import annotations

import io
from typing import Optional, Sequence

import numpy as np
from PIL import Image

# The demo's objects are flat red, yellow, magenta, orange, white, green, blue shapes, so no
# flat colour stands out on all of them: the prediction is cyan *stripes* (plus a light tint
# and its own 1 px outline), the GT a white outline with a black ring inside it.
PRED_RGB = (0, 229, 255)   # predicted mask: cyan stripes
PRED_ALPHA = 0.75          # on the stripes
TINT_ALPHA = 0.3           # between the stripes
STRIPE = 3                 # stripe width in px (diagonal)
GT_RGB = (255, 255, 255)   # GT outline: white ...
GT_INNER_RGB = (0, 0, 0)   # ... with a black ring inside
TILE = 104                 # side in px of a frame in a clip strip (report galleries, TensorBoard)


def outline(mask: np.ndarray, width: int = 1) -> np.ndarray:
    """The boundary pixels of a 0/1 (or bool) mask ``[H,W]``: in the mask, with a 4-neighbour
    outside it (image borders count as outside), thickened inwards to ``width`` pixels."""
    m = np.asarray(mask).astype(bool)
    edge = np.zeros_like(m)
    inner = m.copy()
    for _ in range(max(1, width)):
        p = np.pad(inner, 1, constant_values=False)
        eroded = inner & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
        edge |= inner & ~eroded
        inner = eroded
    return edge


def stripes(shape: tuple, width: int = STRIPE) -> np.ndarray:
    """Diagonal stripes ``[H,W]`` bool: ``width`` px on, ``width`` px off."""
    y, x = np.indices(shape)
    return ((x + y) // max(1, width)) % 2 == 0


def blend(frame: np.ndarray, where: np.ndarray, rgb: Sequence[int], alpha: float) -> np.ndarray:
    """``frame [H,W,3]`` uint8 with the pixels ``where [H,W]`` blended in ``rgb`` at ``alpha`` (a copy)."""
    out = np.asarray(frame, dtype=np.uint8).copy()
    m = np.asarray(where).astype(bool)
    if m.shape != out.shape[:2]:
        raise ValueError(f"mask {m.shape} does not match frame {out.shape[:2]}")
    colour = np.asarray(rgb, dtype=np.float32)
    out[m] = np.round(out[m].astype(np.float32) * (1 - alpha) + colour * alpha).astype(np.uint8)
    return out


def paint_mask(frame: np.ndarray, mask: np.ndarray, rgb: Sequence[int] = PRED_RGB) -> np.ndarray:
    """The predicted ``mask`` on ``frame`` (a copy): stripes at ``PRED_ALPHA``, a tint at
    ``TINT_ALPHA`` between them and a solid 1 px outline, all in ``rgb``."""
    m = np.asarray(mask).astype(bool)
    on = stripes(m.shape)
    out = blend(frame, m & on, rgb, PRED_ALPHA)
    out = blend(out, m & ~on, rgb, TINT_ALPHA)
    out[outline(m, 1)] = np.asarray(rgb, dtype=np.uint8)
    return out


def draw_outline(frame: np.ndarray, mask: np.ndarray, rgb: Sequence[int] = GT_RGB, width: int = 2,
                 inner_rgb: Optional[Sequence[int]] = GT_INNER_RGB) -> np.ndarray:
    """``frame`` with the outline of ``mask`` (a copy): the outer pixel in ``rgb``, the other
    ``width - 1`` inside it in ``inner_rgb`` (None: all ``rgb``), visible on any colour."""
    out = np.asarray(frame, dtype=np.uint8).copy()
    edge = outline(mask, width)
    outer = outline(mask, 1)
    out[edge] = np.asarray(rgb if inner_rgb is None else inner_rgb, dtype=np.uint8)
    out[outer] = np.asarray(rgb, dtype=np.uint8)
    return out


def overlay(frame: np.ndarray, pred: np.ndarray, gt: Optional[np.ndarray] = None, width: int = 2) -> np.ndarray:
    """The prediction painted over the frame, with the GT outline on top when a GT exists."""
    out = paint_mask(frame, pred)
    return out if gt is None else draw_outline(out, gt, width=width)


def resize(img: np.ndarray, side: int) -> np.ndarray:
    """Square RGB image to ``side`` x ``side`` (bilinear; a no-op at the same size)."""
    if img.shape[0] == side and img.shape[1] == side:
        return img
    return np.asarray(Image.fromarray(img).resize((side, side), Image.BILINEAR))


def hstack(tiles: Sequence[np.ndarray], gap: int = 2, fill: int = 255) -> np.ndarray:
    """Tiles of the same height side by side with ``gap`` pixels of ``fill`` between them."""
    h = tiles[0].shape[0]
    parts = []
    for k, t in enumerate(tiles):
        if t.shape[0] != h:
            raise ValueError(f"tile {k} is {t.shape[0]} px high, expected {h}")
        if k:
            parts.append(np.full((h, gap, 3), fill, np.uint8))
        parts.append(t)
    return np.concatenate(parts, axis=1)


def vstack(rows: Sequence[np.ndarray], gap: int = 2, fill: int = 255) -> np.ndarray:
    """Rows stacked top to bottom (narrower rows padded on the right with ``fill``)."""
    w = max(r.shape[1] for r in rows)
    parts = []
    for k, r in enumerate(rows):
        if k:
            parts.append(np.full((gap, w, 3), fill, np.uint8))
        parts.append(np.pad(r, ((0, 0), (0, w - r.shape[1]), (0, 0)), constant_values=fill))
    return np.concatenate(parts, axis=0)


def logmel_image(logmel: np.ndarray, height: int = 64) -> np.ndarray:
    """Log-mel examples ``[T,96,64]`` (time, mel) -> RGB ``[height, T*96*height/64, 3]``: time
    left to right, low frequencies at the bottom, min-max scaled, viridis colours."""
    from matplotlib import colormaps  # lazy: ~0.2 s to import, and only the log-mel strips need it

    x = np.asarray(logmel, dtype=np.float32)
    x = x.reshape(-1, x.shape[-1]).T[::-1]  # [T,96,64] -> [T*96, 64] -> [64 mel (high first), T*96]
    lo, hi = float(np.nanmin(x)), float(np.nanmax(x))
    x = (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
    rgb = (colormaps["viridis"](x)[..., :3] * 255).round().astype(np.uint8)
    if height != rgb.shape[0]:
        w = int(round(rgb.shape[1] * height / rgb.shape[0]))
        rgb = np.asarray(Image.fromarray(rgb).resize((w, height), Image.BILINEAR))
    return rgb


def png_bytes(img: np.ndarray) -> bytes:
    """An RGB (or single-channel) uint8 array as PNG bytes."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(img)).save(buf, format="PNG")
    return buf.getvalue()


def clip_strip(frames: np.ndarray, pred: np.ndarray, gt: np.ndarray, valid: np.ndarray, side: int = TILE) -> np.ndarray:
    """A clip's T frames side by side, prediction painted, GT outlined where it exists."""
    return hstack([resize(overlay(frames[t], pred[t], gt[t] if valid[t] else None), side) for t in range(len(frames))])
