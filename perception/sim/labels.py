"""Exact labels of a rendered frame: lanes per slot from the painted boundaries, obstacle
boxes from the projected parts, cut where the frame hides them (other actors, the median
barrier, the bonnet).

Conventions are those of the dataset format (perception/dataset/schema.py) and of the real
test labels: a box is tight around the visible extent, a lane is -2 on rows it does not
reach or where something permanent (the bonnet) covers it.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from perception.dataset.schema import Lane, Obstacle
from perception.sim.project import MAX_RANGE_M, View, sample_s
from perception.sim.road import Pose
from serving.contract import LANE_SLOTS


@dataclass
class Drawn:
    """One actor as drawn: polygons (pixels, fixed point) with colours, and its label."""

    depth: float
    polys: list[tuple[np.ndarray, tuple[int, int, int], str]]
    corners_uv: np.ndarray  # all projected part corners, pixels
    label: Obstacle
    beyond_barrier: bool = False  # on the other carriageway: drawn before the median barrier


def lane_labels(
    view: View, hood: np.ndarray, ego: Pose, s_ego: float, h_samples: list[int]
) -> list[Lane]:
    """The four slots' lanes as seen from ego at arc length s_ego; hood int32[W]: first row
    of the bonnet per column."""
    road = view.road
    spec = road.spec
    off = road.boundary_offsets()
    slot_boundary = {
        "ego_left": spec.ego_lane,
        "ego_right": spec.ego_lane + 1,
        "outer_left": spec.ego_lane - 1,
        "outer_right": spec.ego_lane + 2,
    }
    s = s_ego + sample_s(0.5, MAX_RANGE_M)
    s = s[s < road.length]
    lanes = []
    for slot in LANE_SLOTS:
        b = slot_boundary[slot]
        if not 0 <= b <= spec.lanes:
            continue
        uv, pe = view.to_uv(ego, road.points(s, float(off[b])))
        lane = _lane(uv, pe, hood, view.calib.image_width, view.calib.image_height, h_samples)
        if lane is not None:
            lanes.append(Lane(slot, lane[0], lane[1], spec.styles[b], spec.colors[b], lane[2]))
    return lanes


def _lane(
    uv: np.ndarray, pe: np.ndarray, hood: np.ndarray, w: int, h: int, h_samples: list[int]
) -> tuple[list[list[float]], list[float], list[list[float]]] | None:
    """A boundary's projected samples -> (points, x_at_h, points_3d), or None if under three
    rows of it show. uv float[N, 2] pixels, pe float[N, 3] ego frame, near to far."""
    front = pe[:, 0] > 1.0
    uv, pe = uv[front], pe[front]
    if len(uv) < 2:
        return None
    # keep the part before the road drops out of sight over a crest (v must keep falling)
    rising = np.nonzero(np.diff(uv[:, 1]) >= -1e-3)[0]
    end = int(rising[0]) + 1 if len(rising) else len(uv)
    uv, pe = uv[:end], pe[:end]
    inside = (uv[:, 0] >= 0) & (uv[:, 0] <= w - 1) & (uv[:, 1] >= 0) & (uv[:, 1] <= h - 1)
    under_hood = uv[:, 1] >= hood[np.clip(uv[:, 0], 0, w - 1).astype(int)] - 1
    idx = np.nonzero(inside & ~under_hood)[0]
    if len(idx) < 2:
        return None
    run_end = idx[0] + np.argmax(np.diff(np.append(idx, -1)) != 1)  # first contiguous run
    sel = slice(idx[0], run_end + 1)
    uv, pe = uv[sel], pe[sel]
    # thin to >= 0.25 px steps in v so that v still falls strictly once rounded to 0.01 px
    keep = np.r_[True, np.diff(np.round(uv[:, 1], 2)) < -0.25]
    uv, pe = uv[keep], pe[keep]
    if len(uv) < 2:
        return None
    v_asc, u_asc = uv[::-1, 1], uv[::-1, 0]
    xs = [
        round(float(np.interp(hh, v_asc, u_asc)), 2) if v_asc[0] <= hh <= v_asc[-1] else -2.0
        for hh in h_samples
    ]
    if sum(x >= 0 for x in xs) < 3:
        return None
    points = [[round(float(u), 2), round(float(v), 2)] for u, v in uv]
    return points, xs, [[round(float(c), 3) for c in p] for p in pe]


def occlusion(drawn: list[Drawn], w: int, h: int) -> None:
    """Fraction of each actor's silhouette covered by nearer actors (quarter resolution);
    drawn is sorted far to near."""
    q = 4
    ids = np.zeros((h // q + 1, w // q + 1), np.int32)
    areas = []
    for k, d in enumerate(drawn, 1):
        hull = cv2.convexHull((d.corners_uv / q).astype(np.float32)).astype(np.int32)
        own = np.zeros_like(ids, np.uint8)
        cv2.fillConvexPoly(own, hull, 1)
        areas.append(int(own.sum()))
        ids[own > 0] = k
    for k, d in enumerate(drawn, 1):
        vis = int((ids == k).sum())
        d.label.occlusion = round(1.0 - vis / areas[k - 1], 3) if areas[k - 1] else 0.0


def cut_behind_barrier(drawn: list[Drawn], line: tuple[np.ndarray, np.ndarray] | None) -> None:
    """Boxes of objects beyond the median barrier cover only what shows above its top edge
    (line: (u, v) pixels sorted by u), the convention of the real test labels; the hidden
    share counts as occlusion."""
    for d in drawn:
        if not d.beyond_barrier or line is None:
            continue
        b = d.label.box
        v_cut = float(np.interp([b[0], b[2]], *line).max())
        if v_cut < b[3]:
            full = max(b[3] - b[1], 1e-6)
            b[3] = round(max(v_cut, b[1]), 2)
            hidden = 1.0 - (b[3] - b[1]) / full
            d.label.occlusion = round(max(d.label.occlusion, hidden), 3)


def visible_labels(drawn: list[Drawn], hood: np.ndarray) -> list[Obstacle]:
    """Labels of what can be seen: boxes cut at the bonnet, too small or hidden ones out."""
    out = []
    w = len(hood)
    for d in drawn:
        b = d.label.box
        x0, x1 = int(max(b[0], 0)), int(min(b[2], w - 1))
        cut = float(hood[x0 : x1 + 1].min()) - 1.0 if x1 >= x0 else b[3]
        if cut < b[3]:
            b[3] = round(max(cut, b[1]), 2)
        if d.label.occlusion < 0.95 and b[3] - b[1] >= 4.0:
            out.append(d.label)
    return out
