"""Feature: box -> crop rectangle -> resized crop (avsprep.build.crops)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from avsprep.build.crops import clamp_boxes, crop_and_resize, crop_rect, rescale_boxes, select_box

BOXES = [[10, 10, 20, 20],      # area 100
         [0, 0, 50, 40],        # area 2000 (largest)
         [100, 90, 110, 200]]   # area 1100


def test_select_largest_union_first():
    assert select_box(BOXES, "largest") == (0, 0, 50, 40)
    assert select_box(BOXES, "union") == (0, 0, 110, 200)
    assert select_box(BOXES, "first") == (10, 10, 20, 20)


def test_select_largest_ties_take_the_first():
    assert select_box([[0, 0, 10, 10], [5, 5, 15, 15]], "largest") == (0, 0, 10, 10)


def test_select_ignores_nan_rows_and_empty_gives_none():
    nan = float("nan")
    assert select_box([[nan, nan, nan, nan], [1, 2, 3, 4]], "first") == (1, 2, 3, 4)
    assert select_box([[nan, nan, nan, nan]], "largest") is None
    assert select_box(np.zeros((0, 4)), "union") is None


def test_select_unknown_policy():
    with pytest.raises(ValueError, match="largest"):
        select_box(BOXES, "biggest")


def test_crop_rect_rounds_outwards_and_clamps():
    assert crop_rect((10.4, 20.6, 30.2, 40.0), 224, 224) == (10, 20, 31, 40)
    assert crop_rect((-15, -3, 300, 250), 224, 200) == (0, 0, 224, 200)


def test_crop_rect_degenerate_and_outside_boxes_give_one_pixel():
    assert crop_rect((50, 60, 50, 60), 224, 224) == (50, 60, 51, 61)
    assert crop_rect((500, 500, 600, 600), 224, 224) == (223, 223, 224, 224)
    assert crop_rect((-50, -50, -10, -10), 224, 224) == (0, 0, 1, 1)
    # swapped corners are put in order
    assert crop_rect((30, 40, 10, 20), 224, 224) == (10, 20, 30, 40)


@settings(max_examples=200, deadline=None)
@given(st.tuples(*[st.floats(-1e4, 1e4, allow_nan=False)] * 4),
       st.integers(1, 500), st.integers(1, 500))
def test_crop_rect_always_inside_and_nonempty(box, w, h):
    x0, y0, x1, y1 = crop_rect(box, w, h)
    assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h


def test_crop_and_resize_matches_pil_bilinear():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    out = crop_and_resize(frame, (10.2, 5.0, 70.0, 65.5), 32)
    ref = np.asarray(Image.fromarray(frame[5:66, 10:70]).resize((32, 32), Image.BILINEAR))
    assert out.dtype == np.uint8 and out.shape == (32, 32, 3)
    np.testing.assert_array_equal(out, ref)


def test_crop_and_resize_single_pixel_is_constant():
    frame = np.zeros((50, 50, 3), np.uint8)
    frame[7, 9] = (200, 100, 50)
    out = crop_and_resize(frame, (9, 7, 9, 7), 16)
    assert (out == np.array([200, 100, 50], np.uint8)).all()


def test_crop_and_resize_rejects_bad_frames():
    with pytest.raises(ValueError, match="uint8"):
        crop_and_resize(np.zeros((10, 10), np.uint8), (0, 0, 5, 5), 8)


def test_rescale_boxes_by_real_over_xml_size():
    out = rescale_boxes([[100, 50, 200, 150]], 448, 448, 224, 224)
    np.testing.assert_allclose(out, [[50, 25, 100, 75]])
    # zero size (labelImg's undecodable image): unchanged
    np.testing.assert_allclose(rescale_boxes([[1, 2, 3, 4]], 0, 0, 224, 224), [[1, 2, 3, 4]])
    np.testing.assert_allclose(rescale_boxes([[1, 2, 3, 4]], math.nan, 10, 224, 224), [[1, 2, 3, 4]])


def test_clamp_boxes_keeps_nan_rows():
    out = clamp_boxes([[-5, 10, 300, 230], [math.nan] * 4], 224, 224)
    np.testing.assert_allclose(out[0], [0, 10, 224, 224])
    assert np.isnan(out[1]).all()


def test_box_iou():
    from avsprep.build.crops import box_iou

    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == 50 / 150
    assert box_iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    assert box_iou((3, 3, 3, 3), (3, 3, 3, 3)) == 0.0  # empty union
