"""Obstacle tracks and smoothed lanes over frames; the warnings they feed are serving.alerts.

Positions and velocities are in the ego frame (x forward, y left; metres, m/s relative to
the ego, no ego-motion compensation) from flat-road back-projection of box bottoms
(serving.geometry). Numpy on a handful of tracks: well under a millisecond per frame."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from serving.alerts import Warnings, warnings
from serving.geometry import Calib, LaneGeometry, lane_geometry, obstacle_positions
from serving.postprocess import NO_POINT, Detections, FramePrediction, Lanes

_CHI2_2DOF_99 = 9.21  # Mahalanobis gate for a 2-D position measurement, 99 %


@dataclass
class Track:
    """One tracked obstacle after this frame's update.

    box: float32[4] x1 y1 x2 y2 source pixels (the detection, or the prediction when
    missed); x_m, y_m: ground position, ego frame, metres; vx_mps, vy_mps: velocity relative
    to the ego, ego frame, m/s; distance_m = x_m; ttc_s: x_m / closing speed when closing,
    else inf, seconds; age: frames since creation; hits: frames with a detection; missed:
    consecutive frames without one; vx_std_mps: the filter's 1-sigma on vx, m/s; streak:
    consecutive frames with a detection up to this one (0 while missed); best_streak: the
    longest such run so far (what confirms a track: see ``warnings``)."""

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


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every pair: a float[A, 4], b float[B, 4] x1 y1 x2 y2 -> float64[A, B]."""
    a = np.asarray(a, np.float64)[:, None, :]
    b = np.asarray(b, np.float64)[None, :, :]
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / (area_a + area_b - inter)
    return np.nan_to_num(iou, nan=0.0)


def greedy_match(score: np.ndarray, gate: float) -> tuple[np.ndarray, np.ndarray]:
    """Greedy one-to-one matching, best score first. score float[A, B] (higher is better;
    -inf forbids a pair); pairs below gate are never matched. Returns (rows, cols) int64[M].
    One argmax over the matrix per match: O(M * A * B) numpy, no loop over pairs."""
    s = np.where(score >= gate, score, -np.inf)
    pairs = []
    for _ in range(min(s.shape)):
        i, j = divmod(int(np.argmax(s)), s.shape[1])
        if not np.isfinite(s[i, j]):
            break
        pairs.append((i, j))
        s[i, :], s[:, j] = -np.inf, -np.inf
    rows, cols = np.array(pairs, np.int64).reshape(-1, 2).T
    return rows, cols


def in_ego_lane(x: np.ndarray, y: np.ndarray, lane: LaneGeometry | None) -> np.ndarray:
    """bool[N]: ground points (ego frame, metres) inside the ego lane: |y - centre(x)| <
    width / 2 with a valid lane, |y| < 1.8 m without one."""
    y = np.asarray(y, np.float64)
    if lane is None or not lane.valid:
        return np.abs(y) < 1.8
    return np.abs(y - lane.centre_y(x)) < 0.5 * lane.width_m


class _Tracks:
    """Structure of arrays for T live tracks (ids, classes, boxes, Kalman state and
    covariance, counters); the filter runs on all of them at once."""

    def __init__(self) -> None:
        i0, f0 = np.zeros(0, np.int64), np.zeros(0, np.float64)
        self.ids, self.cls, self.age, self.hits, self.missed = i0, i0, i0, i0, i0
        self.streak, self.best_streak = i0, i0
        self.scores, self.last_hit_t = f0, f0
        self.boxes, self.P = np.zeros((0, 4)), np.zeros((0, 4, 4))
        self.X = np.zeros((0, 4))  # x, y, vx, vy: metres, m/s, ego frame

    _FIELDS = ("ids", "cls", "boxes", "scores", "X", "P", "age", "hits", "missed", "last_hit_t",
               "streak", "best_streak")  # fmt: skip

    def keep(self, mask: np.ndarray) -> None:
        for f in self._FIELDS:
            setattr(self, f, getattr(self, f)[mask])

    def append(self, **new: np.ndarray) -> None:
        for f in self._FIELDS:
            setattr(self, f, np.concatenate([getattr(self, f), new[f]]))


