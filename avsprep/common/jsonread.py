"""The one way user-supplied JSON (and YAML) is parsed: nesting depth and size capped before parsing.

Python's parser recurses once per ``[`` / ``{``: a file nested 100 000 levels deep (a few hundred KB)
raises ``RecursionError`` and can crash the interpreter. :func:`loads_limited` counts the depth first
(strings skipped) and raises :class:`JsonLimitError`, a ``ValueError``, so a reader that already
turns invalid JSON into a finding does the same for these. Used by every JSON annotation reader
(CreateML, Label Studio's notes.json: :mod:`avsprep.annotations.createml`) and the other JSON files
that come with a user's data (``label2idx.json``, the import sidecar). :func:`safe_load_limited`
does the same for YAML (a YOLO ``data.yaml``): flow-style nesting (``[[[...``) counted first, and a
block-style nesting too deep for the parser turned into the same error.
"""

from __future__ import annotations

import json
import re
from typing import Optional

import yaml

MAX_DEPTH = 100  # CreateML nests 4 levels, label2idx 1, a sidecar 4: far below
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_BRACKET = re.compile(r"[\[\]{}]")


class JsonLimitError(ValueError):
    """JSON over the depth or size cap (the message says which, for the finding)."""


def nesting_depth(text: str, stop_at: Optional[int] = None) -> int:
    """Deepest nesting of ``[`` / ``{`` in ``text`` (brackets inside strings not counted); stops
    counting once ``stop_at`` is passed."""
    depth = deepest = 0
    for m in _BRACKET.finditer(_STRING.sub('""', text)):
        if m.group() in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if stop_at is not None and deepest > stop_at:
                    break
        else:
            depth -= 1
    return deepest


def loads_limited(text: str, max_depth: int = MAX_DEPTH, max_chars: Optional[int] = None):
    """``json.loads(text)`` unless it is longer than ``max_chars`` or nested deeper than ``max_depth``
    (:class:`JsonLimitError`); invalid JSON raises ``json.JSONDecodeError`` (a ``ValueError``) as usual."""
    if max_chars is not None and len(text) > max_chars:
        raise JsonLimitError(f"{len(text):,} characters, over the limit of {max_chars:,}")
    depth = nesting_depth(text, stop_at=max_depth)
    if depth > max_depth:
        raise JsonLimitError(f"nested more than {max_depth} levels deep (a JSON bomb?); not parsed")
    try:
        return json.loads(text)
    except RecursionError:  # pragma: no cover - the depth check comes first
        raise JsonLimitError(f"nested too deeply to parse (limit {max_depth} levels)") from None


def safe_load_limited(text: str, max_depth: int = MAX_DEPTH, max_chars: Optional[int] = None):
    """``yaml.safe_load(text)`` with the caps of :func:`loads_limited` (:class:`JsonLimitError`);
    invalid YAML raises ``yaml.YAMLError`` as usual."""
    if max_chars is not None and len(text) > max_chars:
        raise JsonLimitError(f"{len(text):,} characters, over the limit of {max_chars:,}")
    if nesting_depth(text, stop_at=max_depth) > max_depth:
        raise JsonLimitError(f"nested more than {max_depth} levels deep (a YAML bomb?); not parsed")
    try:
        return yaml.safe_load(text)
    except RecursionError:  # block-style nesting (indentation) deeper than the parser can follow
        raise JsonLimitError(f"nested too deeply to parse (limit {max_depth} levels)") from None
