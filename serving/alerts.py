"""What the loop tells the driver: forward collision (FCW) and lane departure (LDW) warnings,
from the tracks (serving.tracking) and the ego lane's geometry (serving.geometry).

A warning that fires on nothing teaches a driver to ignore it, so FCW acts only on confirmed
tracks: seen in several consecutive frames, in the ego lane, and closing."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numba import njit

from serving import kalman as K
from serving.config import WarningConfig
from serving.lanes import LaneGeometry
from serving.tracking import Track, Tracks


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


class Alerts:
    """FCW and LDW for one frame at a time, with the thresholds of a WarningConfig.

    class_names: the model contract's; FCW reacts to the classes of config.fcw_classes
    among them (a name the model does not have is ignored).

    FCW needs a confirmed, closing track in the ego lane: a track of those classes that was
    detected in >= fcw_min_hits consecutive frames (best_streak: a detection seen in one frame
    only, however close, never warns; a confirmed track keeps warning while it coasts
    through a missed frame), in the ego lane, closing faster than fcw_closing_sigma times its
    speed's 1-sigma, and with a TTC below fcw_ttc_s seconds (the smallest is reported).
    LDW: the distance to the nearer ego-lane line, width / 2 - |offset| metres, is below
    ldw_margin_m, unless the ego is already moving back to the centre faster than
    ldw_return_mps (lateral speed relative to the lane = -speed sin(heading), needs the ego
    speed). With a known ego speed, FCW is off below fcw_min_speed_mps and LDW below
    ldw_min_speed_mps (m/s); an unknown speed (None) leaves both on."""

    def __init__(self, config: WarningConfig, class_names: Sequence[str]):
        self.config = config
        # by class id: does FCW react to it (the contract's class_names)
        self._watched = np.array([n in config.fcw_classes for n in class_names], np.bool_)

    def __call__(
        self,
        tracks: Tracks | Sequence[Track],
        lane: LaneGeometry | None,
        ego_speed_mps: float | None,
    ) -> Warnings:
        """The warnings of one frame: tracks after this frame's update (coasting ones
        included), the ego lane's geometry (None or invalid: no LDW), speed in m/s."""
        c, out = self.config, Warnings()
        if ego_speed_mps is None or ego_speed_mps >= c.fcw_min_speed_mps:
            table = tracks if isinstance(tracks, Tracks) else Tracks.from_tracks(tracks)
            self._fcw(table, out)
        if lane is None or not lane.valid:
            return out
        out.line_distance_m = 0.5 * lane.width_m - abs(lane.offset_m)
        side = "left" if lane.offset_m > 0 else "right"
        outward = 0.0  # ego speed towards the nearer line, m/s; unknown speed: drifting
        if ego_speed_mps is not None:
            v_left = -ego_speed_mps * math.sin(lane.heading_rad)
            outward = v_left if side == "left" else -v_left
        fast = ego_speed_mps is None or ego_speed_mps >= c.ldw_min_speed_mps
        if fast and out.line_distance_m < c.ldw_margin_m and outward >= -c.ldw_return_mps:
            out.ldw = side
        return out

    def _fcw(self, tracks: Tracks, out: Warnings) -> None:
        """Fill the lead and FCW fields from the confirmed in-ego-lane tracks."""
        c = self.config
        lead, lead_x, worst, ttc = _lead_and_threat(
            tracks.f, tracks.i, self._watched, c.fcw_min_hits, c.fcw_closing_sigma
        )
        if lead < 0:
            return
        out.lead_track_id, out.lead_distance_m = int(tracks.i[lead, K.ID]), lead_x
        if ttc < c.fcw_ttc_s:
            out.fcw, out.fcw_track_id, out.fcw_ttc_s = True, int(tracks.i[worst, K.ID]), ttc


@njit(cache=True, nogil=True)
def _lead_and_threat(
    f: np.ndarray, i: np.ndarray, watched: np.ndarray, min_hits: int, sigma: float
) -> tuple[int, float, int, float]:
    """Among the candidates (in the ego lane, ahead, confirmed: best streak >= min_hits, of
    a watched class), the row of the nearest (and its x, metres) and of the smallest TTC
    counting only tracks closing faster than sigma times their speed's 1-sigma, so that
    jitter of a track's range never reads as an approach (and that TTC, s; inf when none
    closes). Rows -1 without a candidate. Ties: the first row, as numpy's argmin."""
    lead, lead_x, worst, ttc = -1, math.inf, -1, math.inf
    for r in range(len(i)):
        cls = i[r, K.CLS]
        ok = 0 <= cls < len(watched) and watched[cls]
        if not (ok and f[r, K.IN_LANE] > 0 and i[r, K.BEST] >= min_hits and f[r, K.X] > 0):
            continue
        if lead < 0 or f[r, K.X] < lead_x:
            lead, lead_x = r, f[r, K.X]
        t = f[r, K.TTC] if -f[r, K.VX] > sigma * f[r, K.VX_STD] else math.inf
        if worst < 0 or t < ttc:
            worst, ttc = r, t
    return lead, lead_x, worst, ttc
