"""What the loop tells the driver: forward collision (FCW) and lane departure (LDW) warnings,
from the tracks (serving.tracking) and the ego lane's geometry (serving.geometry).

A warning that fires on nothing teaches a driver to ignore it, so FCW acts only on confirmed
tracks: seen in several consecutive frames, in the ego lane, and closing."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from serving.contract import CLASS_NAMES
from serving.geometry import LaneGeometry

if TYPE_CHECKING:
    from serving.tracking import Track


# class ids (contract.CLASS_NAMES) that FCW reacts to: all obstacles on the road
FCW_CLASSES: tuple[int, ...] = tuple(
    CLASS_NAMES.index(c) for c in ("car", "truck", "pedestrian", "cyclist")
)


@dataclass
class Warnings:
    """What the loop tells the driver this frame.

    fcw: forward collision warning; fcw_track_id, fcw_ttc_s: the threatening track and its
    time to collision, seconds (None / inf without one). lead_track_id, lead_distance_m: the
    nearest confirmed obstacle in the ego lane, metres. ldw: lane departure warning, 'left',
    'right' or None; line_distance_m: the ego's distance to the nearer ego-lane line, metres
    (NaN without a valid lane)."""

    fcw: bool = False
    fcw_track_id: int | None = None
    fcw_ttc_s: float = math.inf
    lead_track_id: int | None = None
    lead_distance_m: float = math.inf
    ldw: str | None = None
    line_distance_m: float = math.nan


def _fcw(tracks: list[Track], out: Warnings, fcw_ttc_s: float, min_hits: int,
         closing_sigma: float, classes: tuple[int, ...]) -> None:  # fmt: skip
    """Fill the lead and FCW fields from the confirmed in-ego-lane tracks of `classes`."""
    cand = [t for t in tracks if t.in_ego_lane and t.best_streak >= min_hits]
    cand = [t for t in cand if t.cls in classes and t.x_m > 0]
    if not cand:
        return
    dist = np.array([t.x_m for t in cand])
    # closing: faster than closing_sigma times the filter's own doubt about the speed, so
    # that jitter of a track's range never reads as an approach
    ttc = np.array([t.ttc_s if -t.vx_mps > closing_sigma * t.vx_std_mps else math.inf
                    for t in cand])  # fmt: skip
    lead, worst = int(np.argmin(dist)), int(np.argmin(ttc))
    out.lead_track_id, out.lead_distance_m = cand[lead].track_id, float(dist[lead])
    if ttc[worst] < fcw_ttc_s:
        out.fcw, out.fcw_track_id, out.fcw_ttc_s = True, cand[worst].track_id, float(ttc[worst])


def warnings(
    tracks: list[Track],
    lane: LaneGeometry | None,
    ego_speed_mps: float | None,
    fcw_ttc_s: float = 2.7,
    ldw_margin_m: float = 0.3,
    min_hits: int = 3,
    closing_sigma: float = 1.0,
    fcw_min_speed_mps: float = 2.0,
    ldw_min_speed_mps: float = 12.5,
    ldw_return_mps: float = 0.1,
    classes: tuple[int, ...] = FCW_CLASSES,
) -> Warnings:
    """FCW and LDW for one frame.

    FCW needs a confirmed, closing track in the ego lane: a track of `classes` (class ids)
    that was detected in >= min_hits consecutive frames (best_streak: a detection seen in
    one frame only, however close, never warns; a confirmed track keeps warning while it
    coasts through a missed frame), in the ego lane, closing faster than closing_sigma times
    its speed's 1-sigma, and with a TTC below fcw_ttc_s seconds (the smallest is reported).
    LDW: the distance to the nearer ego-lane line, width / 2 - |offset| metres, is below
    ldw_margin_m, unless the ego is already moving back to the centre faster than
    ldw_return_mps (lateral speed relative to the lane = -speed sin(heading), needs
    ego_speed_mps). With a known ego speed, FCW is off below fcw_min_speed_mps and LDW below
    ldw_min_speed_mps (m/s); None means unknown: on."""
    out = Warnings()
    if ego_speed_mps is None or ego_speed_mps >= fcw_min_speed_mps:
        _fcw(tracks, out, fcw_ttc_s, min_hits, closing_sigma, classes)
    if lane is None or not lane.valid:
        return out
    out.line_distance_m = 0.5 * lane.width_m - abs(lane.offset_m)
    side = "left" if lane.offset_m > 0 else "right"
    outward = 0.0  # ego speed towards the nearer line, m/s; unknown speed: assume drifting
    if ego_speed_mps is not None:
        v_left = -ego_speed_mps * math.sin(lane.heading_rad)
        outward = v_left if side == "left" else -v_left
    fast = ego_speed_mps is None or ego_speed_mps >= ldw_min_speed_mps
    if fast and out.line_distance_m < ldw_margin_m and outward >= -ldw_return_mps:
        out.ldw = side
    return out
