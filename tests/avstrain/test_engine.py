"""Feature: training runs resume exactly, stop cleanly, refuse bad checkpoints, and DDP = 1 process."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys

import pytest
import torch

from avsprep.common.errors import IntegrityError, OutputExistsError
from avstrain import checkpoints, engine, evaluation, system
from avstrain.config import resolve_config
from tests.helpers.train import TINY_OVERRIDES, tiny_shards


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return tiny_shards(tmp_path_factory.getbasetemp())


def cfg(**kw):
    return resolve_config("demo", None, {**TINY_OVERRIDES, **kw})


@pytest.fixture(scope="module")
def two_epochs(shards, tmp_path_factory):
    """The reference run: 2 epochs in one go."""
    run = tmp_path_factory.mktemp("run") / "A"
    engine.train(cfg(epochs=2), shards, run, quiet=True)
    return run


def _weights(run):
    ck = torch.load(run / "last.pt", weights_only=True)
    return ck


def _same(a, b):
    for part in ("model", "audio_encoder", "crop_head", "audio_proj"):
        assert a[part].keys() == b[part].keys()
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), f"{part}.{k} differs"


def _no_time(rows):
    return [{k: v for k, v in r.items() if k != "time_s"} for r in rows]


def test_run_dir_contents(two_epochs):
    for name in ("config.json", "metrics.csv", "curves.png", "last.pt", "best.pt"):
        assert (two_epochs / name).is_file(), name
    assert json.loads((two_epochs / "config.json").read_text())["epochs"] == 2
    lines = (two_epochs / "metrics.csv").read_text().splitlines()
    assert lines[0].startswith("epoch,") and "val_miou" in lines[0] and len(lines) == 3
    ck = _weights(two_epochs)
    assert ck["epoch"] == 2 and ck["step"] == 8 and len(ck["history"]) == 2  # 8 clips / 2 per step


def test_resume_continues_exactly(shards, two_epochs, tmp_path):
    run = tmp_path / "B"
    engine.train(cfg(epochs=1), shards, run, quiet=True)
    engine.train(cfg(epochs=2), shards, run, resume=True, quiet=True)
    a, b = _weights(two_epochs), _weights(run)
    assert _no_time(a["history"]) == _no_time(b["history"])
    _same(a, b)
    assert b["optimizer"]["state"].keys() == a["optimizer"]["state"].keys()


def _metrics_csv(run):
    with open(run / "metrics.csv", newline="") as fh:
        return _no_time(csv.DictReader(fh))


def test_sigterm_saves_and_resume_matches(shards, two_epochs, tmp_path, monkeypatch):
    """SIGTERM during epoch 2 step 2: that step finishes, last.pt is saved, exit; --resume
    then ends with the same weights and the same metrics.csv (the interrupted epoch's train_*
    means included) as the uninterrupted run."""
    run = tmp_path / "C"
    real = system.compute_losses
    calls = {"n": 0}

    def kill_at_step_6(*a, **k):
        calls["n"] += 1
        if calls["n"] == 6:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*a, **k)

    monkeypatch.setattr(system, "compute_losses", kill_at_step_6)
    with pytest.raises(engine.TrainingStopped, match="SIGTERM at epoch 2 step 2"):
        engine.train(cfg(epochs=2), shards, run, quiet=True)
    ck = _weights(run)
    assert (ck["epoch"], ck["batch_in_epoch"], ck["step"]) == (1, 2, 6)
    assert ck["epoch_partial"]["n"].tolist() == [2]  # the loss sums of the 2 steps done in epoch 2
    monkeypatch.setattr(system, "compute_losses", real)
    engine.train(cfg(epochs=2), shards, run, resume=True, quiet=True)
    a, b = _weights(two_epochs), _weights(run)
    _same(a, b)
    assert _no_time(b["history"]) == _no_time(a["history"])
    assert _metrics_csv(run) == _metrics_csv(two_epochs)
    assert b["epoch_partial"] is None  # the finished epoch leaves no partial sums behind


def test_nan_loss_stops_naming_epoch_and_step(shards, tmp_path, monkeypatch):
    real = system.compute_losses
    calls = {"n": 0}

    def nan_at_step_3(*a, **k):
        calls["n"] += 1
        loss, terms = real(*a, **k)
        if calls["n"] == 3:
            return loss * float("nan"), dict(terms, total=float("nan"))
        return loss, terms

    monkeypatch.setattr(system, "compute_losses", nan_at_step_3)
    with pytest.raises(engine.TrainingStopped, match=r"not finite at epoch 1 step 3"):
        engine.train(cfg(epochs=1), shards, tmp_path / "N", quiet=True)


def test_non_empty_run_refused(shards, two_epochs):
    with pytest.raises(OutputExistsError, match="--overwrite"):
        engine.train(cfg(epochs=1), shards, two_epochs, quiet=True)


def test_corrupt_or_foreign_checkpoint_refused(two_epochs, tmp_path):
    data = (two_epochs / "last.pt").read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(IntegrityError, match="cut.pt"):
        checkpoints.load_checkpoint(cut)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, foreign)
    with pytest.raises(IntegrityError, match="foreign.pt.*not an avstrain checkpoint"):
        checkpoints.load_checkpoint(foreign)
    evil = tmp_path / "evil.pt"
    torch.save({"format": checkpoints.CHECKPOINT_FORMAT, "obj": subprocess.Popen}, evil)  # needs unpickling code
    with pytest.raises(IntegrityError, match="evil.pt"):
        checkpoints.load_checkpoint(evil)


def _evaluate_saved(ck: dict, path, shards) -> dict:
    """Val metrics of the model rebuilt from a saved checkpoint, one video per batch on the CPU."""
    from avstrain.data import ShardDataset, make_eval_loader

    model, c = checkpoints.system_from_checkpoint(ck, path)
    return evaluation.evaluate(model, make_eval_loader(ShardDataset(shards, "val"), 1), torch.device("cpu"), c,
                               batch_videos=1)


def test_checkpoint_roundtrip_evaluates_like_training(shards, two_epochs):
    """Rebuilt from last.pt, the model's val metrics equal those logged by the run."""
    ck = checkpoints.load_checkpoint(two_epochs / "last.pt")
    res = _evaluate_saved(ck, two_epochs / "last.pt", shards)
    assert res["miou"] == ck["history"][-1]["val_miou"]
    assert res["fscore"] == ck["history"][-1]["val_fscore"]


