"""What a release looks like on disk: the only package that knows AVSBench S4/MS3 from
AVSBench-semantic (AVSS).

:func:`open_layout` is the one place that tells them apart; the stages get a
:class:`avsprep.datasets.base.Layout` and ask it (frames, masks, matcher, classes, checks).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from avsprep.datasets.avsbench import AVSBenchLayout
from avsprep.datasets.avss import AVSSLayout, is_avss_root
from avsprep.datasets.base import Layout


def open_layout(root: Path | str, setting: Optional[str] = None, subsets=None) -> Layout:
    """The layout of ``root``: an AVSS release (``metadata.csv`` + ``label2idx.json``, or
    ``setting="avss"``; ``subsets`` selects v1s/v1m/v2) or an AVSBench S4/MS3 root (the setting
    inferred from its metadata CSV when None; ``subsets`` ignored). A folder that is none of them
    raises a one-line :class:`avsprep.common.errors.DataError` naming it."""
    if setting == "avss" or (setting is None and is_avss_root(root)):
        return AVSSLayout.from_root(root, subsets)
    return AVSBenchLayout.from_root(root, setting)


def new_layout(root: Path | str, setting: str) -> Layout:
    """The layout of a root to be written (``extract``), nothing read: ``setting`` s4, ms3 or avss
    (AVSS with every subset)."""
    if setting == "avss":
        return AVSSLayout(root)
    return AVSBenchLayout(root, setting)
