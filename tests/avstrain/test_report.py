"""Feature: ``avstrain report``, a static HTML report (avstrain.report)."""

from __future__ import annotations

import csv
import os
import shutil
import json
import re

import numpy as np
import pytest
from click.testing import CliRunner

from avstrain.cli import cli
from avstrain.report import closest_preset, run_warnings
from tests.helpers.report import random_checkpoint


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    checkpoint, shards = random_checkpoint(tmp_path_factory.getbasetemp())
    out = tmp_path_factory.getbasetemp() / "report"
    if (out / "index.html").is_file():
        return out
    res = CliRunner().invoke(cli, ["report", str(checkpoint), str(shards), "-o", str(out), "--split", "val",
                                   "--per-gallery", "2", "--device", "cpu", "--quiet"])
    assert res.exit_code == 0, res.output
    assert res.output.strip().splitlines()[-1] == str(out / "index.html")
    return out


def test_page_is_self_contained(report_dir):
    page = (report_dir / "index.html").read_text()
    assert "<script" not in page.lower() and "http://" not in page and "https://" not in page
    refs = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert refs and all((report_dir / r).is_file() for r in refs)
    assert len([r for r in refs if r.endswith(".png")]) >= 3 * 2 + 2  # galleries + curves + gaps


def test_page_has_every_section(report_dir):
    page = (report_dir / "index.html").read_text()
    for anchor in ("headline", "run", "metrics", "gap", "gallery-worst", "gallery-no_listen", "gallery-best"):
        assert f'id="{anchor}"' in page
    for text in ("closest preset", "demo", "random init", "mIoU (official)", "audio shuffle", "audio zero",
                 "Per class", "per_clip.csv", "sha256"):
        assert text in page, text


def test_csv_json_and_headline_agree(report_dir):
    doc = json.loads((report_dir / "results.json").read_text())
    rows = list(csv.DictReader((report_dir / "per_clip.csv").open()))
    assert [r["video"] for r in rows] == [r["video"] for r in doc["clips"]]
    gap = np.mean([float(r["gap"]) for r in rows])
    expect = doc["miou_dataset"] - doc["ablations"]["shuffle"]["miou_dataset"]
    assert gap == pytest.approx(expect, abs=1e-12)  # val: 5 GT frames per clip
    page = (report_dir / "index.html").read_text()
    assert f"<b>{gap:.4f}</b>" in page


def test_no_listen_gallery_holds_the_smallest_gaps(report_dir):
    rows = list(csv.DictReader((report_dir / "per_clip.csv").open()))
    page = (report_dir / "index.html").read_text()
    section = page.split('id="gallery-no_listen"')[1].split("<h3")[0]
    shown = re.findall(r"<b>([^<]+)</b><br>", section)
    smallest = [r["video"] for r in sorted(rows, key=lambda r: float(r["gap"]))[:2]]
    assert shown == smallest


def test_existing_report_needs_overwrite(report_dir, tmp_path_factory):
    checkpoint, shards = random_checkpoint(tmp_path_factory.getbasetemp())
    res = CliRunner().invoke(cli, ["report", str(checkpoint), str(shards), "-o", str(report_dir)])
    assert res.exit_code == 1 and "use --overwrite" in res.output


def test_closest_preset_and_warnings_are_pure():
    name, diff = closest_preset({"a": 1, "b": 2, "device": "cpu"}, {"p": {"a": 1, "b": 3}, "q": {"a": 0, "b": 0}})
    assert name == "p" and diff == {"b": (2, 3)}
    w = run_warnings({"backbone": "resnet50", "backbone_weights": None, "crop_head": False, "amp": True}, "cpu")
    assert any("random init" in x for x in w) and any("amp" in x for x in w)


def test_report_in_a_real_browser(report_dir, tmp_path):
    """Headless Chromium: every image loads, no request leaves the folder, tables and galleries are there."""
    pytest.importorskip("websocket", reason="websocket-client (test extra) is needed to drive Chromium")
    from tests.helpers.browser import find_browser, open_page

    if find_browser() is None:
        pytest.skip("no headless Chromium (apt-get install chromium-headless-shell; .ci/run does it as root)")
    shot = tmp_path / "report.png"
    res = open_page(report_dir / "index.html", shot)
    facts = res["facts"]
    assert res["loaded"] and facts["scripts"] == 0
    assert facts["images"] and all(done and w > 0 for _, done, w in facts["images"]), facts["images"]
    folder = report_dir.resolve().as_uri() + "/"
    assert res["requests"] and all(u.startswith(folder) for u in res["requests"]), res["requests"]
    assert facts["metricTable"] and facts["galleries"] == [2, 2, 2]
    assert shot.stat().st_size > 10_000
    if os.environ.get("AVS_REPORT_SCREENSHOT"):  # keep it to look at
        shutil.copy(shot, os.environ["AVS_REPORT_SCREENSHOT"])
