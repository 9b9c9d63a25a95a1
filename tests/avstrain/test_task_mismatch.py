"""Feature: task mismatches and the shuffle ablation's limits (issue 23), refused in one line in
the main process: an AVSS checkpoint on S4 shards; the shuffle audio ablation on a split of one
clip; a clip never gets its own audio, and the report never calls it a same-class partner.
(The AVSS-shard cases, a binary preset on v2 clips and predict --overlay/--labelimg, are in
test_avss_train.py, which builds an AVSS release.)"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from avstrain.cli import cli
from tests.helpers.report import random_checkpoint
from tests.helpers.train import untrained_checkpoint


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return random_checkpoint(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def avss_ckpt(tmp_path_factory) -> Path:
    from avsprep.datasets.avss_classes import AVSS_CLASSES

    return untrained_checkpoint(tmp_path_factory.getbasetemp() / "avss-untrained" / "best.pt", "avss-demo",
                                list(AVSS_CLASSES))


@pytest.fixture(scope="module")
def one_clip_shards(tmp_path_factory) -> Path:
    """S4 shards whose test split holds one clip (the demo's metadata CSV cut to one test row)."""
    from avsprep.build import BuildOptions, build_shards
    from avsprep.importer import run_import

    base = tmp_path_factory.getbasetemp()
    src = base / "avstrain-demo"  # written by tiny_shards (the ckpt fixture) once per session
    random_checkpoint(base)
    root = tmp_path_factory.mktemp("oneclip") / "root"
    shutil.copytree(src, root)
    meta = root / "s4_meta_data.csv"
    lines = meta.read_text().splitlines(keepends=True)
    tests = [ln for ln in lines[1:] if ln.rstrip().endswith(",test")]
    assert len(tests) == 2
    meta.write_text("".join(ln for ln in lines if ln != tests[1]))
    run_import(root, root.parent / "boxes.csv", quiet=True)
    out = root.parent / "shards"
    build_shards(root.parent / "boxes.csv", root, out, BuildOptions(splits=["test"], crop_size=32), quiet=True)
    return out


def _one_line_error(res, *parts):
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output and res.output.startswith("Error: ")
    assert len(res.output.strip().splitlines()) == 1, res.output
    for p in parts:
        assert p in res.output, res.output


# ----------------------------------------------------------------------------- AVSS model, S4 shards

@pytest.mark.parametrize("command", ["evaluate", "predict", "report"])
def test_avss_checkpoint_on_s4_shards_is_one_line(ckpt, avss_ckpt, tmp_path, command):
    _, shards = ckpt
    extra = {"evaluate": [], "predict": ["-o", str(tmp_path / "out")], "report": ["-o", str(tmp_path / "out")]}
    res = CliRunner().invoke(cli, [command, str(avss_ckpt), str(shards), *extra[command], "--device", "cpu",
                                   "--quiet"])
    if command == "report":  # the report refuses every AVSS model first (binary tasks only)
        _one_line_error(res, "avstrain report covers the binary S4/MS3 tasks")
    else:
        _one_line_error(res, f"{shards}: setting=avss needs shards built from an AVSS release (these are s4)")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.png"))


# ----------------------------------------------------------------------------- the shuffle ablation

@pytest.mark.parametrize("args", [["evaluate", "--audio-ablation", "shuffle"],
                                  ["evaluate", "--per-clip", "CSV"],
                                  ["report", "-o", "OUT"]])
def test_shuffle_on_a_single_clip_split_is_refused(ckpt, one_clip_shards, tmp_path, args):
    checkpoint, _ = ckpt
    command, *rest = args
    rest = [str(tmp_path / "clips.csv") if a == "CSV" else str(tmp_path / "rep") if a == "OUT" else a for a in rest]
    res = CliRunner().invoke(cli, [command, str(checkpoint), str(one_clip_shards), *rest, "--device", "cpu",
                                   "--quiet"])
    _one_line_error(res, "(test): 1 clip(s)", "needs at least two clips")
    assert not (tmp_path / "clips.csv").exists() and not (tmp_path / "rep" / "index.html").exists()


def test_single_clip_split_still_evaluates_without_shuffle(ckpt, one_clip_shards):
    checkpoint, _ = ckpt
    res = CliRunner().invoke(cli, ["evaluate", str(checkpoint), str(one_clip_shards), "--audio-ablation",
                                   "none,zero", "--json", "--device", "cpu", "--quiet"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["n_clips"] == 1 and list(doc["ablations"]) == ["zero"]


def test_derangement_refuses_fewer_than_two_clips():
    from avstrain.evaluation import derangement

    for n in (0, 1):
        with pytest.raises(ValueError, match="at least two"):
            derangement(n)
    assert derangement(2, seed=5) == [1, 0]


def test_no_clip_gets_its_own_audio_across_batches(ckpt, tmp_path):
    """One clip per batch: the shuffled audio still comes from another clip of the split."""
    checkpoint, shards = ckpt
    out = tmp_path / "clips.csv"
    res = CliRunner().invoke(cli, ["evaluate", str(checkpoint), str(shards), "--split", "train", "--per-clip",
                                   str(out), "--batch-videos", "1", "--device", "cpu", "--quiet"])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 8 and all(r["shuffle_audio_from"] != r["video"] for r in rows)
    assert {r["shuffle_audio_from"] for r in rows} == {r["video"] for r in rows}  # a permutation


def test_report_never_calls_a_clips_own_audio_a_partner():
    from avstrain.report.html import ReportFacts, render_html

    def row(video, partner, cls):
        return {"video": video, "class": "dog", "frames": 5, "iou": 0.5, "fscore": 0.5, "iou_shuffle": 0.5,
                "fscore_shuffle": 0.5, "gap": 0.0, "shuffle_audio_from": partner, "shuffle_audio_class": cls}

    rows = [row("a", "a", "dog"), row("b", "c", "dog"), row("c", "b", "cat")]
    metrics = {"split": "test", "miou": 0.5, "fscore": 0.5, "miou_dataset": 0.5, "fscore_dataset": 0.5,
               "n_clips": 3, "frames": 15, "protocol": {"batch_videos": 4}, "clips": rows,
               "ablations": {"shuffle": {"miou": 0.5, "fscore": 0.5, "miou_dataset": 0.5, "fscore_dataset": 0.5}}}
    run = {"checkpoint": "c.pt", "sha256": "0", "epoch": 1, "best_miou": 0.5, "preset": None,
           "preset_differences": {}, "shards": "s", "device": "cpu", "weights": [], "warnings": []}
    check = {"clips": 3, "mean_iou": 0.5, "frame_weighted_iou": 0.5, "mean_iou_shuffle": 0.5, "mean_gap": 0.0}
    page = render_html(ReportFacts(title="t", run=run, config={}, metrics=metrics, check=check,
                                   files={"per_clip_csv": "p.csv", "results_json": "r.json"}))
    # a's "partner" is its own audio and c's partner is of another class: only b counts
    assert "3 of 3 clips have a gap below" in page and "1 of them got the audio of a clip of their own class" in page