class Tracker:
    """Multi-object tracker on the ground plane: IoU association, constant-velocity Kalman.

    calib: the source image's camera. max_missed: a track is deleted when it has gone
    more than max_missed consecutive frames without a detection (or max_coast_s seconds).
    iou_gate: minimum IoU between a track's predicted box and a detection of the same class;
    tracks and detections left over are then matched on the ground by Mahalanobis distance
    (chi-square 99 % gate), which keeps fast-moving or small obstacles across dropped frames.
    accel_mps2: (longitudinal, lateral) 1-sigma white-noise acceleration, m/s^2.
    sigma_u_px, sigma_v_px: box-edge noise, pixels; range_rel_err: road slope / pitch error
    as a fraction of range. Measurement noise: sigma_x = 0.1 + range_rel_err x + x^2 /
    (fy h) sigma_v (flat-road range error grows with x^2), sigma_y from x sigma_u / fx.
    Detections whose box bottom is at or above the horizon have no ground position and are
    ignored."""

    def __init__(
        self,
        calib: Calib,
        max_missed: int = 5,
        iou_gate: float = 0.3,
        accel_mps2: tuple[float, float] = (3.0, 1.0),
        sigma_u_px: float = 2.0,
        sigma_v_px: float = 2.0,
        range_rel_err: float = 0.02,
        init_speed_std_mps: float = 15.0,
        max_coast_s: float = 1.0,
    ) -> None:
        self.calib = calib
        self.max_missed, self.iou_gate, self.max_coast_s = max_missed, iou_gate, max_coast_s
        self.accel = np.asarray(accel_mps2, np.float64)
        self.sigma_u, self.sigma_v, self.range_rel = sigma_u_px, sigma_v_px, range_rel_err
        self.init_speed_std = init_speed_std_mps
        self.reset()

    def reset(self) -> None:
        self.t_s: float | None = None  # time of the last update, seconds
        self.tracks, self._next_id = _Tracks(), 1

    def _meas_var(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """float[N, 2] variances (m^2) of a ground measurement at (x, y), ego frame."""
        c = self.calib
        r = np.maximum(x, 1.0)
        sx = 0.1 + self.range_rel * r + r * r / (c.fy * c.camera_height_m) * self.sigma_v
        sy = 0.1 + r * self.sigma_u / c.fx + np.abs(y) / r * (sx - 0.1)
        return np.stack([sx * sx, sy * sy], axis=1)

    def _innovation_cov(self, P: np.ndarray, X: np.ndarray) -> np.ndarray:
        """float[N, 2, 2] m^2: position covariance plus the measurement noise at the
        predicted position (not at the measurement, which would bias the weights)."""
        S = P[:, :2, :2].copy()
        S[:, [0, 1], [0, 1]] += self._meas_var(X[:, 0], X[:, 1])
        return S

    def _predict(self, dt: float) -> None:
        """Advance every track's state and covariance by dt seconds (constant velocity,
        white-noise acceleration per axis)."""
        f = np.eye(4)
        f[0, 2] = f[1, 3] = dt
        a2, i, j = self.accel**2, [0, 1], [2, 3]  # per axis (x, y): q dt^3/3, dt^2/2, dt
        q = np.zeros((4, 4))
        q[i, i], q[j, j] = a2 * dt**3 / 3.0, a2 * dt
        q[i, j] = q[j, i] = a2 * dt**2 / 2.0
        tr = self.tracks
        tr.X = tr.X @ f.T
        tr.P = f @ tr.P @ f.T + q

    def _update(self, ti: np.ndarray, z: np.ndarray) -> None:
        """Kalman update of tracks ti (int[M]) with ground measurements z float[M, 2]."""
        tr = self.tracks
        P, X = tr.P[ti], tr.X[ti]
        K = P[:, :, :2] @ np.linalg.inv(self._innovation_cov(P, X))  # [M, 4, 2]
        tr.X[ti] = X + (K @ (z - X[:, :2])[..., None])[..., 0]
        P = P - K @ P[:, :2, :]
        tr.P[ti] = 0.5 * (P + P.transpose(0, 2, 1))

    def _mahalanobis(self, z: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distance, float[T, D], of detections z float[D, 2] to the
        predicted track positions."""
        tr = self.tracks
        d = z[None, :, :] - tr.X[:, None, :2]  # [T, D, 2]
        return np.einsum("tdi,tij,tdj->td", d, np.linalg.inv(self._innovation_cov(tr.P, tr.X)), d)

    def _predict_boxes(self, x_prev: np.ndarray) -> None:
        """Move each track's box with its predicted ground motion: the bottom centre
        follows the projection of the ground point, the size scales with 1 / range."""
        tr, n = self.tracks, len(self.tracks.ids)
        ground = np.concatenate([x_prev[:, :2], tr.X[:, :2]])  # previous, then predicted
        uv, _ = self.calib.project(np.concatenate([ground, np.zeros((2 * n, 1))], axis=1))
        shift = uv[n:] - uv[:n]
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = x_prev[:, 0] / tr.X[:, 0]
        good = np.isfinite(shift).all(axis=1) & (x_prev[:, 0] > 0.5) & (tr.X[:, 0] > 0.5)
        shift[~good], scale[~good] = 0.0, 1.0
        b = tr.boxes
        w, h = (b[:, 2] - b[:, 0]) * scale, (b[:, 3] - b[:, 1]) * scale
        cx, bottom = 0.5 * (b[:, 0] + b[:, 2]) + shift[:, 0], b[:, 3] + shift[:, 1]
        tr.boxes = np.stack([cx - w / 2, bottom - h, cx + w / 2, bottom], axis=1)

    def _associate(
        self, boxes: np.ndarray, classes: np.ndarray, z: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(track indices, detection indices) int64[M]: IoU first, then ground distance."""
        tr = self.tracks
        same = tr.cls[:, None] == classes[None, :]
        iou = np.where(same, iou_matrix(tr.boxes, boxes), -np.inf)
        ti, di = greedy_match(iou, self.iou_gate)
        if len(ti) < min(len(tr.ids), len(boxes)):
            score = np.where(same, -self._mahalanobis(z), -np.inf)
            score[ti, :] = -np.inf
            score[:, di] = -np.inf
            t2, d2 = greedy_match(score, -_CHI2_2DOF_99)
            ti, di = np.concatenate([ti, t2]), np.concatenate([di, d2])
        return ti, di

    def _spawn(self, t_s: float, boxes: np.ndarray, scores: np.ndarray, cls: np.ndarray,
               z: np.ndarray) -> None:  # fmt: skip
        """New tracks at ground positions z float[N, 2], metres, at rest relative to the ego
        (velocity prior init_speed_std_mps)."""
        n = len(z)
        var = self._meas_var(z[:, 0], z[:, 1])
        P = np.zeros((n, 4, 4))
        P[:, [0, 1], [0, 1]] = var
        P[:, [2, 3], [2, 3]] = self.init_speed_std**2
        self.tracks.append(
            ids=np.arange(self._next_id, self._next_id + n), cls=cls.astype(np.int64),
            boxes=boxes, scores=scores.astype(np.float64),
            X=np.concatenate([z, np.zeros((n, 2))], axis=1), P=P,
            age=np.zeros(n, np.int64), hits=np.ones(n, np.int64), missed=np.zeros(n, np.int64),
            last_hit_t=np.full(n, t_s), streak=np.ones(n, np.int64),
            best_streak=np.ones(n, np.int64),
        )  # fmt: skip
        self._next_id += n

    def update(self, t_s: float, det: Detections, lane: LaneGeometry | None) -> list[Track]:
        """One frame: predict to t_s (seconds; gaps from dropped frames are predicted
        through), associate, update, spawn, delete. det in source pixels; lane gives
        in_ego_lane (None or invalid: |y| < 1.8 m). Returns every live track, coasting ones
        included (missed > 0), by id."""
        tr = self.tracks
        dt = 0.0 if self.t_s is None else max(t_s - self.t_s, 0.0)
        self.t_s = t_s
        x_prev = tr.X.copy()
        self._predict(dt)
        self._predict_boxes(x_prev)
        boxes = np.asarray(det.boxes, np.float64).reshape(-1, 4)
        z = obstacle_positions(boxes, self.calib)
        ok = np.isfinite(z).all(axis=1)
        boxes, z = boxes[ok], z[ok]
        scores, classes = np.asarray(det.scores)[ok], np.asarray(det.classes)[ok]
        ti, di = self._associate(boxes, classes, z)
        tr.age += 1
        tr.missed += 1
        streak = tr.streak + 1
        tr.streak[:] = 0
        if len(ti):
            self._update(ti, z[di])
            tr.boxes[ti], tr.scores[ti] = boxes[di], scores[di]
            tr.hits[ti], tr.missed[ti], tr.last_hit_t[ti] = tr.hits[ti] + 1, 0, t_s
            tr.streak[ti] = streak[ti]
            tr.best_streak[ti] = np.maximum(tr.best_streak[ti], streak[ti])
        tr.keep((tr.missed <= self.max_missed) & (t_s - tr.last_hit_t <= self.max_coast_s))
        new = ~np.isin(np.arange(len(z)), di)
        self._spawn(t_s, boxes[new], scores[new], classes[new], z[new])
        return self._report(lane)

    def _report(self, lane: LaneGeometry | None) -> list[Track]:
        tr = self.tracks
        x, y, vx, vy = tr.X.T
        with np.errstate(divide="ignore", invalid="ignore"):
            ttc = np.where((vx < -1e-3) & (x > 0), x / -vx, np.inf)
        inside = in_ego_lane(x, y, lane)
        vx_std = np.sqrt(tr.P[:, 2, 2])
        cols = zip(
            tr.ids.tolist(), tr.cls.tolist(), tr.boxes.astype(np.float32), tr.scores.tolist(),
            x.tolist(), y.tolist(), vx.tolist(), vy.tolist(), x.tolist(), ttc.tolist(),
            tr.age.tolist(), tr.hits.tolist(), tr.missed.tolist(), inside.tolist(),
            vx_std.tolist(), tr.streak.tolist(), tr.best_streak.tolist(), strict=True,
        )  # fmt: skip
        return [Track(*c) for c in cols]


class LaneSmoother:
    """Exponential smoothing of Lanes.xs over frames, per slot and row.

    alpha: weight of the new frame (0..1]. A row seen now and before is blended; a row seen
    only now is taken as it is; the output has the rows of the current frame. A slot absent
    for up to hold_frames frames keeps its last lane (no flicker); absent longer, it is
    reset, so a lane that appears is taken directly. A slot whose lane moved by more than
    jump_px on average (a lane change swaps slots) is taken directly too."""

    def __init__(self, alpha: float = 0.5, hold_frames: int = 3, jump_px: float = 40.0):
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        self.alpha, self.hold_frames, self.jump_px = alpha, hold_frames, jump_px
        self.reset()

    def reset(self) -> None:
        self.xs: np.ndarray | None = None  # float64[L, R] pixels, NO_POINT where none
        self.exist, self.absent = np.zeros(0, np.float32), np.zeros(0, np.int64)

    def __call__(self, lanes: Lanes) -> Lanes:
        """lanes: this frame's Lanes (xs float[L, R] pixels) -> a new, smoothed Lanes."""
        new = np.asarray(lanes.xs, np.float64)
        exist = np.asarray(lanes.exist, np.float32)
        if self.xs is None or self.xs.shape != new.shape:
            self.xs = np.full(new.shape, NO_POINT)
            self.exist, self.absent = exist.copy(), np.zeros(len(new), np.int64)
        old = self.xs
        seen, had = new != NO_POINT, old != NO_POINT
        both = seen & had
        n_both = both.sum(axis=1)
        jump = np.where(both, np.abs(new - old), 0.0).sum(axis=1) > self.jump_px * n_both
        blend = both & ~jump[:, None]
        present = seen.any(axis=1)
        smoothed = np.where(blend, old + self.alpha * (new - old), new)
        self.absent = np.where(present, 0, self.absent + 1)
        gone = ~present & (self.absent > self.hold_frames)
        self.xs = np.where(present[:, None], smoothed, np.where(gone[:, None], NO_POINT, old))
        self.exist = np.where(present | gone, exist, self.exist)
        return Lanes(self.xs.astype(np.float32), np.asarray(lanes.rows), self.exist.copy())


def read_scene(
    pred: FramePrediction, calib: Calib, tracker: Tracker, t_s: float, ego_speed_mps: float | None
) -> tuple[LaneGeometry, list[Track], Warnings]:
    """What one frame's decoded prediction tells the driver: the ego lane's geometry, the
    updated tracks (tracker advanced to t_s seconds) and the warnings. The 'track' stage of
    every loop (the real-time one, the PyTorch and the naive ones the bench compares)."""
    lane = lane_geometry(pred.lanes, calib)
    tracks = tracker.update(t_s, pred.detections, lane)
    return lane, tracks, warnings(tracks, lane, ego_speed_mps)
