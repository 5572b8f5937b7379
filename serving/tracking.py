"""Obstacle tracks over frames; the warnings they feed are serving.alerts.

Positions and velocities are in the ego frame (x forward, y left; metres, m/s relative to
the ego, no ego-motion compensation) from flat-road back-projection of box bottoms
(serving.geometry). The per-frame work is one Numba kernel (serving.kalman) on tracks kept
as array rows: ~20 us for 20 tracks. `Tracks` is what a frame reports: a snapshot of those
rows that reads as a sequence of `Track` objects, built only when someone looks (the
overlay and the JSON record, in the output thread), never on the loop's critical path."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import overload

import numpy as np

from serving import kalman as K
from serving.config import TrackingConfig
from serving.geometry import Calib
from serving.lanes import LaneGeometry
from serving.postprocess import Detections
from serving.projection import pack


@dataclass
class Track:
    """One tracked obstacle after this frame's update.

    box: float32[4] x1 y1 x2 y2 source pixels (the detection, or the prediction when
    missed); x_m, y_m: ground position, ego frame, metres; vx_mps, vy_mps: velocity relative
    to the ego, ego frame, m/s; distance_m = x_m; ttc_s: x_m / closing speed when closing,
    else inf, seconds; age: frames since creation; hits: frames with a detection; missed:
    consecutive frames without one; vx_std_mps: the filter's 1-sigma on vx, m/s; streak:
    consecutive frames with a detection up to this one (0 while missed); best_streak: the
    longest such run so far (what confirms a track: see serving.alerts)."""

    track_id: int
    cls: int
    box: np.ndarray
    score: float
    x_m: float
    y_m: float
    vx_mps: float
    vy_mps: float
    distance_m: float
    ttc_s: float
    age: int
    hits: int
    missed: int
    in_ego_lane: bool
    vx_std_mps: float = math.inf
    streak: int = 0
    best_streak: int = 0


class Tracks(Sequence[Track]):
    """The live tracks of one frame (coasting ones included), by id: float64[T, kalman.NF]
    and int64[T, kalman.NI] rows (serving.kalman's layout), copied out of the tracker.
    Indexing and iteration give Track objects; the columns are there for code that wants
    arrays (serving.alerts)."""

    def __init__(self, f: np.ndarray, i: np.ndarray):
        self.f, self.i = f, i

    @classmethod
    def from_tracks(cls, tracks: Sequence[Track]) -> Tracks:
        """A table of Track objects (tests, hand-made scenes)."""
        f, i = np.zeros((len(tracks), K.NF)), np.zeros((len(tracks), K.NI), np.int64)
        for r, t in enumerate(tracks):
            f[r, [K.X, K.Y, K.VX, K.VY, K.TTC]] = t.x_m, t.y_m, t.vx_mps, t.vy_mps, t.ttc_s
            f[r, K.BOX : K.BOX + 4], f[r, K.SCORE] = t.box, t.score
            f[r, K.IN_LANE], f[r, K.VX_STD] = t.in_ego_lane, t.vx_std_mps
            i[r] = t.track_id, t.cls, t.age, t.hits, t.missed, t.streak, t.best_streak
        return cls(f, i)

    def __len__(self) -> int:
        return len(self.i)

    @overload
    def __getitem__(self, k: int) -> Track: ...
    @overload
    def __getitem__(self, k: slice) -> Tracks: ...
    def __getitem__(self, k: int | slice) -> Track | Tracks:
        if isinstance(k, slice):
            return Tracks(self.f[k], self.i[k])
        f, i = self.f[k], self.i[k].tolist()
        x = float(f[K.X])
        return Track(
            i[K.ID], i[K.CLS], f[K.BOX : K.BOX + 4].astype(np.float32), float(f[K.SCORE]),
            x, float(f[K.Y]), float(f[K.VX]), float(f[K.VY]), x, float(f[K.TTC]),
            i[K.AGE], i[K.HITS], i[K.MISSED], bool(f[K.IN_LANE]), float(f[K.VX_STD]),
            i[K.STREAK], i[K.BEST],
        )  # fmt: skip

    def __iter__(self) -> Iterator[Track]:
        return (self[k] for k in range(len(self)))


class Tracker:
    """Multi-object tracker on the ground plane: IoU association, constant-velocity Kalman.

    calib: the source image's camera; config: TrackingConfig. A track is deleted when it
    has gone more than max_missed consecutive frames without a detection (or max_coast_s
    seconds). iou_gate: minimum IoU between a track's predicted box and a detection of the
    same class; tracks and detections left over are then matched on the ground by
    Mahalanobis distance (chi-square 99 % gate), which keeps fast-moving or small obstacles
    across dropped frames. accel_long_mps2, accel_lat_mps2: 1-sigma white-noise
    acceleration, m/s^2. sigma_u_px, sigma_v_px: box-edge noise, pixels; range_rel_err: road
    slope / pitch error as a fraction of range. Measurement noise: sigma_x = 0.1 +
    range_rel_err x + x^2 / (fy h) sigma_v (flat-road range error grows with x^2), sigma_y
    from x sigma_u / fx. Detections whose box bottom is at or above the horizon have no
    ground position and are ignored."""

    def __init__(self, calib: Calib, config: TrackingConfig) -> None:
        self.calib, self.config = calib, config
        self._cam = pack(calib)
        self._cfg = np.array([float(getattr(config, k)) for k in K.SETTINGS])
        self._no_lane = LaneGeometry.invalid().packed()
        self.reset()

    def reset(self) -> None:
        self.t_s: float | None = None  # time of the last update, seconds
        self._f, self._i = np.zeros((32, K.NF)), np.zeros((32, K.NI), np.int64)
        self._n, self._next_id = 0, 1

    def update(self, t_s: float, det: Detections, lane: LaneGeometry | None) -> Tracks:
        """One frame: predict to t_s (seconds; gaps from dropped frames are predicted
        through), associate, update, spawn, delete. det in source pixels; lane gives
        in_ego_lane (None or invalid: |y| < 1.8 m). Returns every live track, coasting ones
        included (missed > 0), by id."""
        dt = 0.0 if self.t_s is None else max(t_s - self.t_s, 0.0)
        self.t_s = t_s
        boxes = np.asarray(det.boxes, np.float64).reshape(-1, 4)
        if self._n + len(boxes) > len(self._f):  # room for every detection to spawn
            size = max(2 * len(self._f), self._n + len(boxes))
            self._f = np.concatenate([self._f, np.zeros((size - len(self._f), K.NF))])
            self._i = np.concatenate([self._i, np.zeros((size - len(self._i), K.NI), np.int64)])
        lane_row = self._no_lane if lane is None else lane.packed()
        self._n, self._next_id = K.step(
            self._f, self._i, self._n, self._next_id, boxes,
            np.asarray(det.scores, np.float64), np.asarray(det.classes, np.int64),
            float(t_s), dt, self._cam, self._cfg, lane_row,
        )  # fmt: skip
        return Tracks(self._f[: self._n].copy(), self._i[: self._n].copy())
