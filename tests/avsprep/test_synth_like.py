"""``avsprep demo --like CSV`` (a real metadata CSV's names, categories, splits) and ``--workers N``."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from avsprep.demo import avsbench as synth, render
from tests.conftest import META, need
from tests.helpers.demo import demo_tree_bytes


def _sample_s4(tmp_path: Path, every: int = 300) -> Path:
    """Every ``every``-th row of the real s4_meta_data.csv (file order kept), plus its first row."""
    src = need(META / "s4_meta_data.csv")
    lines = src.read_text().splitlines()
    rows = [lines[1]] + lines[2::every]
    out = tmp_path / "s4_meta_data.csv"
    out.write_text("\n".join([lines[0], *rows]) + "\n")
    return out


def test_signatures_for_all_s4_classes_are_distinct():
    from avsprep.datasets.avsbench import S4_CLASSES

    sigs = synth.signatures_for(sorted(S4_CLASSES))
    assert [s.category for s in sigs] == sorted(S4_CLASSES)
    assert len({(s.shape, s.rgb) for s in sigs}) == 23      # no two classes look alike
    assert len({s.f0 for s in sigs}) == 23 and all(200 < s.f0 < 7000 for s in sigs)
    known = {s.category: s for s in render.SIGNATURES}
    assert all(s == known[s.category] for s in sigs if s.category in known)


def test_plan_like_keeps_the_real_rows_in_order(tmp_path):
    like = _sample_s4(tmp_path)
    setting, rows = synth.read_like(like)
    assert setting == "s4" and rows[0][0] == "-_wznbUu3DY"
    specs = synth.plan_like(rows, seed=0, setting=setting)
    assert [(s.name, s.start, s.category, s.split) for s in specs] == rows
    assert all(s.distractor != s.category for s in specs)
    assert all(s.signature(0).category == s.category for s in specs)
    meta = pd.read_csv(like, dtype=str, keep_default_na=False)
    assert synth.metadata_csv(specs) == like.read_text()  # the same CSV, byte for byte
    assert len(meta) == len(specs)


def test_like_ms3_writes_the_ms3_layout(tmp_path):
    src = need(META / "ms3_meta_data.csv")
    like = tmp_path / "in" / "ms3_meta_data.csv"
    like.parent.mkdir()
    like.write_text("".join(src.read_text().splitlines(keepends=True)[:7]))
    out = tmp_path / "ms3"
    summary = synth.write_avsbench_demo(out, like=like, quiet=True)
    assert summary["setting"] == "ms3"
    assert (out / "ms3_meta_data.csv").read_text() == like.read_text()
    from avsprep.datasets.avsbench import AVSBenchLayout

    lay = AVSBenchLayout.from_root(out)
    assert lay.setting == "ms3"
    for clip in lay.clips():
        for k in range(1, 6):
            assert lay.frame_path(clip, k).is_file() and lay.mask_path(clip, k).is_file()
        assert lay.wav_path(clip).is_file() and lay.logmel_path(clip).is_file()
        assert b"<name>sounding</name>" in lay.frame_path(clip, 1).with_suffix(".xml").read_bytes()


def test_workers_give_byte_identical_output(tmp_path):
    pytest.importorskip("torch")
    like = _sample_s4(tmp_path, every=600)
    synth.write_avsbench_demo(tmp_path / "one", like=like, quiet=True, workers=1)
    synth.write_avsbench_demo(tmp_path / "three", like=like, quiet=True, workers=3)
    a, b = demo_tree_bytes(tmp_path / "one"), demo_tree_bytes(tmp_path / "three")
    assert a.keys() == b.keys() and len(a) > 9 * 10
    for key in a:
        assert a[key] == b[key], key


def test_cli_demo_like_and_bad_like(tmp_path):
    pytest.importorskip("torch")
    from avsprep.cli import cli

    like = _sample_s4(tmp_path, every=900)
    runner = CliRunner()
    res = runner.invoke(cli, ["demo", str(tmp_path / "d"), "--like", str(like), "--workers", "2", "--quiet"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "d" / "s4_meta_data.csv").read_text() == like.read_text()
    bad = tmp_path / "s4_bad.csv"
    bad.write_text("name,start,category,split\nabc,0,dog_barking,train\n")
    res = runner.invoke(cli, ["demo", str(tmp_path / "e"), "--like", str(bad), "--quiet"])
    assert res.exit_code == 1 and "2 categories" in res.stderr and "\n" not in res.stderr.strip()
    help_text = runner.invoke(cli, ["demo", "--help"]).output
    assert "--like" in help_text and "--workers" in help_text
