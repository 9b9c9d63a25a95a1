"""What the two demo releases share: how a class looks and sounds (``Signature``), the
shapes, clip ids, labelImg boxes and XML bytes, and the bytes of wav and image files.

Pure functions of their arguments; the demos (``avsbench``, ``avss``) plan, render and write.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import soundfile as sf
from PIL import Image

from avsprep.annotations.labelimg_xml import XmlFile, XmlObject, labelimg_xml_bytes

ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"


@dataclass(frozen=True)
class Signature:
    """How one demo class looks and sounds."""

    category: str          # the class: an exact S4 class string, or an AVSS class
    shape: str             # see ``shape_mask``
    rgb: tuple             # base colour
    f0: float              # fundamental of the tone (Hz); spaced apart on the mel scale
    rate: float            # amplitude-pulse rate (Hz); 0 = steady tone


# Ordered so that the first four (the default) are the most distinct in colour,
# shape and pitch. ``horse_clip-clop`` keeps the hyphen in play.
SIGNATURES: tuple[Signature, ...] = (
    Signature("dog_barking", "disc", (220, 40, 40), 300.0, 0.0),
    Signature("horse_clip-clop", "square", (40, 185, 60), 750.0, 4.0),
    Signature("playing_piano", "triangle", (50, 80, 225), 1600.0, 0.0),
    Signature("helicopter", "cross", (235, 210, 40), 3400.0, 8.0),
    Signature("cat_meowing", "ring", (205, 60, 205), 480.0, 2.0),
    Signature("race_car", "diamond", (40, 200, 215), 1100.0, 6.0),
    Signature("playing_violin", "hbar", (245, 140, 30), 2300.0, 3.0),
    Signature("ambulance_siren", "xcross", (240, 240, 240), 5000.0, 1.5),
)

# The shapes ``shape_at`` draws; ``signatures_for`` cycles through them in this order.
SHAPES = ("disc", "square", "triangle", "cross", "ring", "diamond", "hbar", "xcross")


def clip_ids(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` distinct 11-character YouTube-like ids over ``[A-Za-z0-9_-]``."""
    alphabet = np.array(list(ID_ALPHABET))
    ids: list[str] = []
    seen: set[str] = set()
    while len(ids) < n:
        name = "".join(alphabet[rng.integers(0, len(alphabet), 11)])
        if name not in seen:
            seen.add(name)
            ids.append(name)
    return ids


# --------------------------------------------------------------------------- shapes

def shape_at(shape: str, dx: np.ndarray, dy: np.ndarray, r: float) -> np.ndarray:
    """Bool, the shape of ``dx``/``dy`` (pixel offsets from the shape's centre): inside or not."""
    ax, ay = np.abs(dx), np.abs(dy)
    if shape == "disc":
        return dx * dx + dy * dy <= r * r
    if shape == "ring":
        d2 = dx * dx + dy * dy
        return (d2 <= r * r) & (d2 >= (0.55 * r) ** 2)
    if shape == "square":
        return (ax <= 0.85 * r) & (ay <= 0.85 * r)
    if shape == "triangle":   # apex up, base at +0.8 r
        t = (dy + r) / (1.8 * r)
        return (t >= 0) & (t <= 1) & (ax <= r * t)
    if shape == "cross":
        return ((ax <= 0.33 * r) & (ay <= r)) | ((ay <= 0.33 * r) & (ax <= r))
    if shape == "diamond":
        return ax + ay <= 1.15 * r
    if shape == "hbar":
        return (ax <= 1.1 * r) & (ay <= 0.45 * r)
    if shape == "xcross":
        diag = (np.abs(dx - dy) <= 0.45 * r) | (np.abs(dx + dy) <= 0.45 * r)
        return diag & (ax <= 0.85 * r) & (ay <= 0.85 * r)
    raise ValueError(f"unknown shape {shape!r}")


# --------------------------------------------------------------------------- labelImg

def labelimg_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """The box labelImg saves for a canvas rectangle drawn tightly around ``mask``.

    The rectangle's corners are pixel edges (0-based, max exclusive);
    labelImg's ``convert_points_to_bnd_box`` raises xmin/ymin below 1 to 1 and
    truncates with ``int()``.
    """
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return None
    x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
    return int(max(x0, 1)), int(max(y0, 1)), x1, y1


def labelimg_xml(folder: str, filename: str, path: str | None, width: int, height: int,
                 depth: int, objects=(), verified: bool = False) -> bytes:
    """The bytes labelImg 1.8.6's ``PascalVocWriter`` writes for one image (see
    :mod:`avsprep.annotations.labelimg_xml`). ``objects``: ``(name, xmin, ymin, xmax, ymax, difficult)``."""
    return labelimg_xml_bytes(XmlFile(folder, filename, width, height, depth, path=path, verified=verified,
                                      objects=[XmlObject(*o) for o in objects]))


# --------------------------------------------------------------------------- file bytes

def wav_bytes(pcm: np.ndarray, sample_rate: int) -> bytes:
    """16-bit PCM WAV of ``pcm`` (``[n]`` mono or ``[n, channels]``) at ``sample_rate``."""
    buf = io.BytesIO()
    sf.write(buf, pcm, sample_rate, subtype="PCM_16", format="WAV")
    return buf.getvalue()


def image_bytes(array: np.ndarray, mode: str, fmt: str = "PNG") -> bytes:
    """An image file's bytes: PNG (compression level 6) or JPEG (quality 92)."""
    buf = io.BytesIO()
    kw = {"quality": 92} if fmt == "JPEG" else {"compress_level": 6}
    Image.fromarray(array, mode).save(buf, format=fmt, **kw)
    return buf.getvalue()
