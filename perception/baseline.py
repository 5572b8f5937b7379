"""A classical lane finder: Canny edges and a probabilistic Hough transform.

The pipeline of the usual lane-finding demo, as a floor for the learnt model to beat: grey
image, Gaussian blur, Canny, a trapezoid region of interest below the horizon, HoughLinesP;
segments that slope the way a lane line left (right) of the image centre slopes are kept
(near-horizontal ones rejected), grouped by where their line meets the bottom row, and each
group becomes a straight line x = a * y + b fitted by least squares (weighted by segment
length). The group nearest the centre on each side is ego_left / ego_right, the next one
outer_left / outer_right. Straight lines only: the baseline is expected to fail on curves.
The work happens on an image scaled to WORK_WIDTH pixels wide (about 3 ms a frame).
"""

from __future__ import annotations

import cv2
import numpy as np

from serving.contract import LANE_SLOTS
from serving.geometry import Calib
from serving.postprocess import NO_POINT, Detections, FramePrediction, Lanes

WORK_WIDTH = 640  # px: processing width (images are scaled down to it)
HORIZON_MARGIN = 0.03  # fraction of the height below the horizon where the ROI starts
MIN_ANGLE_DEG = 20.0  # segments flatter than this (from the horizontal) are rejected
MAX_ANGLE_DEG = 80.0  # and steeper ones (poles, box edges near the vanishing point)
GROUP_GAP = 0.12  # fraction of the width: bottom-row x gap that separates two lane lines


def _edges(grey: np.ndarray, top: int) -> np.ndarray:
    """Canny edges of the blurred image inside the trapezoid from row ``top`` down."""
    h, w = grey.shape
    edges = cv2.Canny(cv2.GaussianBlur(grey, (5, 5), 0), 50, 150)
    roi = np.zeros_like(edges)
    poly = np.array([[0, h - 1], [int(w * 0.3), top], [int(w * 0.7), top], [w - 1, h - 1]])
    cv2.fillPoly(roi, [poly.astype(np.int32)], 255)
    return cv2.bitwise_and(edges, roi)


def _segments(edges: np.ndarray) -> np.ndarray:
    """float64[N, 4] x1 y1 x2 y2 pixels: Hough segments between MIN_ANGLE_DEG and
    MAX_ANGLE_DEG from the horizontal."""
    h = edges.shape[0]
    lines = cv2.HoughLinesP(
        edges,
        2,
        np.pi / 180,
        threshold=20,
        minLineLength=max(h // 24, 5),
        maxLineGap=max(h // 18, 3),
    )
    if lines is None:
        return np.zeros((0, 4))
    seg = lines.reshape(-1, 4).astype(np.float64)
    dx, dy = seg[:, 2] - seg[:, 0], seg[:, 3] - seg[:, 1]
    steep = np.abs(dy) >= np.tan(np.radians(MIN_ANGLE_DEG)) * np.abs(dx)
    upright = np.abs(dy) > np.tan(np.radians(MAX_ANGLE_DEG)) * np.abs(dx)
    return seg[steep & ~upright]


def _groups(seg: np.ndarray, h: int, w: int) -> list[np.ndarray]:
    """Segments grouped by their line's x at the bottom row, nearest the centre first."""
    slope = (seg[:, 2] - seg[:, 0]) / (seg[:, 3] - seg[:, 1])  # dx / dy
    x_bottom = seg[:, 0] + slope * (h - 1 - seg[:, 1])
    order = np.argsort(np.abs(x_bottom - w / 2.0))
    groups: list[list[int]] = []
    for i in order:
        for g in groups:
            if abs(np.median(x_bottom[g]) - x_bottom[i]) < GROUP_GAP * w:
                g.append(int(i))
                break
        else:
            groups.append([int(i)])
    return [seg[g] for g in groups]


def _fit(seg: np.ndarray) -> tuple[float, float, float]:
    """Weighted least-squares x = a * y + b through the segments' end points (weights: the
    segment length); returns (a, b, top row of the segments)."""
    length = np.hypot(seg[:, 2] - seg[:, 0], seg[:, 3] - seg[:, 1])
    ys = np.concatenate([seg[:, 1], seg[:, 3]])
    xs = np.concatenate([seg[:, 0], seg[:, 2]])
    wts = np.sqrt(np.concatenate([length, length]))  # polyfit squares the weights
    a, b = np.polyfit(ys, xs, 1, w=wts)
    return float(a), float(b), float(ys.min())


def _side_lines(seg: np.ndarray, h: int, w: int) -> dict[str, tuple[float, float, float]]:
    """Lines per slot: left segments lean right going up (dx/dy < 0) and sit left of the
    centre, right ones the mirror image."""
    slope = (seg[:, 2] - seg[:, 0]) / (seg[:, 3] - seg[:, 1])
    mid = (seg[:, 0] + seg[:, 2]) / 2.0
    out = {}
    for names, mask in (
        (("ego_left", "outer_left"), (slope < 0) & (mid < w / 2.0)),
        (("ego_right", "outer_right"), (slope > 0) & (mid >= w / 2.0)),
    ):
        if mask.any():
            for name, group in zip(names, _groups(seg[mask], h, w), strict=False):
                out[name] = _fit(group)
    return out


class HoughBaseline:
    """Predictor: frame -> FramePrediction with lanes only (no detections)."""

    name = "baseline"
    detects = False  # lanes only: evaluation reports its detection metrics as null

    def __call__(self, frame_bgr: np.ndarray, calib: Calib, rows: np.ndarray) -> FramePrediction:
        """frame uint8[H, W, 3] BGR; rows float32[R] source-image rows -> Lanes xs
        float32[4, R] source pixels (NO_POINT above the horizon margin, below the image, out
        of its width or above the topmost edge segment of the lane), exist 1/0."""
        h0, w0 = frame_bgr.shape[:2]
        s = min(WORK_WIDTH / w0, 1.0)
        small = cv2.resize(frame_bgr, (round(w0 * s), round(h0 * s)), interpolation=cv2.INTER_AREA)
        grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        h, w = grey.shape
        top = int(np.clip((calib.horizon_v + HORIZON_MARGIN * h0) * s, 0, h - 2))
        lines = _side_lines(_segments(_edges(grey, top)), h, w)
        rows = np.asarray(rows, np.float32)
        xs = np.full((len(LANE_SLOTS), len(rows)), NO_POINT, np.float32)
        exist = np.zeros(len(LANE_SLOTS), np.float32)
        for name, (a, b, seg_top) in lines.items():
            k = LANE_SLOTS.index(name)
            x = (a * rows * s + b) / s
            ok = (rows >= max(top, seg_top) / s) & (rows <= h0 - 1) & (x >= 0) & (x <= w0 - 1)
            xs[k] = np.where(ok, x, NO_POINT)
            exist[k] = float(ok.sum() >= 2)
        lanes = Lanes(xs, rows, exist)
        return FramePrediction(lanes, Detections())
