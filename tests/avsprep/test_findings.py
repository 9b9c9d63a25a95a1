"""Feature: one registry of finding codes (avsprep.common.findings.CODES) for every reader and check."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from avsprep.common.findings import CODES, SEVERITIES, UNREADABLE_CODES, Finding

REPO = Path(__file__).resolve().parents[2]
CODE_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)+$")
# functions whose first argument is a finding code: Finding itself and the local helpers around it
CALLS = {"Finding", "of", "fail", "err"}


def _name(func) -> str:
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def code_literals() -> dict[str, str]:
    """Every code literal passed to Finding (or a helper that makes one) or paired with a message
    in a (code, message) tuple (the sniffers, check_label), with where it is."""
    out = {}
    for pkg in ("avsprep", "avstrain"):
        for path in sorted((REPO / pkg).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                values = []
                if isinstance(node, ast.Call) and _name(node.func) in CALLS and node.args:
                    values.append(node.args[0])
                    if isinstance(node.args[0], ast.IfExp):
                        values += [node.args[0].body, node.args[0].orelse]
                if isinstance(node, ast.Tuple) and len(node.elts) == 2 \
                        and (isinstance(node.elts[1], ast.JoinedStr)
                             or isinstance(node.elts[1], ast.Constant) and " " in str(node.elts[1].value)):
                    values.append(node.elts[0])  # (code, message) pairs of the sniffers and check_label
                for v in values:
                    if isinstance(v, ast.Constant) and isinstance(v.value, str) and CODE_RE.match(v.value):
                        out.setdefault(v.value, f"{path.relative_to(REPO)}:{node.lineno}")
    return out


def test_every_code_in_the_source_is_registered():
    found = code_literals()
    assert len(found) > 90  # the scan really sees the readers, validate, the AVSS checks and shards
    missing = {c: where for c, where in found.items() if c not in CODES}
    assert not missing, f"finding codes not in avsprep.common.findings.CODES: {missing}"


def test_every_registered_code_has_a_severity_and_a_one_line_description():
    for code, (severity, text) in CODES.items():
        assert CODE_RE.match(code), code
        assert severity in SEVERITIES, code
        assert text.strip() and "\n" not in text, code
    assert UNREADABLE_CODES <= set(CODES)


def test_finding_refuses_an_unregistered_code():
    with pytest.raises(ValueError, match="not registered"):
        Finding("no-such-code", "error", "x")
    assert Finding.of("frame-missing", "m").severity == CODES["frame-missing"][0]
    assert Finding.of("size-mismatch", "m", severity="error").severity == "error"
