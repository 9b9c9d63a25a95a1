"""Feature: `avstrain ablate` (issue 18, Build 4): every configuration on every seed, finished
runs skipped, each run's config checked against the one asked for, one table + one JSON with
means, CIs and the paired difference vs the baseline; the distractor rate on the distractor demo."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from avstrain import ablation
from avstrain.cli import cli
from avstrain.config import ConfigError

COMMON = ["--set", "channel=16", "--set", "image_size=64", "--set", "batch_size=2", "--set", "workers=0",
          "--set", "epochs=1", "--set", "max_steps_per_epoch=2", "--set", "device=cpu"]


@pytest.fixture(scope="module")
def distractor_shards(tmp_path_factory):
    from avsprep.build import BuildOptions, build_shards
    from avsprep.demo import write_demo
    from avsprep.importer import run_import

    base = tmp_path_factory.mktemp("dis")
    write_demo(base / "demo", clips=12, seed=0, quiet=True, distractor=True)
    run_import(base / "demo", base / "boxes.csv", quiet=True)
    build_shards(base / "boxes.csv", base / "demo", base / "shards", BuildOptions(crop_size=32), quiet=True)
    return base


def test_parse_config():
    spec = ablation.parse_config("shared=demo, crop_encoder=segmentation,w_ce=0.5")
    assert spec == ablation.ConfigSpec("shared", "demo", (("crop_encoder", "segmentation"), ("w_ce", "0.5")))
    for bad in ("demo", "=demo", "x=demo,w_ce"):
        with pytest.raises(ConfigError):
            ablation.parse_config(bad)


def test_mean_ci_and_paired_bootstrap():
    ci = ablation.mean_ci([0.5, 0.6, 0.7])
    assert ci["mean"] == pytest.approx(0.6) and ci["lo"] < 0.6 < ci["hi"]
    assert ci["hi"] - 0.6 == pytest.approx(4.302653 * 0.1 / np.sqrt(3), rel=1e-5)  # t(0.975, 2) * s / sqrt(n)
    assert ablation.mean_ci([0.4])["lo"] is None
    same = ablation.paired_bootstrap(np.full((3, 10), 0.2))
    assert same["lo"] == same["hi"] == pytest.approx(0.2)
    noisy = ablation.paired_bootstrap(np.random.default_rng(0).normal(0.0, 1.0, (3, 50)))
    assert noisy["lo"] < noisy["mean"] < noisy["hi"]


def test_config_mismatch_is_named():
    wanted = ablation.wanted_config(ablation.parse_config("a=demo,w_ce=0"), 1, {})
    saved = dict(wanted.to_dict(), w_ce=1.0, device="cuda")
    assert ablation.config_mismatches(saved, wanted) == ["w_ce: asked 0.0, run has 1.0"]


def test_ablate_end_to_end_then_skips(distractor_shards, caplog):
    base = distractor_shards
    out = base / "abl"
    args = ["ablate", str(base / "shards"), "-o", str(out), "--seeds", "0,1", *COMMON,
            "--config", "baseline=demo,crop_head=false,w_ce=0,w_pairwise=0,w_audio=0",
            "--config", "shared=demo,crop_encoder=segmentation",
            "--distractor-masks", str(base / "demo" / "distractor_masks" / "test")]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "ablation.json").read_text())
    assert doc["baseline"] == "baseline" and doc["seeds"] == [0, 1]
    for name in ("baseline", "shared"):
        c = doc["configs"][name]
        assert c["seeds"] == [0, 1] and c["miou"]["n"] == 2
        assert 0.0 <= c["distractor_rate_zero"]["mean"] <= 1.0
        for seed in (0, 1):
            run_cfg = json.loads((out / name / f"seed{seed}" / "config.json").read_text())
            assert run_cfg["seed"] == seed and run_cfg["epochs"] == 1
    assert json.loads((out / "shared" / "seed0" / "config.json").read_text())["crop_encoder"] == "segmentation"
    assert json.loads((out / "baseline" / "seed1" / "config.json").read_text())["crop_head"] is False
    diff = doc["vs_baseline_miou_per_clip"]["shared"]
    assert diff["seeds"] == 2 and diff["clips"] == 2 and diff["lo"] <= diff["mean"] <= diff["hi"]
    assert "| shared | 2 |" in (out / "ablation.md").read_text() and "| shared | 2 |" in res.output

    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("eval.json")}
    caplog.clear()
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert {p: p.stat().st_mtime_ns for p in out.rglob("eval.json")} == stamps  # nothing re-run
    assert caplog.text.count("skip ") == 4
    assert json.loads((out / "ablation.json").read_text())["configs"] == doc["configs"]

    # a run whose resolved config is not the one asked for is refused, naming the key
    p = out / "shared" / "seed1" / "config.json"
    p.write_text(json.dumps(dict(json.loads(p.read_text()), w_pairwise=0.25)))
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 1 and "w_pairwise: asked 1.0, run has 0.25" in res.output


@pytest.mark.slow
def test_ablate_under_torchrun_two_processes(distractor_shards, tmp_path):
    """The multi-process path: `torchrun --nproc_per_node 2 -m avstrain ablate` trains each run
    with DDP on both ranks, rank 0 alone evaluates and writes; a rerun skips every run."""
    import os
    import subprocess
    import sys

    base = distractor_shards
    out = tmp_path / "abl"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "avstrain", "ablate", str(base / "shards"), "-o", str(out), "--seeds", "0", *COMMON,
           "--config", "baseline=demo,crop_head=false,w_ce=0,w_pairwise=0,w_audio=0",
           "--config", "literal=demo", "--distractor-masks", str(base / "demo" / "distractor_masks" / "test")]
    env = dict(os.environ, OMP_NUM_THREADS="1", AVS_NO_PROGRESS="1")
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    doc = json.loads((out / "ablation.json").read_text())
    assert set(doc["configs"]) == {"baseline", "literal"}
    for name in ("baseline", "literal"):
        run = out / name / "seed0"
        assert (run / "eval.json").is_file() and (run / "best.pt").is_file()
        assert json.loads((run / "config.json").read_text())["seed"] == 0
        assert "2 process(es)" in res.stdout + res.stderr
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("eval.json")}
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert {p: p.stat().st_mtime_ns for p in out.rglob("eval.json")} == stamps
    assert (again.stdout + again.stderr).count("skip ") >= 2
