"""Smoke tests of tools/bench_train.py and the floor of tools/bench_build.py (no timings asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "tools"))
import bench_build  # noqa: E402

ENV = dict(os.environ, OMP_NUM_THREADS="1", AVS_NO_PROGRESS="1",
           PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))


def test_build_floor_script_reads_every_clip(demo_root, tmp_path):
    from avsprep.importer import run_import

    table = tmp_path / "boxes.csv"
    run_import(demo_root, table, quiet=True)
    res = subprocess.run([sys.executable, "-c", bench_build.FLOOR, str(demo_root), str(table)], env=ENV,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    bad = subprocess.run([sys.executable, "-c", bench_build.FLOOR, str(tmp_path / "nowhere"), str(table)],
                         env=ENV, capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0  # it really opens the dataset


@pytest.mark.slow
def test_bench_train_variants_compute_the_same_step():
    """Ours (factorised TPAVI) and the reference (N x N TPAVI) start from the same weights and input,
    so their first losses agree; the JSON line carries the bench keys."""
    res = subprocess.run([sys.executable, str(REPO / "tools" / "bench_train.py"), "--device", "cpu", "--size", "32",
                          "--steps", "1", "--warmup", "1"], env=ENV, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-2000:]
    doc = json.loads(res.stdout.strip().splitlines()[-1])
    assert {"metric", "unit", "ours", "baseline", "ratio", "cpu_ours_peak_mib", "cpu_reference_peak_mib"} <= set(doc)
    assert doc["ours"] > 0 and doc["baseline"] > 0
    assert doc["cpu_ours_first_loss"] == pytest.approx(doc["cpu_reference_first_loss"], rel=1e-5)


def test_bench_extract_runs_and_checks_equal_wavs():
    pytest.importorskip("imageio_ffmpeg")
    res = subprocess.run([sys.executable, str(REPO / "tools" / "bench_extract.py"), "--rounds", "1"], env=ENV,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    doc = json.loads(res.stdout.strip().splitlines()[-1])
    assert {"metric", "unit", "ours", "baseline", "ratio"} <= set(doc)
    assert doc["ours"] > 0 and doc["baseline"] > 0


@pytest.mark.slow
def test_bench_segment_runs_on_a_tiny_video(tmp_path):
    """tools/bench_segment.py on a 2-s 64 px clip with a tone (no timing asserted)."""
    from fractions import Fraction

    import numpy as np

    from avstrain.segment.video import VideoWriter

    clip = tmp_path / "tiny.mp4"
    w = VideoWriter(clip, 64, 64, Fraction(10), 16000)
    for i in range(20):
        w.frame(np.full((64, 64, 3), 10 * i, np.uint8))
    t = np.arange(32000) / 16000
    tone = (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    w.audio(np.stack([tone, tone], axis=1))
    w.close()
    res = subprocess.run([sys.executable, str(REPO / "tools" / "bench_segment.py"), "--rounds", "1", str(clip)],
                         env=ENV, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    doc = json.loads(res.stdout.strip().splitlines()[-1])
    assert {"metric", "unit", "ours", "baseline", "ratio"} <= set(doc)
    assert doc["ours"] > 0 and doc["baseline"] > 0 and doc["video"] == "tiny.mp4"
