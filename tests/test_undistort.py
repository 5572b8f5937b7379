"""Lens distortion: the closed-form model against OpenCV, the fused undistorting
preprocessing against the plain kernel and against cv2.undistort + resize, and model
outputs mapped back onto the distorted image."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from serving.contract import ModelContract
from serving.geometry import Calib
from serving.postprocess import NO_POINT, Detections, FramePrediction, Lanes
from serving.preprocess import Preprocessor
from serving.undistort import (
    UndistortingPreprocessor,
    _to_chw_mapped,
    distort_boxes,
    distort_prediction,
    sampling_map,
)

# about the real set's camera: strong barrel distortion at the edges
LENS = Calib(1280, 720, 1150.0, 1150.0, 665.0, 390.0, 1.25, 0.03,
             dist=(-0.24, -0.05, -0.001, 0.0002, 0.03))  # fmt: skip
PINHOLE = Calib(1280, 720, 1150.0, 1150.0, 665.0, 390.0, 1.25, 0.03)


def _frame(seed: int = 0) -> np.ndarray:
    """A 1280x720 BGR frame with smooth gradients and some texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:720, 0:1280]
    img = np.stack([xx * 0.19, yy * 0.33, (xx + yy) * 0.12], axis=-1)
    img += rng.normal(0.0, 8.0, img.shape)
    return np.clip(cv2.GaussianBlur(img, (0, 0), 2.0), 0, 255).astype(np.uint8)


def _undistort_points(calib: Calib, uv: np.ndarray) -> np.ndarray:
    pts = np.asarray(uv, np.float64).reshape(-1, 1, 2)
    return cv2.undistortPoints(pts, calib.K, np.array(calib.dist), P=calib.K).reshape(-1, 2)


def test_distort_pixels_is_opencvs_model():
    uv = np.array([[0.0, 0.0], [665.0, 390.0], [1279.0, 719.0], [100.0, 600.0]])
    n = np.concatenate([(uv - [665.0, 390.0]) / 1150.0, np.ones((4, 1))], axis=1)
    ref, _ = cv2.projectPoints(n, np.zeros(3), np.zeros(3), LENS.K, np.array(LENS.dist))
    np.testing.assert_allclose(LENS.distort_pixels(uv), ref.reshape(-1, 2), atol=1e-9)
    # the principal point does not move; a corner moves inwards (barrel)
    assert LENS.distort_pixels(uv)[1] == pytest.approx([665.0, 390.0])
    assert (LENS.distort_pixels(uv)[0] > 0.0).all()
    np.testing.assert_array_equal(PINHOLE.distort_pixels(uv), uv)


def test_calib_dist_round_trip_and_old_files():
    d = LENS.to_dict()
    assert d["dist"] == list(LENS.dist)
    assert Calib.from_dict(d) == LENS
    # no distortion: the field is left out, so older files and simulated clips keep bytes
    assert "dist" not in PINHOLE.to_dict() and Calib.from_dict(PINHOLE.to_dict()) == PINHOLE
    assert not PINHOLE.has_distortion and LENS.has_distortion
    assert LENS.scaled(640, 360).dist == LENS.dist
    for bad in ([0.1, 0.2], "k1", [0.1, 0, 0, 0, float("nan")]):
        with pytest.raises(ValueError, match="dist"):
            Calib.from_dict({**d, "dist": bad})


def test_mapped_kernel_without_distortion_matches_the_plain_resize():
    """With zero coefficients the map samples the plain resize's points: the outputs agree
    to the plain path's rounding to whole grey levels (after OpenCV's 11-bit weights)."""
    c = ModelContract()
    img = _frame()
    plain = Preprocessor(c)(img).copy()
    pre = Preprocessor(c)
    m = sampling_map(PINHOLE, 1280, 720, c.input_width, c.input_height)
    out = np.empty_like(plain)
    order = np.array([2, 1, 0])
    _to_chw_mapped(img, out[0], order, pre.scale, pre.bias, m.x0, m.y0, m.fx, m.fy)
    grey_level = 1.0 / min(c.std)
    assert np.abs(out - plain).max() < grey_level


def test_undistorting_preprocessor_matches_cv2_undistort_then_resize():
    c = ModelContract()
    img = _frame(1)
    ref = Preprocessor(c)(cv2.undistort(img, LENS.K, np.array(LENS.dist))).copy()
    pre = UndistortingPreprocessor(c, LENS)
    out = pre(img)
    # two resamplings (remap, then resize) against one: close, not equal
    diff = np.abs(out - ref)[:, :, 8:-8, 8:-8] * min(c.std)  # grey levels, borders aside
    assert diff.mean() < 1.0 and np.percentile(diff, 99) < 4.0
    # the map is built once per source size and calibration
    assert len(pre._maps) == 1
    pre(img)
    assert len(pre._maps) == 1
    # no distortion: exactly the plain path
    pre.calib = PINHOLE
    np.testing.assert_array_equal(pre(img), Preprocessor(c)(img))


def test_distort_prediction_puts_lanes_and_boxes_on_the_lens_image():
    rows = np.arange(160.0, 720.0, 10.0, dtype=np.float32)
    xs = np.full((4, len(rows)), NO_POINT, np.float32)
    xs[0, 20:] = 640.0 - (rows[20:] - 360.0) * 1.2  # a straight line in the pinhole image
    xs[1, 10:20] = 900.0  # a short vertical line, a gap, then more of it
    xs[1, 25:40] = 900.0
    boxes = np.array([[100.0, 400.0, 300.0, 600.0], [600.0, 380.0, 700.0, 450.0]], np.float32)
    pred = FramePrediction(
        Lanes(xs, rows, np.ones(4, np.float32)),
        Detections(boxes, np.array([0.9, 0.8], np.float32), np.array([0, 1], np.int32)),
    )
    out = distort_prediction(pred, LENS)
    assert out.lanes.rows is pred.lanes.rows and out.lanes.xs.shape == xs.shape
    # every mapped point, undistorted again, lies on the original line (within 0.3 px)
    ok = out.lanes.xs[0] != NO_POINT
    assert ok.sum() >= 30
    back = _undistort_points(LENS, np.stack([out.lanes.xs[0][ok], rows[ok]], axis=1))
    np.testing.assert_allclose(back[:, 0], 640.0 - (back[:, 1] - 360.0) * 1.2, atol=0.3)
    # the gap between the two runs of lane 1 stays a gap; absent lanes stay absent
    assert (out.lanes.xs[1][21:24] == NO_POINT).all() and (out.lanes.xs[2] == NO_POINT).all()
    # boxes enclose the distorted corners, scores and classes are kept
    corners = np.array([[100.0, 400.0], [300.0, 400.0], [100.0, 600.0], [300.0, 600.0]])
    d = LENS.distort_pixels(corners)
    b = out.detections.boxes[0]
    assert (b[0] <= d[:, 0].min() + 1e-3) and (b[2] >= d[:, 0].max() - 1e-3)
    assert (b[1] <= d[:, 1].min() + 1e-3) and (b[3] >= d[:, 1].max() - 1e-3)
    assert out.detections.scores is pred.detections.scores
    # without distortion nothing moves
    assert distort_prediction(pred, PINHOLE) is pred
    np.testing.assert_allclose(distort_boxes(boxes, PINHOLE), boxes)
    assert distort_boxes(np.zeros((0, 4), np.float32), LENS).shape == (0, 4)
