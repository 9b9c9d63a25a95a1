"""Feature: painting predictions and GT outlines on frames (avstrain.overlays), predict --overlay."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from avstrain.cli import cli
from avstrain.overlays import GT_RGB, PRED_ALPHA, PRED_RGB, hstack, logmel_image, outline, overlay, paint_mask, vstack
from tests.report_helpers import random_checkpoint


def test_outline_of_a_square_is_its_border():
    m = np.zeros((8, 8), np.uint8)
    m[2:6, 2:6] = 1
    edge = outline(m)
    assert edge.sum() == 12 and edge[2, 2] and edge[5, 3] and not edge[3, 3] and not edge[0, 0]
    assert outline(m, width=2).sum() == 16  # a 4x4 square is all border at width 2
    full = np.ones((4, 4), bool)
    assert outline(full).sum() == 12  # image borders count as outside


def test_paint_blends_only_inside_the_mask():
    frame = np.full((4, 4, 3), 100, np.uint8)
    mask = np.zeros((4, 4), bool)
    mask[1, 1] = True
    out = paint_mask(frame, mask)
    expect = np.round(100 * (1 - PRED_ALPHA) + np.array(PRED_RGB) * PRED_ALPHA)
    assert out[1, 1].tolist() == expect.tolist() and out[0, 0].tolist() == [100, 100, 100]
    assert frame[1, 1].tolist() == [100, 100, 100]  # input untouched
    with pytest.raises(ValueError, match="does not match"):
        paint_mask(frame, np.zeros((3, 3), bool))


def test_overlay_draws_gt_outline_over_the_prediction():
    frame = np.zeros((10, 10, 3), np.uint8)
    gt = np.zeros((10, 10), bool)
    gt[3:7, 3:7] = True
    out = overlay(frame, gt, gt, width=1)
    assert out[3, 3].tolist() == list(GT_RGB) and out[4, 4].tolist() != list(GT_RGB) and out[4, 4].any()
    assert overlay(frame, gt)[3, 3].tolist() != list(GT_RGB)  # no GT, no outline


def test_strips_and_logmel_shapes():
    a, b = np.zeros((5, 3, 3), np.uint8), np.zeros((5, 4, 3), np.uint8)
    assert hstack([a, b], gap=2).shape == (5, 9, 3)
    assert vstack([a, b], gap=1).shape == (11, 4, 3)
    img = logmel_image(np.random.default_rng(0).normal(size=(5, 96, 64)), height=64)
    assert img.shape == (64, 480, 3) and img.dtype == np.uint8
    ramp = np.tile(np.arange(64, dtype=np.float32), (1, 96, 1))  # louder at high mel bins
    col = logmel_image(ramp, height=64)[:, 0].astype(int).sum(axis=1)
    assert col[0] != col[-1]  # high frequencies at the top differ from the bottom


def test_predict_overlay_writes_painted_frames(tmp_path_factory, tmp_path):
    checkpoint, shards = random_checkpoint(tmp_path_factory.getbasetemp())
    out = tmp_path / "pred"
    res = CliRunner().invoke(cli, ["predict", str(checkpoint), str(shards), "-o", str(out), "--overlay",
                                   "--device", "cpu", "--quiet"])
    assert res.exit_code == 0, res.output
    masks = sorted((out / "test").rglob("*.png"))
    overlays = sorted((out / "overlays" / "test").rglob("*.png"))
    assert len(masks) == len(overlays) == 10
    assert [p.relative_to(out / "overlays") for p in overlays] == [p.relative_to(out) for p in masks]
    mask = np.asarray(Image.open(masks[0]))
    img = np.asarray(Image.open(overlays[0]))
    assert img.shape == mask.shape + (3,)
    assert 0 < (mask > 0).mean() < 1
    assert (img == np.array(GT_RGB, np.uint8)).all(axis=2).any()  # test frames have GT: outline drawn
    assert "overlays" in res.output
