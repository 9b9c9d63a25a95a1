"""The one guarded way to open a frame or mask image: a missing, unreadable or too large file is a
one-line ``DataError`` naming the clip and the file.

Pixel-count limit: an image whose header says more than ``AVS_MAX_PIXELS`` pixels (environment
variable; default 100 000 000 = 100 MP, e.g. 10000 x 10000; AVSBench frames are under 1 MP) is
refused before it is decoded: a decompression bomb (a few KB of PNG/JPEG that decode to GBs) would
otherwise exhaust memory. ``validate`` reports it as ``frame-image-unreadable`` / ``frame-unreadable``
/ ``mask-unreadable``, ``build --on-bad-input skip`` skips the clip, ``propose`` stops with the line.
PIL's own check (a warning over ``Image.MAX_IMAGE_PIXELS``, an error over twice that, raised while
opening) is lifted only while ``open_guarded`` reads a header (nothing is decoded then) and put back
at once: elsewhere in the process it applies as PIL sets it.
"""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image

from avsprep.common.errors import DataError

ENV_MAX_PIXELS = "AVS_MAX_PIXELS"
DEFAULT_MAX_PIXELS = 100_000_000



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


def open_guarded(path: Path, where: str = ""):
    """``Image.open`` (lazy: the header is read, nothing decoded) with the size checked against our
    limit: ``DataError`` over it. PIL's own guard is lifted for the header read only (nothing is
    decoded there) and put back at once, so our limit, and our message, apply to every size."""
    before = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        im = Image.open(path)
    finally:
        Image.MAX_IMAGE_PIXELS = before
    try:
        check_pixels(im.size, path, where)
    except DataError:
        im.close()
        raise
    return im


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
    with open_guarded(path) as im:
        return tuple(im.size)  # type: ignore[return-value]


def open_image(path: Path, clip: str, what: str, mode: str):
    """The image at ``path`` converted to PIL ``mode`` (fully loaded, file closed)."""
    if not path.is_file():
        raise DataError(f"clip {clip}: {what} {path} not found")
    try:
        with open_guarded(path, f"clip {clip}: {what} ") as im:
            im.load()
            return im.convert(mode)
    except (OSError, ValueError, SyntaxError) as exc:  # truncated / corrupt / not an image
        raise DataError(f"clip {clip}: {what} {path} is unreadable ({exc}); "
                        "re-extract it or run with --on-bad-input skip") from None
