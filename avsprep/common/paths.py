"""Where a writer may write: every file a command creates lies under its output folder.

Names that become path components are checked by the metadata readers
(:func:`avsprep.datasets.base.safe_name`); writers also resolve each target with
:func:`inside` before writing, so a name that slipped through (a shard built
before the check, a hand-made one) can never send a file outside the output
folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from avsprep.common.errors import DataError


def inside(base: os.PathLike | str, target: os.PathLike | str, what: str = "file") -> Path:
    """``target`` when it resolves (symlinks followed) to a path under ``base``; else a one-line
    ``DataError`` naming both. ``what`` says what would have been written."""
    base_r = Path(base).resolve()
    target_r = Path(target).resolve()
    if target_r != base_r and base_r not in target_r.parents:
        raise DataError(f"refusing to write {what} {target}: it resolves to {target_r}, outside the output "
                        f"folder {base_r}; a name in the input (clip, uid, category) is not a plain file name - "
                        "fix that name and rebuild")
    return Path(target)


def same_file(a: os.PathLike | str, b: os.PathLike | str) -> bool:
    """True when ``a`` and ``b`` name the same file (resolved; ``b`` need not exist)."""
    return Path(a).resolve() == Path(b).resolve()
