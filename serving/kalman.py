"""The tracker's per-frame work in one Numba kernel: predict, associate, update, delete,
spawn and report, on tracks kept as rows of two arrays (serving.tracking owns them).

Why one kernel: with 20 tracks the arithmetic is a few microseconds; written with numpy it
cost a millisecond of call overhead (dozens of small array operations per frame). The
formulas are those of serving.tracking.Tracker's docstring, in the same order, so the
kernel gives the numpy version's numbers to rounding.

Track row layout. Floats (fv, float64[cap, NF]): state x, y, vx, vy (ego frame, metres, m/s
relative to the ego), covariance P (4 x 4, row-major), box x1 y1 x2 y2 (source pixels),
score, time of the last detection (s), and the report: ttc (s, inf when not closing), in
the ego lane (0/1), vx 1-sigma (m/s). Integers (iv, int64[cap, NI]): id, class, age, hits,
missed, streak, best streak.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from serving.projection import FX, FY, HEIGHT, ground_point, project_ground

# float columns
X, Y, VX, VY = range(4)
P0 = 4  # P[i, j] at P0 + 4 i + j
BOX = 20  # x1 y1 x2 y2 at BOX .. BOX + 3
SCORE, LAST_HIT, TTC, IN_LANE, VX_STD = range(24, 29)
NF = 29
# integer columns
ID, CLS, AGE, HITS, MISSED, STREAK, BEST = range(7)
NI = 7
# settings, in this order (pack_settings)
SETTINGS = ("max_missed", "max_coast_s", "iou_gate", "accel_long_mps2", "accel_lat_mps2",
            "sigma_u_px", "sigma_v_px", "range_rel_err", "init_speed_std_mps")  # fmt: skip
CHI2_2DOF_99 = 9.21  # Mahalanobis gate for a 2-D position measurement, 99 %


@njit(cache=True, nogil=True, inline="always")
def _meas_var(cam: np.ndarray, cfg: np.ndarray, x: float, y: float) -> tuple[float, float]:
    """Variances (m^2) of a ground measurement at (x, y), ego frame."""
    r = max(x, 1.0)
    sx = 0.1 + cfg[7] * r + r * r / (cam[FY] * cam[HEIGHT]) * cfg[6]
    sy = 0.1 + r * cfg[5] / cam[FX] + abs(y) / r * (sx - 0.1)
    return sx * sx, sy * sy


@njit(cache=True, nogil=True, inline="always")
def _cov(fv: np.ndarray, i: int) -> np.ndarray:
    """Track i's covariance, a float64[4, 4] copy."""
    p = np.empty((4, 4))
    for r in range(4):
        for c in range(4):
            p[r, c] = fv[i, P0 + 4 * r + c]
    return p


@njit(cache=True, nogil=True, inline="always")
def _set_cov(fv: np.ndarray, i: int, p: np.ndarray) -> None:
    for r in range(4):
        for c in range(4):
            fv[i, P0 + 4 * r + c] = p[r, c]


