"""Demo overlay drawing (serving.overlay): what is drawn lands where it belongs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import pytest

from serving import overlay
from serving.contract import CLASS_NAMES, LANE_SLOTS
from serving.overlay import RED
from serving.postprocess import NO_POINT, Detections, FramePrediction, Lanes

ROWS = np.arange(160, 720, 10, dtype=np.float32)


def draw(img: np.ndarray, *args: Any) -> None:
    """serving.overlay.draw with the default contract's lane slots and class names."""
    overlay.draw(img, *args, lane_slots=LANE_SLOTS, class_names=CLASS_NAMES)


@dataclass
class Track:
    box: np.ndarray
    cls: int
    track_id: int
    distance_m: float | None
    ttc_s: float | None
    in_ego_lane: bool


@dataclass
class LaneGeo:
    offset_m: float
    curvature_1pm: float
    valid: bool


@dataclass
class Warnings:
    fcw: bool
    fcw_track_id: int | None
    fcw_ttc_s: float | None
    ldw: str | None


def prediction(w: int = 1280, h: int = 720, n_boxes: int = 3) -> FramePrediction:
    """Four straight lanes in the lower 3/4 (rows scaled to h) and n_boxes boxes on a row."""
    rows = ROWS * h / 720
    xs = np.full((4, len(rows)), NO_POINT, np.float32)
    for lane, x in enumerate((0.4, 0.6, 0.2, 0.8)):
        xs[lane, 10:] = x * w
    boxes = np.array(
        [[(0.1 + 0.08 * i) * w, 0.45 * h, (0.15 + 0.08 * i) * w, 0.55 * h] for i in range(n_boxes)],
        np.float32,
    ).reshape(-1, 4)
    det = Detections(
        boxes, np.full(n_boxes, 0.9, np.float32), np.arange(n_boxes, dtype=np.int32) % 4
    )
    return FramePrediction(Lanes(xs, rows, np.ones(4, np.float32)), det)


def empty_prediction(h: int = 720) -> FramePrediction:
    xs = np.full((4, len(ROWS)), NO_POINT, np.float32)
    return FramePrediction(Lanes(xs, ROWS * h / 720, np.zeros(4, np.float32)), Detections())


def changed(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    diff = after.astype(np.int16) - before.astype(np.int16)
    return np.abs(diff).reshape(*after.shape[:2], -1).max(axis=2) > 0


def test_lanes_and_boxes_are_drawn_where_they_are() -> None:
    img = np.zeros((720, 1280, 3), np.uint8)
    pred = prediction()
    draw(img, pred, None, None, None, {})
    mask = changed(np.zeros_like(img), img)
    for lane in range(4):
        x = int(pred.lanes.xs[lane, 30])
        assert mask[int(pred.lanes.rows[30]), x - 1 : x + 2].any(), f"lane {lane} not drawn"
    for x1, y1, x2, y2 in pred.detections.boxes.astype(int):
        assert mask[(y1 + y2) // 2, x1 - 1 : x1 + 2].any()  # left edge
        assert mask[y2 - 1 : y2 + 2, (x1 + x2) // 2].any()  # bottom edge
        assert not mask[(y1 + y2) // 2, (x1 + x2) // 2]  # the inside stays clear
    assert not mask[:150, 600:].any()  # above the lanes, no HUD: untouched
    # ego lanes bold, outer ones thinner
    row = mask[int(pred.lanes.rows[30])]
    widths = [row[int(x) - 20 : int(x) + 20].sum() for x in pred.lanes.xs[:, 30]]
    assert min(widths[:2]) > max(widths[2:])


def test_empty_prediction_draws_nothing_and_does_not_raise() -> None:
    img = np.full((720, 1280, 3), 90, np.uint8)
    draw(img, empty_prediction(), [], None, None, {})
    assert (img == 90).all()


def test_tracks_get_distance_ttc_and_the_fcw_target_is_red() -> None:
    img = np.zeros((720, 1280, 3), np.uint8)
    pred = prediction()
    lead = Track(np.array([600, 400, 700, 480], np.float32), 0, 7, 23.4, 2.1, True)
    other = Track(np.array([200, 400, 300, 480], np.float32), 1, 8, 41.0, None, False)
    warn = Warnings(True, 7, 1.2, None)
    draw(img, pred, [lead, other], None, warn, {"fps": 29.7})
    assert tuple(img[440, 600]) == RED  # left edge of the lead box
    assert tuple(img[440, 200]) != RED
    assert (img[:80, 400:900] == RED).all(axis=2).sum() > 2000  # the banner
    x1, y1, _, y2 = pred.detections.boxes[0].astype(int)
    assert not changed(np.zeros_like(img), img)[(y1 + y2) // 2, x1]  # tracks replace detections


def test_hud_lane_geometry_and_ldw_banner() -> None:
    img = np.full((720, 1280, 3), 200, np.uint8)
    hud = {"FPS": 30.04, "latency p50/p99 ms": "8.1 / 12.9", "drops": 0, "device": "cpu"}
    draw(img, empty_prediction(), None, LaneGeo(0.31, 0.002, True), None, hud)
    assert (img[10:60, 10:60] < 200).all(axis=2).mean() > 0.5  # darkened HUD box
    assert (img[:60, 10:200] == 255).all(axis=2).any()  # white HUD text
    assert changed(np.full_like(img, 200), img)[690:, :200].any()  # offset / curvature label
    assert not (img == RED).all(axis=2).any()
    ldw = Warnings(False, None, None, "left")
    draw(img, empty_prediction(), None, LaneGeo(0.0, 0.0, False), ldw, {})
    assert (img[:120] == RED).all(axis=2).sum() > 2000


@pytest.mark.parametrize(
    "shape", [(480, 854, 3), (1080, 1920, 3), (1280, 720, 3), (720, 1280)], ids=str
)
def test_other_sizes_gray_and_portrait_frames(shape: tuple[int, ...]) -> None:
    h, w = shape[:2]
    gray = np.full((h, w), 60, np.uint8)
    img = gray.copy() if len(shape) == 2 else cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    pred = prediction(w, h, n_boxes=10)
    tracks = [
        Track(b, i % 4, i, 10.0 + i, 3.0, i == 0) for i, b in enumerate(pred.detections.boxes)
    ]
    warn = Warnings(True, 0, 1.5, "right")
    draw(img, pred, tracks, LaneGeo(-0.2, -0.001, True), warn, {"FPS": 30.0, "device": "cuda"})
    assert img.shape == shape
    mask = changed(np.full_like(img, 60), img)
    x = int(pred.lanes.xs[0, 40])
    assert mask[int(pred.lanes.rows[40]), max(x - 2, 0) : x + 3].any()
    assert mask[: h // 4].any() and mask[-h // 20 :].any()  # HUD / banner and bottom label
    # the banner stays inside the frame: its red reaches neither the left nor right border
    if len(shape) == 3:
        red_cols = np.flatnonzero((img[: h // 4] == RED).all(axis=2).any(axis=0))
        assert len(red_cols) and red_cols.max() < w - 1
