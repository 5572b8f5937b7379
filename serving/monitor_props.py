"""What the monitor measures on each frame: cheap properties of the model input and of the
model's predictions, one float each, in the order of PROPERTIES.

Image properties are read from the preprocessed input (float32[3, h, w], the contract's
mean/std undone), never from the full camera frame: the loop already paid for that pass. They
are read on every eighth row (32 whole rows of 448 at 448 x 256, with the rows above and below
for the Laplacian): whole rows vectorise, a strided grid does not. The input is 1.4 MB and
inference pushes it out of the cache, so the cost is memory traffic: every fourth row (3/4 of
the input read) took 153 us p50 from memory on the 2-core machine, every eighth row 44 us.

* brightness: mean grey level (ITU-R 601 luma), 0..255
* contrast: RMS contrast, the standard deviation of the grey levels
* sharpness: log10(1 + variance of the 4-neighbour Laplacian) of the grey image: fog and blur
  lower it, sensor noise raises it; the log makes its long right tail usable for a range
* far_sharpness: the same over the middle third of the image, where the road meets the
  horizon: fog and haze blur what is far first (on the simulator's clips it flags 5 of 8 fog
  clips by itself, none of 60 clear-day ones)
* saturation: mean HSV saturation (max - min) / max of the RGB values, 0..1 (fog washes it out)
* far_saturation: log10 of the same over the top two thirds of the image: the sky and the
  far field, down to where the road is near. Fog adds an achromatic airlight whose share
  grows with distance (Koschmieder's law), so it takes the colour of what is far first while
  the near field keeps its own; it multiplies saturation, hence the log: the same fog is the
  same shift on a vivid scene and a dull one. Over the top third alone (the sky) it missed
  the simulator's fog, whose near trees, signs and trucks keep their colour above the horizon
* far_chroma: log10(1 + the spread of colour over the top two thirds), the spread being
  sqrt(var(rg) + var(yb)) of the opponent chroma rg = R - G, yb = (R + G) / 2 - B (Hasler and
  Suesstrunk's colourfulness without its mean term). Fog pulls every far colour towards the
  one airlight colour, whatever its tint; a tinted fog or a colour cast keeps the far field
  saturated (far_saturation misses it) but leaves it one colour, with no spread. Designed on
  simulated clips apart from the tests' (8 fog clips, 100 + 30 clear-day ones): over a
  clear-day profile (a clip flagged: half its frames out of the range), far_chroma flagged 7
  of 8 fog clips, far_saturation 4, the whole image's saturation, sharpness and far_sharpness
  2 each, brightness, contrast and dark none; the middle third's mean dark channel (7 x 7
  minimum, tried and left out) 2; no property put a held-out clear-day frame out of range
* dark: share of the sampled points darker than DARK_GREY (night, under-exposure, a covered
  lens). Its least margin is 0.1: day frames in deep shadow reach 0.2 (the simulator's clear
  day frames up to 0.16 at 1280 x 720, rainy ones 0.29, a held-out test clip leaving a
  shadow 0.21), night frames start at 0.37
* motion: mean absolute grey difference from the previous frame (not compared with the
  profile: it feeds the frozen-camera check; NaN on the first frame)

Prediction properties (source pixels, from FramePrediction):

* lanes: lane slots with at least 2 points; lane_conf: mean existence probability of the slots
* obstacles: detections above the contract's threshold; det_score: their mean score (NaN
  when there are none: the frame is left out of that property's window)
* pitch: camera pitch in degrees (+ = looking down, as serving.geometry) from the vanishing
  point of the ego lanes: straight lines fitted to the near (lower) half of each ego lane
  meet at the horizon row v, and pitch = atan((cy - v) / fy) with the calibration's cy, fy.
  On a flat road it equals the calibration's pitch; a camera knocked 3 degrees moves it 3
  degrees. NaN when an ego lane has fewer than 4 points or the lanes do not converge.
* the class mix is counted per class (CLASSES), not as one float
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from serving.postprocess import NO_POINT, FramePrediction

DARK_GREY = 20.0  # grey level below which a point counts as dark (of 255)
LUMA = (0.299, 0.587, 0.114)  # RGB weights of the grey level (ITU-R 601)
ROW_STEP = 8  # image properties read every eighth row of the model input (whole rows)
SAT_FLOOR = 1e-3  # far_saturation's floor before the log (a grey image reads -3)
MAX_COUNT = 15  # obstacle counts from 15 up share one bin


@dataclass(frozen=True)
class Prop:
    """name; unit as the report prints it; kind: "continuous" (bins from the profile's
    quantiles) or "count" (one bin per whole number); resolution: the smallest difference
    that matters, in the unit (the least margin around the training range)."""

    name: str
    unit: str
    kind: str
    resolution: float


PROPERTIES: tuple[Prop, ...] = (
    Prop("brightness", "grey level", "continuous", 2.0),
    Prop("contrast", "grey levels (std)", "continuous", 1.0),
    Prop("sharpness", "log10(1 + var of Laplacian)", "continuous", 0.05),
    Prop("far_sharpness", "log10(1 + var of Laplacian), middle third", "continuous", 0.05),
    Prop("saturation", "HSV saturation 0-1", "continuous", 0.01),
    Prop("far_saturation", "log10 HSV saturation, top two thirds", "continuous", 0.02),
    Prop("far_chroma", "log10(1 + chroma spread), top two thirds", "continuous", 0.02),
    Prop("dark", "share of the image below grey 20", "continuous", 0.1),
    Prop("lanes", "lane slots found", "count", 1.0),
    Prop("lane_conf", "mean lane existence probability", "continuous", 0.02),
    Prop("obstacles", "detections per frame", "count", 1.0),
    Prop("det_score", "mean detection score", "continuous", 0.02),
    Prop("pitch", "camera pitch from the lanes, degrees", "continuous", 0.25),
)
NAMES: tuple[str, ...] = tuple(p.name for p in PROPERTIES)
INDEX = {n: i for i, n in enumerate(NAMES)}
IMAGE = NAMES[:8]  # filled by ImageProps
PREDICTION = NAMES[8:]  # filled by prediction_props


@njit(cache=True, nogil=True, fastmath=True)
def _grey_row(x: np.ndarray, y: int, w: np.ndarray, g0: float, row: np.ndarray) -> None:
    """Grey levels (0..255) of row y of x float32[3, h, W] into row float32[W]: the luma
    weights times the contract's std in w float32[3], its mean folded into g0."""
    r0, r1, r2 = x[0, y], x[1, y], x[2, y]
    for i in range(len(row)):
        row[i] = w[0] * r0[i] + w[1] * r1[i] + w[2] * r2[i] + g0


