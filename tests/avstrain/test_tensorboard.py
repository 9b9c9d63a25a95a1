"""Feature: ``--set tensorboard=true`` writes RUN/tb/ (optional extra), or says which extra is missing."""

from __future__ import annotations

import csv
import sys

import pytest
from click.testing import CliRunner

from avstrain.cli import cli
from tests.helpers.train import TINY, tiny_shards

FAST = ["--epochs", "1", "--set", "max_steps_per_epoch=2", "--set", "max_eval_clips=2", "--device", "cpu"]


def test_tensorboard_events_read_back(tmp_path_factory, tmp_path):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    shards = tiny_shards(tmp_path_factory.getbasetemp())
    run = tmp_path / "run"
    res = CliRunner().invoke(cli, ["train", str(shards), "-o", str(run), *TINY, *FAST, "--set", "tensorboard=true"])
    assert res.exit_code == 0, res.output
    acc = EventAccumulator(str(run / "tb"), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    for tag in ("train/total", "train/seg", "train/lr", "val/miou", "val/fscore", "epoch/train_total"):
        assert tag in tags["scalars"], (tag, tags["scalars"])
    assert [e.step for e in acc.Scalars("train/total")] == [1, 2]
    row = next(csv.DictReader((run / "metrics.csv").open()))
    assert acc.Scalars("val/miou")[0].value == pytest.approx(float(row["val_miou"]), abs=1e-6)
    assert "val/overlays" in tags["images"]
    img = acc.Images("val/overlays")[0]
    assert img.width > 0 and img.height > 0 and img.encoded_image_string[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_extra_is_a_one_line_error_naming_it(tmp_path_factory, tmp_path, monkeypatch):
    shards = tiny_shards(tmp_path_factory.getbasetemp())
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard -> ImportError
    res = CliRunner().invoke(cli, ["train", str(shards), "-o", str(tmp_path / "run"), *TINY, *FAST,
                                   "--set", "tensorboard=true"])
    assert res.exit_code == 1
    lines = [ln for ln in res.output.splitlines() if ln.startswith("Error")]
    assert len(lines) == 1 and "avsprep[tensorboard]" in lines[0], res.output
    assert not (tmp_path / "run" / "metrics.csv").exists()  # failed before training
