"""Box label -> class, for every layout: the drift a label may have and still mean a class.

The class lists are with their layouts (``avsbench.S4_CLASSES`` / ``MS3_CLASSES``,
``avss_classes.AVSS_CLASSES``, whose release typos and a_obj tokens are read by
``avss_classes.canonical_label`` / ``clip_classes`` / ``box_class``).
"""

from __future__ import annotations

import re


def normalise_label(label: str) -> str:
    """Case- and whitespace-insensitive form (spaces/TABs -> ``_``): the drift ``build`` also accepts."""
    return re.sub(r"\s+", "_", label.strip()).casefold()


def class_of(label: str, classes: list[str]) -> str | None:
    """The class ``label`` means: itself, or the class equal to it after :func:`normalise_label`; None
    when it means none."""
    if label in classes:
        return label
    return {normalise_label(c): c for c in classes}.get(normalise_label(label))