@njit(cache=True, nogil=True, fastmath=True)
def _colour(
    x: np.ndarray, y: int, scale: np.ndarray, bias: np.ndarray
) -> tuple[float, float, float, float, float]:
    """Sums over row y of the RGB values (0..255 after value * scale + bias): the HSV
    saturation (max - min) / max, max floored at 0.5 so that black reads 0, not 0 / 0; the
    opponent chroma rg = R - G and yb = (R + G) / 2 - B (Hasler and Suesstrunk's), and their
    squares. Ternaries, not max(): they vectorise (8 us instead of 47 per 64 rows)."""
    r0, r1, r2 = x[0, y], x[1, y], x[2, y]
    half = np.float32(0.5)
    sat = rg = rg2 = yb = yb2 = np.float32(0.0)
    for i in range(len(r0)):
        r = r0[i] * scale[0] + bias[0]
        g = r1[i] * scale[1] + bias[1]
        b = r2[i] * scale[2] + bias[2]
        hi = r if r > g else g
        hi = hi if hi > b else b
        lo = r if r < g else g
        lo = lo if lo < b else b
        sat += (hi - lo) / (hi if hi > half else half)
        c1 = r - g
        c2 = half * (r + g) - b
        rg += c1
        rg2 += c1 * c1
        yb += c2
        yb2 += c2 * c2
    return float(sat), float(rg), float(rg2), float(yb), float(yb2)


