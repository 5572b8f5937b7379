"""Obstacle ground positions and ego-lane geometry on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from serving.contract import LANE_SLOTS, ModelContract
from serving.geometry import Calib, obstacle_positions
from serving.lanes import LaneGeometry, ego_slots
from serving.lanes import lane_geometry as _lane_geometry
from serving.postprocess import NO_POINT, Lanes

FLAT = Calib(1280, 720, 1000, 1000, 640, 360, 1.5, 0.0)  # zero pitch: horizon at v = 360
ROWS = np.asarray(ModelContract().row_anchors, np.float32) * 720  # 160..710


def lane_geometry(lanes: Lanes, calib: Calib) -> LaneGeometry:
    """serving.lanes.lane_geometry with the contract's slot order and the 40 m fit range."""
    return _lane_geometry(lanes, calib, (0, 1), 40.0)


def test_ego_slots_come_from_the_contract():
    assert ego_slots(LANE_SLOTS) == (0, 1)
    assert ego_slots(("outer_left", "ego_right", "ego_left")) == (2, 1)
    with pytest.raises(ValueError, match="ego_left"):
        ego_slots(("left", "ego_right"))


def test_obstacle_positions_flat_camera():
    # bottom at v = 360 + 1000 * 1.5 / 20 = 435 -> x = 20 m; u = 650 -> y = -(10 / 1000) * 20
    boxes = np.array(
        [
            [600, 300, 700, 435],  # bottom centre (650, 435)
            [540, 380, 560, 510],  # bottom centre (550, 510): x = 1500 / 150 = 10, y = 0.9
            [600, 300, 700, 360],  # bottom on the horizon
            [600, 200, 700, 300],  # bottom above it
        ],
        np.float32,
    )
    pos = obstacle_positions(boxes, FLAT)
    assert pos.shape == (4, 2) and pos.dtype == np.float64
    np.testing.assert_allclose(pos[0], [20.0, -0.2], atol=1e-9)
    np.testing.assert_allclose(pos[1], [10.0, 0.9], atol=1e-9)
    assert np.isnan(pos[2:]).all()
    assert obstacle_positions(np.zeros((0, 4)), FLAT).shape == (0, 2)


def test_obstacle_positions_round_trip_with_pitch():
    calib = Calib.default()
    ground = np.array([[8.0, 1.0, 0.0], [35.0, -3.5, 0.0], [60.0, 2.0, 0.0]])
    uv, _ = calib.project(ground)
    boxes = np.stack([uv[:, 0] - 20, uv[:, 1] - 30, uv[:, 0] + 20, uv[:, 1]], axis=1)
    np.testing.assert_allclose(obstacle_positions(boxes, calib), ground[:, :2], atol=1e-6)


def lanes_from_lines(calib: Calib, lines: list[tuple[float, float, float] | None]) -> Lanes:
    """Lanes whose slots are the ground lines y = c0 + c1 x + c2 x^2 (None: absent), drawn
    at the contract's rows by projecting dense ground points and interpolating u at v."""
    x = np.linspace(2.0, 300.0, 6000)
    xs = np.full((4, len(ROWS)), NO_POINT, np.float32)
    for slot, c in enumerate(lines):
        if c is None:
            continue
        pts = np.stack([x, c[0] + c[1] * x + c[2] * x * x, np.zeros_like(x)], axis=1)
        uv, _ = calib.project(pts)
        order = np.argsort(uv[:, 1])  # v grows as x shrinks
        v, u = uv[order, 1], uv[order, 0]
        inside = (v[0] <= ROWS) & (v[-1] >= ROWS)
        xs[slot, inside] = np.interp(ROWS[inside], v, u)
    return Lanes(xs, ROWS.copy(), np.ones(4, np.float32))


@pytest.mark.parametrize("calib", [FLAT, Calib.default()], ids=["flat", "pitch2deg"])
def test_lane_geometry_offset_width_curvature(calib: Calib):
    radius, offset, heading = 300.0, 0.4, 0.01
    c1, c2 = math.tan(heading), 0.5 / radius
    # ego 0.4 m left of the centre: the centre is at y = -0.4, the lines at -0.4 +- 1.75
    lanes = lanes_from_lines(
        calib, [(1.75 - offset, c1, c2), (-1.75 - offset, c1, c2), (5.25 - offset, c1, c2), None]
    )
    g = lane_geometry(lanes, calib)
    assert g.valid
    assert g.offset_m == pytest.approx(offset, abs=0.05)
    assert g.width_m == pytest.approx(3.5, abs=0.1)
    assert g.curvature_1pm == pytest.approx(1.0 / radius, rel=0.1)
    assert g.heading_rad == pytest.approx(heading, abs=0.005)
    # the lane centre at 30 m, where the tracker asks
    assert g.centre_y(np.array([30.0]))[0] == pytest.approx(-offset + c1 * 30 + c2 * 900, abs=0.1)


def test_lane_geometry_right_turn_and_one_side():
    c2 = -0.5 / 300.0  # turning right
    both = lane_geometry(lanes_from_lines(FLAT, [(1.75, 0, c2), (-1.75, 0, c2)]), FLAT)
    assert both.curvature_1pm == pytest.approx(-1.0 / 300.0, rel=0.1)
    assert both.offset_m == pytest.approx(0.0, abs=0.05)
    # only the right line at y = -1.2: the centre is 1.75 m left of it, ego 0.55 m left of that
    right = lane_geometry(lanes_from_lines(FLAT, [None, (-1.2, 0.0, 0.0)]), FLAT)
    assert right.valid and right.width_m == 3.5
    assert right.offset_m == pytest.approx(-0.55, abs=0.05)
    left = lane_geometry(lanes_from_lines(FLAT, [(1.2, 0.0, 0.0), None]), FLAT)
    assert left.offset_m == pytest.approx(0.55, abs=0.05)


def test_lane_geometry_range_limit_and_invalid_cases():
    lanes = lanes_from_lines(FLAT, [(1.75, 0, 0), (-1.75, 0, 0)])
    # at 3 m maximum range no row qualifies (the nearest row, 710, sees 4.3 m)
    assert not _lane_geometry(lanes, FLAT, (0, 1), 3.0).valid
    empty = Lanes(np.full((4, len(ROWS)), NO_POINT, np.float32), ROWS, np.zeros(4, np.float32))
    g = lane_geometry(empty, FLAT)
    assert not g.valid and math.isnan(g.offset_m)
    assert np.isnan(g.centre_y(np.array([10.0]))).all()
    # two lines 9 m apart are not one lane
    wide = lane_geometry(lanes_from_lines(FLAT, [(4.5, 0, 0), (-4.5, 0, 0)]), FLAT)
    assert wide.width_m == pytest.approx(9.0, abs=0.1) and not wide.valid
    assert LaneGeometry.invalid().valid is False


def test_lane_geometry_is_cheap():
    import time

    lanes = lanes_from_lines(Calib.default(), [(1.75, 0, 1e-3), (-1.75, 0, 1e-3)])
    calib = Calib.default()
    lane_geometry(lanes, calib)
    t0 = time.perf_counter()
    for _ in range(200):
        lane_geometry(lanes, calib)
    per_call = (time.perf_counter() - t0) / 200
    assert per_call < 1e-3  # ~0.1 ms on an idle core; loose for a busy CI machine