def test_frozen_vggish_rebuilt_from_checkpoint_without_weights_file():
    """A checkpoint of a run with the frozen VGGish encoder rebuilds (no weight file on disk):
    same architecture, still frozen and in eval mode, and it computes with the saved weights."""
    from avsprep.audio import VGGish
    from avstrain.models.audio import AudioEncoder

    torch.manual_seed(0)
    c = cfg(audio_encoder="vggish")
    src = system.build_system(c, num_classes=3, has_vggish=False, audio_kind="vggish")
    for p in src.audio_encoder.parameters():
        p.data.uniform_(-0.05, 0.05)  # stands in for the official weights
    ckpt = {"config": c.to_dict(), "num_classes": 3, "audio_kind": "vggish", "model": src.avs.state_dict(),
            **{k: (getattr(src, k).state_dict() if getattr(src, k) is not None else None)
               for k in system.PARTS}}
    model, _ = checkpoints.system_from_checkpoint(ckpt)
    enc = model.audio_encoder
    assert isinstance(enc, AudioEncoder) and enc.kind == "vggish" and isinstance(enc.net, VGGish)
    model.train()
    assert not enc.net.training and not any(p.requires_grad for p in enc.parameters())
    x = torch.rand(2, 1, 96, 64)
    assert torch.equal(enc(x), src.audio_encoder.eval()(x))
    with pytest.raises(ValueError, match="needs its weights file"):
        AudioEncoder("vggish")  # training never gets a random VGGish by accident
    with pytest.raises(ValueError, match="from the checkpoint"):
        AudioEncoder("vggish", weights="vggish.pth", weights_from_checkpoint=True)


def test_ddp_two_processes_equals_single_process(shards, tmp_path):
    """torchrun, 2 CPU processes (gloo): the run completes and its logged validation equals a
    single-process evaluation of the saved checkpoint."""
    run = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1", AVS_NO_PROGRESS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
           "-m", "avstrain", "train", str(shards), "-o", str(run), "--preset", "demo", "--epochs", "1",
           "--set", "channel=16", "--set", "image_size=64", "--batch-size", "2", "--set", "workers=0",
           "--device", "cpu", "--quiet"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ck = checkpoints.load_checkpoint(run / "last.pt")
    assert ck["step"] == 2  # 8 clips / (2 processes x 2 clips)
    res = _evaluate_saved(ck, run / "last.pt", shards)
    assert res["miou"] == ck["history"][-1]["val_miou"]
    assert res["fscore"] == ck["history"][-1]["val_fscore"]


def test_gpu_check_smoke_on_cpu():
    """tools/gpu_check.py runs anywhere at a tiny size and prints one JSON line last."""
    from tests.conftest import REPO

    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "gpu_check.py"), "--device", "cpu", "--steps", "1",
                           "--size", "32", "--clips", "1"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {"metric", "unit", "ours", "baseline", "ratio", "fp32", "tpavi"} <= set(doc)
    assert doc["fp32"]["images_per_s"] > 0 and math.isfinite(doc["fp32"]["loss"])


def test_lr_schedule_is_a_pure_function_of_the_step():
    """constant = the reference recipe; cosine falls from lr to 0 over all steps, so resume continues it."""
    from avstrain.config import TrainConfig
    from avstrain.engine import lr_at

    const = TrainConfig(lr=1e-4)
    assert [lr_at(const, s, 100) for s in (0, 50, 99)] == [1e-4] * 3
    cos = TrainConfig(lr=1e-3, lr_schedule="cosine")
    lrs = [lr_at(cos, s, 100) for s in range(101)]
    assert lrs[0] == pytest.approx(1e-3) and lrs[50] == pytest.approx(5e-4) and lrs[100] == pytest.approx(0.0)
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    bad = TrainConfig(lr_schedule="step")
    with pytest.raises(ValueError, match="lr_schedule"):
        lr_at(bad, 0, 10)
