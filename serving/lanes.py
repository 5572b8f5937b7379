"""The ego lane: its geometry in metres from one frame's lanes, and lane smoothing over frames.

`lane_geometry` back-projects the ego_left and ego_right points to the flat road and fits
each side with y = c0 + c1 x + c2 x^2 (ego frame: x forward, y left, metres); one Numba
kernel does the back-projection, the masked least squares and the 3 x 3 solves (~10 us).
`LaneSmoother` blends each slot's points with the previous frames' (pixels), one Numba
kernel too."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numba import njit

from serving.config import TrackingConfig
from serving.geometry import Calib
from serving.postprocess import NO_POINT, Lanes
from serving.projection import ground_point, pack

EGO_SLOTS = ("ego_left", "ego_right")  # the contract's names of the ego lane's two lines
NOMINAL_LANE_WIDTH_M = 3.5
_X_SCALE = 0.1  # fit in tens of metres: a well-conditioned 3 x 3 normal matrix
_RIDGE = 1e-2  # pulls c2 to 0 when the points span a short range (a tiny bias otherwise)


def ego_slots(lane_slots: Sequence[str]) -> tuple[int, int]:
    """Indices of ego_left and ego_right among the contract's lane slots."""
    missing = [s for s in EGO_SLOTS if s not in lane_slots]
    if missing:
        raise ValueError(f"lane slots {list(lane_slots)} lack {', '.join(missing)}")
    return lane_slots.index(EGO_SLOTS[0]), lane_slots.index(EGO_SLOTS[1])


@dataclass(frozen=True)
class LaneGeometry:
    """The ego lane in the ego frame (x forward, y left, metres), near the vehicle.

    offset_m: the ego's lateral offset from the lane centre at x = 0, metres, positive when
    the ego is LEFT of the centre. width_m: lane width at x = 0, metres (the nominal 3.5 m
    when only one line is seen). curvature_1pm: signed curvature, 1/m, positive when the lane
    turns left. heading_rad: the lane's direction relative to ego x, positive to the left.
    valid: at least one ego line was fitted (and, with both, the width is plausible).
    The lane centre is y(x) = -offset_m + tan(heading_rad) x + curvature_1pm / 2 x^2.
    """

    offset_m: float
    width_m: float
    curvature_1pm: float
    heading_rad: float
    valid: bool

    @classmethod
    def invalid(cls) -> LaneGeometry:
        nan = float("nan")
        return cls(nan, nan, nan, nan, False)

    def centre_y(self, x: np.ndarray) -> np.ndarray:
        """Lateral position (ego y, metres) of the lane centre at forward distances x
        (float[N], metres). NaN when the geometry is not valid."""
        x = np.asarray(x, dtype=np.float64)
        if not self.valid:
            return np.full(x.shape, np.nan)
        c1, c2 = math.tan(self.heading_rad), 0.5 * self.curvature_1pm
        return -self.offset_m + x * (c1 + c2 * x)

    def packed(self) -> np.ndarray:
        """float64[5] for the tracker kernel: valid, offset, width, tan(heading), c2."""
        return np.array(
            [float(self.valid), self.offset_m, self.width_m, math.tan(self.heading_rad),
             0.5 * self.curvature_1pm], np.float64,
        )  # fmt: skip


def in_ego_lane(x: np.ndarray, y: np.ndarray, lane: LaneGeometry | None) -> np.ndarray:
    """bool[N]: ground points (ego frame, metres) inside the ego lane: |y - centre(x)| <
    width / 2 with a valid lane, |y| < 1.8 m without one (serving.kalman does the same)."""
    y = np.asarray(y, np.float64)
    if lane is None or not lane.valid:
        return np.abs(y) < 1.8
    return np.abs(y - lane.centre_y(x)) < 0.5 * lane.width_m


