"""What the loop tells the driver: forward collision (FCW) and lane departure (LDW) warnings,
from the tracks (serving.tracking) and the ego lane's geometry (serving.geometry).

A warning that fires on nothing teaches a driver to ignore it, so FCW acts only on confirmed
tracks: seen in several consecutive frames, in the ego lane, and closing."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

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
        self.classes = tuple(i for i, n in enumerate(class_names) if n in config.fcw_classes)

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
        c, f, i = self.config, tracks.f, tracks.i
        cand = (f[:, K.IN_LANE] > 0) & (i[:, K.BEST] >= c.fcw_min_hits) & (f[:, K.X] > 0)
        cand &= np.isin(i[:, K.CLS], self.classes)
        if not cand.any():
            return
        f, ids = f[cand], i[cand, K.ID]
        # closing: faster than fcw_closing_sigma times the filter's own doubt about the
        # speed, so that jitter of a track's range never reads as an approach
        closing = -f[:, K.VX] > c.fcw_closing_sigma * f[:, K.VX_STD]
        ttc = np.where(closing, f[:, K.TTC], math.inf)
        lead, worst = int(np.argmin(f[:, K.X])), int(np.argmin(ttc))
        out.lead_track_id, out.lead_distance_m = int(ids[lead]), float(f[lead, K.X])
        if ttc[worst] < c.fcw_ttc_s:
            out.fcw, out.fcw_track_id, out.fcw_ttc_s = True, int(ids[worst]), float(ttc[worst])
