"""tools/rehearsal.py at small size: every stage runs and the last line is the JSON report."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import META, REPO, need

sys.path.insert(0, str(REPO / "tools"))
import rehearsal  # noqa: E402


def test_subsample_keeps_first_row_and_every_split(tmp_path):
    src = need(META / "s4_meta_data.csv")
    dst = tmp_path / "s4_meta_data.csv"
    n = rehearsal.subsample_csv(src, dst, 9)
    lines = dst.read_text().splitlines()
    assert lines[0] == "name,start,category,split" and len(lines) == n + 1 and 9 <= n <= 12
    assert lines[1].startswith("-_wznbUu3DY,")
    assert {ln.rsplit(",", 1)[1] for ln in lines[1:]} == {"train", "val", "test"}
    src_rows = src.read_text().splitlines()[1:]
    assert [src_rows.index(r) for r in lines[1:]] == sorted(src_rows.index(r) for r in lines[1:])  # order kept


@pytest.mark.slow
def test_rehearsal_small(tmp_path):
    like = need(META / "s4_meta_data.csv")
    work = tmp_path / "work"
    res = subprocess.run([sys.executable, str(REPO / "tools" / "rehearsal.py"), "--like", str(like),
                          "--clips", "12", "--steps", "1", "--train-preset", "demo", "--work", str(work)],
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    doc = json.loads(res.stdout.strip().splitlines()[-1])
    assert list(doc["stages"]) == ["demo", "import", "validate", "build", "verify", "open", "train"]
    for name, st in doc["stages"].items():
        assert st["exit"] == 0 and st["wall_s"] > 0 and st["peak_rss_mib"] > 10, name
    assert doc["clips"] >= 12 and doc["validate_errors"] == 0
    assert doc["stages"]["open"]["hashed_at_open"] == 0
    assert doc["stages"]["build"]["bytes"] > doc["stages"]["import"]["bytes"] > 0
    assert (work / "run" / "metrics.csv").is_file() and (work / "shards" / "verified.json").is_file()
    for key in ("metric", "unit", "ours", "baseline", "ratio"):
        assert key in doc