@njit(cache=True, nogil=True)
def _solve3(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """x of a x = b for a float64[3, 3] (Gaussian elimination, partial pivoting): the
    normal matrix is symmetric positive definite, LAPACK would be overkill (and scipy)."""
    m = np.empty((3, 4))
    m[:, :3], m[:, 3] = a, b
    for k in range(3):
        p = k + np.argmax(np.abs(m[k:, k]))
        if p != k:
            for j in range(4):
                m[k, j], m[p, j] = m[p, j], m[k, j]
        for i in range(k + 1, 3):
            f = m[i, k] / m[k, k]
            for j in range(k, 4):
                m[i, j] -= f * m[k, j]
    x = np.empty(3)
    for i in range(2, -1, -1):
        acc = m[i, 3]
        for j in range(i + 1, 3):
            acc -= m[i, j] * x[j]
        x[i] = acc / m[i, i]
    return x


@njit(cache=True, nogil=True)
def _fit_sides(
    xs: np.ndarray, rows: np.ndarray, cam: np.ndarray, max_range: float, coef: np.ndarray
) -> np.ndarray:
    """Least-squares y = c0 + c1 x + c2 x^2 of each side. xs float64[2, R] pixels (NO_POINT
    where none) on rows float64[R]; points between 0 and max_range metres ahead are used.
    Writes coef float64[2, 3] (c0 m, c1, c2 1/m); returns bool[2], True where a side had
    >= 3 points. The normal equations in x / 10 with a small ridge on c2 (see _RIDGE)."""
    fitted = np.zeros(2, np.bool_)
    for s in range(2):
        ata = np.zeros((3, 3))
        atb = np.zeros(3)
        n = 0
        for r in range(xs.shape[1]):
            if xs[s, r] == NO_POINT:
                continue
            gx, gy = ground_point(cam, xs[s, r], rows[r])
            if not (gx > 0.0 and gx <= max_range):  # NaN fails too
                continue
            t = gx * _X_SCALE
            a = (1.0, t, t * t)
            for i in range(3):
                atb[i] += a[i] * gy
                for j in range(3):
                    ata[i, j] += a[i] * a[j]
            n += 1
        fitted[s] = n >= 3
        if fitted[s]:
            ata[2, 2] += _RIDGE
            sol = _solve3(ata, atb)
            coef[s, 0], coef[s, 1] = sol[0], sol[1] * _X_SCALE
            coef[s, 2] = sol[2] * _X_SCALE * _X_SCALE
    return fitted


def lane_geometry(
    lanes: Lanes,
    calib: Calib,
    ego: tuple[int, int],
    max_range_m: float,
    cam: np.ndarray | None = None,
) -> LaneGeometry:
    """Offset, width, curvature and heading of the ego lane from one frame's lanes.

    lanes: Lanes (xs float[L, R] pixels, NO_POINT = -2 where none; rows float[R] pixels) in
    the image `calib` describes; ego: the slots of ego_left and ego_right (``ego_slots``).
    Their points between 0 and max_range_m (metres, ego x) are back-projected to the flat
    road and each side is fitted with y = c0 + c1 x + c2 x^2 (>= 3 points). With one side
    the centre is that line -/+ half the nominal 3.5 m width. Plausible widths with both
    sides: 2 to 6 m. cam: pack(calib), when the caller keeps it."""
    xs = np.asarray(lanes.xs, np.float64)[list(ego)]
    rows = np.asarray(lanes.rows, np.float64)
    coef = np.zeros((2, 3))
    fitted = _fit_sides(xs, rows, pack(calib) if cam is None else cam, max_range_m, coef)
    half = 0.5 * NOMINAL_LANE_WIDTH_M
    if fitted.all():
        c0, width = 0.5 * (coef[0, 0] + coef[1, 0]), float(coef[0, 0] - coef[1, 0])
    elif fitted[0]:
        c0, width = coef[0, 0] - half, NOMINAL_LANE_WIDTH_M
    elif fitted[1]:
        c0, width = coef[1, 0] + half, NOMINAL_LANE_WIDTH_M
    else:
        return LaneGeometry.invalid()
    c1, c2 = coef[fitted, 1].mean(), coef[fitted, 2].mean()
    return LaneGeometry(
        offset_m=float(-c0),
        width_m=width,
        curvature_1pm=float(2.0 * c2),
        heading_rad=float(math.atan(c1)),
        valid=bool(2.0 <= width <= 6.0),
    )


@njit(cache=True, nogil=True)
def _smooth(
    new: np.ndarray,
    exist: np.ndarray,
    xs: np.ndarray,
    kept: np.ndarray,
    absent: np.ndarray,
    alpha: float,
    hold: int,
    jump_px: float,
    out: np.ndarray,
) -> None:
    """One frame of LaneSmoother (see there) on its state: xs float64[L, R] (updated),
    kept float32[L] existence (updated), absent int64[L] (updated); new float[L, R] and
    exist float[L] this frame's; out float32[L, R] gets the smoothed lanes."""
    n_lanes, n_rows = xs.shape
    for k in range(n_lanes):
        n_both, moved, present = 0, 0.0, False
        for r in range(n_rows):
            if new[k, r] != NO_POINT:
                present = True
                if xs[k, r] != NO_POINT:
                    n_both += 1
                    moved += abs(new[k, r] - xs[k, r])
        jump = moved > jump_px * n_both
        absent[k] = 0 if present else absent[k] + 1
        gone = not present and absent[k] > hold
        for r in range(n_rows):
            if present:  # this frame's rows: blended where seen before, else taken as they are
                seen_before = new[k, r] != NO_POINT and xs[k, r] != NO_POINT
                v = (
                    xs[k, r] + alpha * (new[k, r] - xs[k, r])
                    if seen_before and not jump
                    else new[k, r]
                )
                xs[k, r] = v
            elif gone:
                xs[k, r] = NO_POINT
            out[k, r] = xs[k, r]
        if present or gone:
            kept[k] = exist[k]


class LaneSmoother:
    """Exponential smoothing of Lanes.xs over frames, per slot and row (source pixels).

    config.lane_alpha: weight of the new frame (0..1]. A row seen now and before is blended;
    a row seen only now is taken as it is; the output has the rows of the current frame. A
    slot absent for up to lane_hold_frames frames keeps its last lane (no flicker); absent
    longer, it is reset, so a lane that appears is taken directly. A slot whose lane moved
    by more than lane_jump_px on average (a lane change swaps slots) is taken directly too."""

    def __init__(self, config: TrackingConfig):
        if not 0.0 < config.lane_alpha <= 1.0:
            raise ValueError(f"lane_alpha must be in (0, 1], got {config.lane_alpha}")
        self.alpha, self.hold_frames = config.lane_alpha, config.lane_hold_frames
        self.jump_px = config.lane_jump_px
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
        out = np.empty(new.shape, np.float32)
        _smooth(new, exist, self.xs, self.exist, self.absent, self.alpha, self.hold_frames,
                self.jump_px, out)  # fmt: skip
        return Lanes(out, np.asarray(lanes.rows), self.exist.copy())
