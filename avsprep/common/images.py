"""The one guarded way to open a frame or mask image: a missing, unreadable or too large file is a
one-line ``DataError`` naming the clip and the file.

Pixel-count limit: an image whose header says more than ``AVS_MAX_PIXELS`` pixels (environment
variable; default 100 000 000 = 100 MP, e.g. 10000 x 10000; AVSBench frames are under 1 MP) is
refused before it is decoded: a decompression bomb (a few KB of PNG/JPEG that decode to GBs) would
otherwise exhaust memory. ``validate`` reports it as ``frame-image-unreadable`` / ``frame-unreadable``
/ ``mask-unreadable``, ``build --on-bad-input skip`` skips the clip, ``propose`` stops with the line.
PIL's own check (a warning over 89 MP, an error over 179 MP, whatever the setting) is switched off
here so that this limit is the one that applies.
"""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image

from avsprep.common.errors import DataError

ENV_MAX_PIXELS = "AVS_MAX_PIXELS"
DEFAULT_MAX_PIXELS = 100_000_000

Image.MAX_IMAGE_PIXELS = None  # our limit (max_pixels) replaces PIL's DecompressionBombWarning/Error


def max_pixels() -> int:
    """The pixel-count limit: ``AVS_MAX_PIXELS`` when set (a positive whole number), else 100 MP."""
    raw = os.environ.get(ENV_MAX_PIXELS, "").strip()
    if not raw:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        value = 0
    if value <= 0:
        raise DataError(f"{ENV_MAX_PIXELS}={raw!r} is not a positive whole number of pixels; "
                        f"unset it (default {DEFAULT_MAX_PIXELS}) or give e.g. 200000000")
    return value


def check_pixels(size: tuple[int, int], path: Path, where: str = "") -> None:
    """A one-line ``DataError`` when ``size`` (width, height) is over :func:`max_pixels`."""
    limit = max_pixels()
    w, h = size
    if w * h > limit:
        raise DataError(f"{where}{path} is {w}x{h} = {w * h:,} pixels, over the limit of {limit:,} "
                        f"(a decompression bomb?); not decoded - replace the file, or raise {ENV_MAX_PIXELS} "
                        "if it is genuine, or run build with --on-bad-input skip")


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the image header, nothing decoded; ``DataError`` over the pixel limit,
    ``OSError`` / ``ValueError`` when the file cannot be read as an image."""
    with Image.open(path) as im:
        size = tuple(im.size)
    check_pixels(size, path)
    return size  # type: ignore[return-value]


def open_image(path: Path, clip: str, what: str, mode: str):
    """The image at ``path`` converted to PIL ``mode`` (fully loaded, file closed)."""
    if not path.is_file():
        raise DataError(f"clip {clip}: {what} {path} not found")
    try:
        with Image.open(path) as im:
            check_pixels(im.size, path, f"clip {clip}: {what} ")
            im.load()
            return im.convert(mode)
    except (OSError, ValueError, SyntaxError) as exc:  # truncated / corrupt / not an image
        raise DataError(f"clip {clip}: {what} {path} is unreadable ({exc}); "
                        "re-extract it or run with --on-bad-input skip") from None