@njit(cache=True, nogil=True, fastmath=True)
def _row_sums(
    up: np.ndarray, mid: np.ndarray, low: np.ndarray, prev: np.ndarray
) -> tuple[float, float, float, float, float, float]:
    """Over one sampled row mid (grey, float32[W]) with the rows above and below it: sums of
    grey, grey squared, dark points, |mid - prev| and of the 4-neighbour Laplacian and its
    square (interior columns). float32 sums per row (they vectorise), float64 across rows."""
    s = ss = dk = d = sl = sll = np.float32(0.0)
    dark = np.float32(DARK_GREY)
    for i in range(len(mid)):
        g = mid[i]
        s += g
        ss += g * g
        dk += np.float32(1.0) if g < dark else np.float32(0.0)
        d += abs(g - prev[i])
    for i in range(1, len(mid) - 1):
        lap = up[i] + low[i] + mid[i - 1] + mid[i + 1] - np.float32(4.0) * mid[i]
        sl += lap
        sll += lap * lap
    return float(s), float(ss), float(dk), float(d), float(sl), float(sll)


@njit(cache=True, nogil=True)
def _image_stats(
    x: np.ndarray, scale: np.ndarray, bias: np.ndarray, cur: np.ndarray, prev: np.ndarray,
    out: np.ndarray,
) -> None:  # fmt: skip
    """x float32[3, h, W] normalised RGB (value = x * scale + bias, 0..255). Row
    ROW_STEP // 2 + k * ROW_STEP is sampled into cur[k] (float32[h // ROW_STEP, W]), with
    its neighbours for the Laplacian; prev: the previous frame's cur (motion NaN when
    prev[0, 0] < 0, the "no previous frame" mark). out float64[len(IMAGE) + 1]: the IMAGE
    properties, then the motion."""
    gh, w = cur.shape
    luma = np.array(LUMA, np.float32) * scale
    g0 = float(np.sum(np.array(LUMA, np.float32) * bias))
    up, low = np.empty(w, np.float32), np.empty(w, np.float32)
    t = np.zeros(6)  # sums over all rows: grey, grey^2, dark, |diff|, lap, lap^2
    far = np.zeros(2)  # lap, lap^2 over the middle third
    sat = np.zeros(2)  # saturation over all rows, over the top two thirds
    chroma = np.zeros(4)  # rg, rg^2, yb, yb^2 over the top two thirds
    third = max(gh // 3, 1)
    upper = min(2 * third, gh)  # rows of the top two thirds
    for k in range(gh):
        y = ROW_STEP // 2 + k * ROW_STEP
        _grey_row(x, y, luma, g0, cur[k])
        _grey_row(x, y - 1, luma, g0, up)
        _grey_row(x, min(y + 1, x.shape[1] - 1), luma, g0, low)
        sums = _row_sums(up, cur[k], low, prev[k])
        for j in range(6):
            t[j] += sums[j]
        if third <= k < 2 * third:
            far[0] += sums[4]
            far[1] += sums[5]
        s, rg, rg2, yb, yb2 = _colour(x, y, scale, bias)
        sat[0] += s
        if k < upper:
            sat[1] += s
            chroma[0] += rg
            chroma[1] += rg2
            chroma[2] += yb
            chroma[3] += yb2
    n = gh * w
    mean = t[0] / n
    out[0] = mean
    out[1] = math.sqrt(max(t[1] / n - mean * mean, 0.0))
    out[2] = _log_var(t[4], t[5], gh * (w - 2))
    out[3] = _log_var(far[0], far[1], third * (w - 2))
    out[4] = sat[0] / n
    m = upper * w  # pixels of the top two thirds
    out[5] = math.log10(max(sat[1] / m, SAT_FLOOR))
    spread = chroma[1] / m - (chroma[0] / m) ** 2 + chroma[3] / m - (chroma[2] / m) ** 2
    out[6] = math.log10(1.0 + math.sqrt(max(spread, 0.0)))
    out[7] = t[2] / n
    out[8] = t[3] / n if prev[0, 0] >= 0.0 else np.nan


@njit(cache=True, nogil=True)
def _log_var(s: float, ss: float, n: int) -> float:
    """log10(1 + variance) from a sum and a sum of squares of n values."""
    return math.log10(1.0 + max(ss / n - (s / n) ** 2, 0.0))


class ImageProps:
    """Image properties of successive model inputs (the sampled grey rows of the previous frame are
    kept for the motion property). mean, std: the contract's normalisation, RGB 0..255."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...], h: int, w: int):
        self.scale = np.asarray(std, np.float32)
        self.bias = np.asarray(mean, np.float32)
        shape = (max(h // ROW_STEP, 1), w)
        self.cur, self.prev = np.empty(shape, np.float32), np.empty(shape, np.float32)
        self._out = np.empty(len(IMAGE) + 1)
        self.reset()

    def reset(self) -> None:
        """Forget the previous frame (a new source)."""
        self.prev[:] = -1.0

    def __call__(self, x: np.ndarray, out: np.ndarray) -> float:
        """x float32[1, 3, h, w] or [3, h, w] model input -> out[: len(IMAGE)]; returns
        the motion (grey levels, NaN on the first frame)."""
        img = x[0] if x.ndim == 4 else x
        _image_stats(img, self.scale, self.bias, self.cur, self.prev, self._out)
        out[: len(IMAGE)] = self._out[:-1]
        self.cur, self.prev = self.prev, self.cur
        return float(self._out[-1])


@njit(cache=True, nogil=True)
def _near_fit(xs: np.ndarray, rows: np.ndarray) -> tuple[float, float, bool]:
    """Least-squares line x = a + b * y through the lower half (the near, straighter part) of
    one lane's points; xs float32[R] pixels (NO_POINT = none), rows float32[R] ascending."""
    n = 0
    for r in range(len(xs)):
        if xs[r] != NO_POINT:
            n += 1
    if n < 4:
        return 0.0, 0.0, False
    keep = n // 2
    sy = sx = syy = sxy = 0.0
    k = 0
    for r in range(len(xs) - 1, -1, -1):
        if xs[r] == NO_POINT:
            continue
        y, x = float(rows[r]), float(xs[r])
        sy += y
        sx += x
        syy += y * y
        sxy += x * y
        k += 1
        if k == keep:
            break
    den = k * syy - sy * sy
    if den <= 1e-9:
        return 0.0, 0.0, False
    b = (k * sxy - sx * sy) / den
    return (sx - b * sy) / k, b, True


@njit(cache=True, nogil=True)
def horizon_row(xs: np.ndarray, rows: np.ndarray, left: int, right: int) -> float:
    """Image row (source pixels) where the near halves of lanes `left` and `right` meet;
    NaN when either is too short or they do not converge upwards (left slope dx/dy must be
    below the right one by 0.05)."""
    a1, b1, ok1 = _near_fit(xs[left], rows)
    a2, b2, ok2 = _near_fit(xs[right], rows)
    if not (ok1 and ok2) or b2 - b1 < 0.05:
        return np.nan
    return (a1 - a2) / (b2 - b1)


@njit(cache=True, nogil=True)
def _prediction_stats(
    xs: np.ndarray,
    rows: np.ndarray,
    exist: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    left: int,
    right: int,
    class_counts: np.ndarray,
) -> tuple[float, float, float, float, float]:
    """(lanes, lane_conf, obstacles, det_score, horizon row) of one prediction (see the
    module doc), class_counts int64[C] filled; left < 0: no ego lanes, horizon NaN."""
    lanes = 0
    for k in range(xs.shape[0]):
        pts = 0
        for r in range(xs.shape[1]):
            pts += xs[k, r] != NO_POINT
        lanes += pts >= 2
    conf = exist.mean() if len(exist) else np.nan
    det = scores.mean() if len(scores) else np.nan
    class_counts[:] = 0
    for c in classes:
        if 0 <= c < len(class_counts):
            class_counts[c] += 1
    v = horizon_row(xs, rows, left, right) if left >= 0 else np.nan
    return float(lanes), conf, float(len(scores)), det, v


def prediction_props(
    pred: FramePrediction,
    ego: tuple[int, int] | None,
    cy: float,
    fy: float,
    out: np.ndarray,
    class_counts: np.ndarray,
) -> None:
    """pred (source pixels) -> out[PREDICTION] and class_counts int64[C].
    ego: slot indices of the ego-left and ego-right lanes (None: no pitch); cy, fy: the
    calibration's principal row and focal length, source pixels."""
    lanes, det = pred.lanes, pred.detections
    left, right = ego if ego is not None else (-1, -1)
    *vals, v = _prediction_stats(
        lanes.xs, lanes.rows, lanes.exist, det.scores, det.classes, left, right, class_counts
    )
    out[len(IMAGE) : len(IMAGE) + 4] = vals  # lanes, lane_conf, obstacles, det_score
    out[INDEX["pitch"]] = math.degrees(math.atan((cy - v) / fy)) if math.isfinite(v) else math.nan