@njit(cache=True, nogil=True, inline="always")
def _mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b for small matrices, without BLAS (Numba's @ would need SciPy's)."""
    out = np.zeros((a.shape[0], b.shape[1]))
    for r in range(a.shape[0]):
        for k in range(a.shape[1]):
            for c in range(b.shape[1]):
                out[r, c] += a[r, k] * b[k, c]
    return out


@njit(cache=True, nogil=True)
def _predict(fv: np.ndarray, n: int, dt: float, cfg: np.ndarray) -> None:
    """Constant velocity over dt seconds; white-noise acceleration per axis."""
    f = np.eye(4)
    f[0, 2] = f[1, 3] = dt
    a2 = (cfg[3] ** 2, cfg[4] ** 2)
    q = np.zeros((4, 4))
    for k in range(2):  # per axis (x, y): q dt^3/3, dt^2/2, dt
        q[k, k], q[k + 2, k + 2] = a2[k] * dt**3 / 3.0, a2[k] * dt
        q[k, k + 2] = q[k + 2, k] = a2[k] * dt**2 / 2.0
    for i in range(n):
        fv[i, X] += fv[i, VX] * dt
        fv[i, Y] += fv[i, VY] * dt
        _set_cov(fv, i, _mul(_mul(f, _cov(fv, i)), f.T) + q)


@njit(cache=True, nogil=True)
def _move_boxes(fv: np.ndarray, n: int, prev: np.ndarray, cam: np.ndarray) -> None:
    """Each box follows its track's predicted ground motion: the bottom centre moves with
    the projection of the ground point, the size scales with 1 / range."""
    for i in range(n):
        u0, v0 = project_ground(cam, prev[i, 0], prev[i, 1])
        u1, v1 = project_ground(cam, fv[i, X], fv[i, Y])
        du, dv, scale = u1 - u0, v1 - v0, 1.0
        good = math.isfinite(du) and math.isfinite(dv) and prev[i, 0] > 0.5 and fv[i, X] > 0.5
        if good:
            scale = prev[i, 0] / fv[i, X]
        else:
            du = dv = 0.0
        b = fv[i, BOX : BOX + 4]
        w, h = (b[2] - b[0]) * scale, (b[3] - b[1]) * scale
        cx, bottom = 0.5 * (b[0] + b[2]) + du, b[3] + dv
        b[0], b[1], b[2], b[3] = cx - w / 2, bottom - h, cx + w / 2, bottom


@njit(cache=True, nogil=True, inline="always")
def _iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = max(min(a[2], b[2]) - max(a[0], b[0]), 0.0)
    ih = max(min(a[3], b[3]) - max(a[1], b[1]), 0.0)
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    v = inter / union if union != 0.0 else math.nan
    return v if math.isfinite(v) else 0.0


@njit(cache=True, nogil=True)
def greedy_match(score: np.ndarray, gate: float, ti: np.ndarray, di: np.ndarray, m: int) -> int:
    """Greedy one-to-one matching, best score first (ties: the first in row-major order).
    score float[A, B] (higher is better; -inf forbids a pair; modified); pairs below gate
    are never matched. Appends the pairs to ti, di from index m; returns the new count."""
    a, b = score.shape
    for i in range(a):
        for j in range(b):
            if not score[i, j] >= gate:
                score[i, j] = -np.inf
    for _ in range(min(a, b)):
        best, bi, bj = -np.inf, -1, -1
        for i in range(a):
            for j in range(b):
                if score[i, j] > best:
                    best, bi, bj = score[i, j], i, j
        if bi < 0:
            break
        ti[m], di[m] = bi, bj
        m += 1
        score[bi, :] = -np.inf
        score[:, bj] = -np.inf
    return m


@njit(cache=True, nogil=True, inline="always")
def _innovation(fv: np.ndarray, i: int, cam: np.ndarray, cfg: np.ndarray) -> np.ndarray:
    """float64[2, 2]: position covariance plus the measurement noise at the predicted
    position (not at the measurement, which would bias the weights)."""
    vx, vy = _meas_var(cam, cfg, fv[i, X], fv[i, Y])
    return np.array([[fv[i, P0] + vx, fv[i, P0 + 1]], [fv[i, P0 + 4], fv[i, P0 + 5] + vy]])


@njit(cache=True, nogil=True, inline="always")
def _inv2(s: np.ndarray) -> np.ndarray:
    det = s[0, 0] * s[1, 1] - s[0, 1] * s[1, 0]
    return np.array([[s[1, 1], -s[0, 1]], [-s[1, 0], s[0, 0]]]) / det


@njit(cache=True, nogil=True)
def _associate(fv, iv, n, boxes, classes, z, cam, cfg, ti, di) -> int:
    """Track and detection indices (ti, di) of the matches; returns their count. IoU of
    the predicted box with a detection of the same class first (gate iou_gate), then what
    is left over on the ground, by Mahalanobis distance (chi-square 99 % gate)."""
    d = len(boxes)
    score = np.full((n, d), -np.inf)
    for i in range(n):
        for j in range(d):
            if iv[i, CLS] == classes[j]:
                score[i, j] = _iou(fv[i, BOX : BOX + 4], boxes[j])
    m = greedy_match(score, cfg[2], ti, di, 0)
    if m >= min(n, d):
        return m
    score[:] = -np.inf
    for i in range(n):
        if (ti[:m] == i).any():
            continue
        inv = _inv2(_innovation(fv, i, cam, cfg))
        for j in range(d):
            if iv[i, CLS] != classes[j] or (di[:m] == j).any():
                continue
            e0, e1 = z[j, 0] - fv[i, X], z[j, 1] - fv[i, Y]
            score[i, j] = -(e0 * (inv[0, 0] * e0 + inv[0, 1] * e1)
                            + e1 * (inv[1, 0] * e0 + inv[1, 1] * e1))  # fmt: skip
    return greedy_match(score, -CHI2_2DOF_99, ti, di, m)


@njit(cache=True, nogil=True)
def _update(fv: np.ndarray, i: int, zx: float, zy: float, cam: np.ndarray, cfg: np.ndarray):
    """Kalman update of track i with the ground measurement (zx, zy), metres."""
    p = _cov(fv, i)
    k = _mul(p[:, :2], _inv2(_innovation(fv, i, cam, cfg)))  # [4, 2]
    e0, e1 = zx - fv[i, X], zy - fv[i, Y]
    for r in range(4):
        fv[i, r] += k[r, 0] * e0 + k[r, 1] * e1
    p = p - _mul(k, p[:2, :])
    _set_cov(fv, i, 0.5 * (p + p.T))


@njit(cache=True, nogil=True)
def _spawn(fv, iv, n, next_id, box, score, cls, zx, zy, t, cam, cfg) -> None:
    """A new track in row n at ground position (zx, zy), at rest relative to the ego."""
    fv[n, :] = 0.0
    fv[n, X], fv[n, Y] = zx, zy
    vx, vy = _meas_var(cam, cfg, zx, zy)
    fv[n, P0 + 0], fv[n, P0 + 5] = vx, vy
    fv[n, P0 + 10] = fv[n, P0 + 15] = cfg[8] ** 2
    fv[n, BOX : BOX + 4] = box
    fv[n, SCORE], fv[n, LAST_HIT] = score, t
    iv[n, ID], iv[n, CLS], iv[n, AGE], iv[n, HITS] = next_id, cls, 0, 1
    iv[n, MISSED], iv[n, STREAK], iv[n, BEST] = 0, 1, 1


@njit(cache=True, nogil=True)
def _report(fv: np.ndarray, n: int, lane: np.ndarray) -> None:
    """TTC, in-ego-lane and the vx 1-sigma of every track (see the module doc)."""
    for i in range(n):
        x, y, vx = fv[i, X], fv[i, Y], fv[i, VX]
        fv[i, TTC] = x / -vx if (vx < -1e-3 and x > 0) else np.inf
        if lane[0] > 0.0:  # valid: offset, width, tan(heading), c2
            centre = -lane[1] + x * (lane[3] + lane[4] * x)
            fv[i, IN_LANE] = abs(y - centre) < 0.5 * lane[2]
        else:
            fv[i, IN_LANE] = abs(y) < 1.8
        fv[i, VX_STD] = math.sqrt(fv[i, P0 + 10])


@njit(cache=True, nogil=True)
def step(fv, iv, n, next_id, boxes, scores, classes, t, dt, cam, cfg, lane):
    """One frame for the n tracks in rows 0..n-1 (capacity >= n + len(boxes)): predict by
    dt seconds, associate the detections (boxes float64[D, 4] source pixels, scores, classes
    int64[D]), update, delete, spawn, report. Returns (track count, next id)."""
    prev = fv[:n, :2].copy()
    _predict(fv, n, dt, cfg)
    _move_boxes(fv, n, prev, cam)
    d = len(boxes)
    z = np.empty((d, 2))
    keep = np.zeros(d, np.bool_)
    for j in range(d):
        z[j, 0], z[j, 1] = ground_point(cam, 0.5 * (boxes[j, 0] + boxes[j, 2]), boxes[j, 3])
        keep[j] = math.isfinite(z[j, 0]) and math.isfinite(z[j, 1])
    boxes, scores, classes, z = boxes[keep], scores[keep], classes[keep], z[keep]
    ti, di = np.empty(len(z), np.int64), np.empty(len(z), np.int64)
    m = _associate(fv, iv, n, boxes, classes, z, cam, cfg, ti, di)
    for i in range(n):
        streak = iv[i, STREAK] + 1
        iv[i, AGE] += 1
        iv[i, MISSED] += 1
        iv[i, STREAK] = 0
        for k in range(m):
            if ti[k] == i:
                j = di[k]
                _update(fv, i, z[j, 0], z[j, 1], cam, cfg)
                fv[i, BOX : BOX + 4] = boxes[j]
                fv[i, SCORE], fv[i, LAST_HIT] = scores[j], t
                iv[i, HITS] += 1
                iv[i, MISSED], iv[i, STREAK] = 0, streak
                iv[i, BEST] = max(iv[i, BEST], streak)
    kept = 0
    for i in range(n):  # delete: too many missed frames or too long without a detection
        if iv[i, MISSED] <= cfg[0] and t - fv[i, LAST_HIT] <= cfg[1]:
            fv[kept], iv[kept] = fv[i], iv[i]
            kept += 1
    for j in range(len(z)):
        if not (di[:m] == j).any():
            _spawn(fv, iv, kept, next_id, boxes[j], scores[j], classes[j], z[j, 0], z[j, 1], t,
                   cam, cfg)  # fmt: skip
            kept += 1
            next_id += 1
    _report(fv, kept, lane)
    return kept, next_id
