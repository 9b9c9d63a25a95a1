"""Feature: painting predictions and GT outlines on frames (avstrain.overlays), predict --overlay."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from avstrain.cli import cli
from avstrain.overlays import (GT_INNER_RGB, GT_RGB, PRED_ALPHA, PRED_RGB, TINT_ALPHA, hstack, logmel_image, outline,
                               overlay, paint_mask, stripes, vstack)
from tests.helpers.report import random_checkpoint


def test_outline_of_a_square_is_its_border():
    m = np.zeros((8, 8), np.uint8)
    m[2:6, 2:6] = 1
    edge = outline(m)
    assert edge.sum() == 12 and edge[2, 2] and edge[5, 3] and not edge[3, 3] and not edge[0, 0]
    assert outline(m, width=2).sum() == 16  # a 4x4 square is all border at width 2
    full = np.ones((4, 4), bool)
    assert outline(full).sum() == 12  # image borders count as outside


def test_paint_stripes_tints_and_outlines_only_inside_the_mask():
    frame = np.full((12, 12, 3), 100, np.uint8)
    mask = np.zeros((12, 12), bool)
    mask[2:10, 2:10] = True
    out = paint_mask(frame, mask)
    on = stripes(mask.shape)
    stripe = np.round(100 * (1 - PRED_ALPHA) + np.array(PRED_RGB) * PRED_ALPHA).tolist()
    tint = np.round(100 * (1 - TINT_ALPHA) + np.array(PRED_RGB) * TINT_ALPHA).tolist()
    inner = mask & ~outline(mask)
    assert all(out[y, x].tolist() == (stripe if on[y, x] else tint) for y, x in zip(*np.nonzero(inner)))
    assert (out[outline(mask)] == PRED_RGB).all()
    assert (out[~mask] == 100).all() and (frame == 100).all()  # outside and input untouched
    with pytest.raises(ValueError, match="does not match"):
        paint_mask(frame, np.zeros((3, 3), bool))


def test_overlay_draws_gt_outline_over_the_prediction():
    frame = np.zeros((10, 10, 3), np.uint8)
    gt = np.zeros((10, 10), bool)
    gt[2:9, 2:9] = True
    out = overlay(frame, gt, gt, width=2)
    assert out[2, 2].tolist() == list(GT_RGB) and out[3, 3].tolist() == list(GT_INNER_RGB)
    assert out[5, 5].any() and out[5, 5].tolist() != list(GT_RGB)  # inside: the prediction's paint
    assert overlay(frame, gt)[2, 2].tolist() != list(GT_RGB)  # no GT, no outline


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
