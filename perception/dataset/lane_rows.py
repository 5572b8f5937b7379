"""Lanes as x per image row: TuSimple's form (``x_at_h``: one x pixel per h_samples row, -2
where the lane has no point), its conversion to and from our lanes, and the slot assignment
of unordered lanes. Shared by the TuSimple and BDD100K importers, the exporters and
evaluation (which writes predictions in the same form)."""

from __future__ import annotations

from collections.abc import Sequence

from perception.dataset.schema import Lane
from serving.contract import LANE_SLOTS

NO_POINT = -2
MIN_LANE_POINTS = 2


def xs_to_points(xs: Sequence[float], h_samples: Sequence[int]) -> list[list[float]]:
    """TuSimple xs (pixels per h_samples row, negative = no point) -> (u, v) pixel points
    ordered bottom to top (v decreasing). h_samples must not repeat a row."""
    pts = [[float(x), float(h)] for x, h in zip(xs, h_samples, strict=True) if x >= 0]
    return sorted(pts, key=lambda p: -p[1])


def lanes_to_tusimple_xs(
    lanes: Sequence[Lane], min_points: int = MIN_LANE_POINTS
) -> list[list[float]]:
    """Our lanes -> TuSimple ``lanes`` lists (x pixels per h_samples row, -2 = no point), in
    slot order ego_left, ego_right, outer_left, outer_right (unknown slots last), leaving out
    lanes with fewer than ``min_points`` valid rows. Works for labels and predictions alike."""
    order = {slot: i for i, slot in enumerate(LANE_SLOTS)}
    kept = [lane for lane in lanes if sum(x >= 0 for x in lane.x_at_h) >= min_points]
    kept.sort(key=lambda lane: order.get(lane.slot, len(order)))
    return [[_tusimple_number(x) for x in lane.x_at_h] for lane in kept]


def _tusimple_number(x: float) -> float:
    """Whole pixel values as ints (as TuSimple writes them), others to 0.01 px; no point -> -2."""
    if x < 0:
        return NO_POINT
    return int(x) if float(x).is_integer() else round(float(x), 2)


def bottom_x(points: Sequence[Sequence[float]], v_ref: float) -> float:
    """x (pixels) where the lane meets image row v_ref, continuing the straight line through
    its two lowest points; a one-point lane keeps its x. Points are (u, v), bottom first.

    Extrapolating to a common row rather than reading x at each lane's own lowest row keeps
    the left-to-right order of lanes that start higher up (hidden by a car, or leaving the
    image at its side) among lanes that reach the bottom."""
    (u0, v0) = points[0][:2]
    if len(points) < 2 or points[1][1] == v0:
        return float(u0)
    (u1, v1) = points[1][:2]
    return float(u0 + (u1 - u0) * (v_ref - v0) / (v1 - v0))


def assign_lane_slots(
    lanes_points: Sequence[Sequence[Sequence[float]]], image_width: int, image_height: int
) -> list[str | None]:
    """Slots for unordered lanes, each given as (u, v) points bottom first: by the lane's x at
    the bottom image row (``bottom_x``) relative to the image centre, the nearest lane on the
    left is ego_left, the next outer_left, the nearest on the right ego_right, the next
    outer_right. Lanes beyond those four get None (the caller drops and counts them)."""
    centre, v_ref = image_width / 2.0, image_height - 1.0
    xs = [bottom_x(pts, v_ref) for pts in lanes_points]
    left = sorted((i for i, x in enumerate(xs) if x < centre), key=lambda i: -xs[i])
    right = sorted((i for i, x in enumerate(xs) if x >= centre), key=lambda i: xs[i])
    slots: list[str | None] = [None] * len(xs)
    for side, names in ((left, ("ego_left", "outer_left")), (right, ("ego_right", "outer_right"))):
        for i, name in zip(side, names, strict=False):
            slots[i] = name
    return slots
