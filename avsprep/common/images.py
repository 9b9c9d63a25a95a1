"""Reading one frame or mask image of a clip: a missing or unreadable file is a one-line
``DataError`` naming the clip and the file."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from avsprep.common.errors import DataError


def open_image(path: Path, clip: str, what: str, mode: str):
    """The image at ``path`` converted to PIL ``mode`` (fully loaded, file closed)."""
    if not path.is_file():
        raise DataError(f"clip {clip}: {what} {path} not found")
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert(mode)
    except (OSError, ValueError, SyntaxError) as exc:  # truncated / corrupt / not an image
        raise DataError(f"clip {clip}: {what} {path} is unreadable ({exc}); "
                        "re-extract it or run with --on-bad-input skip") from None
