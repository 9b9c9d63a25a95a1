"""Tiny shards and a tiny training config for the avstrain tests (CPU, seconds per epoch)."""

from __future__ import annotations

from pathlib import Path

# demo preset shrunk for tests: 64 px model input, narrow neck, 2 clips per step, no workers
TINY = ["--preset", "demo", "--set", "channel=16", "--set", "image_size=64", "--batch-size", "2",
        "--set", "workers=0", "--quiet"]
TINY_OVERRIDES = {"channel": 16, "image_size": 64, "batch_size": 2, "workers": 0}


def tiny_shards(base: Path) -> Path:
    """Demo dataset (12 clips: 8 train / 2 val / 2 test) built into shards with 32 px crops,
    once per test session (``base`` is the session's basetemp)."""
    from avsprep.importer import run_import
    from avsprep.build import BuildOptions, build_shards
    from avsprep.demo import write_demo

    out = base / "avstrain-shards"
    if (out / "manifest.json").is_file():
        return out
    root = base / "avstrain-demo"
    if not (root / "s4_meta_data.csv").is_file():
        write_demo(root, clips=12, seed=0, quiet=True)
    run_import(root, base / "avstrain-boxes.csv", quiet=True)
    build_shards(base / "avstrain-boxes.csv", root, out, BuildOptions(crop_size=32), quiet=True)
    return out


def untrained_checkpoint(path: Path, preset: str, classes: list) -> Path:
    """An untrained tiny checkpoint of ``preset`` for a dataset of ``classes`` (seconds, no
    training): for the tests that only need a model of a task, e.g. the task-mismatch refusals."""
    import torch

    from avstrain.checkpoints import save_checkpoint
    from avstrain.config import resolve_config
    from avstrain.system import build_system

    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    cfg = resolve_config(preset, None, {**TINY_OVERRIDES, "device": "cpu"})
    torch.manual_seed(0)
    model = build_system(cfg, num_classes=len(classes), has_vggish=False)
    save_checkpoint(path, model, None, cfg, epoch=1, step=1, classes=list(classes))
    return path
