"""Raw model outputs -> lanes and obstacles, in Numba.

These are the functions that the real-time loop and `perception evaluate` both call, with the
thresholds from the model's contract, so evaluation measures what ships. Hand-written in
Numba because the decode must stay well under a millisecond on one core and no library
decodes row-anchor lanes; NMS is written here too (torchvision's needs torch, which serving
never imports; numpy NMS is ~10x slower at the same size).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numba import njit

from serving.contract import BOX_BOTTOM, BOX_LEFT, BOX_RIGHT, BOX_TOP, ModelContract, ModelOutputs

NO_POINT = -2.0  # TuSimple's marker for "no lane point at this row"


@dataclass
class Detections:
    """boxes float32[N, 4] x1 y1 x2 y2 in source-image pixels; scores float32[N];
    classes int32[N] (index into contract.class_names)."""

    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    classes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))


@dataclass
class Lanes:
    """xs float32[L, R]: x in source-image pixels per slot and row, NO_POINT where none;
    rows float32[R]: the source-image rows of the anchors; exist float32[L]: probability."""

    xs: np.ndarray
    rows: np.ndarray
    exist: np.ndarray


@dataclass
class FramePrediction:
    lanes: Lanes
    detections: Detections


@njit(cache=True, nogil=True, fastmath=True, inline="always")
def _row_max(row: np.ndarray, n: int) -> float:
    m = row[0]
    for c in range(1, n):
        m = max(m, row[c])
    return m


@njit(cache=True, nogil=True, fastmath=True, inline="always")
def _expected_cell(row: np.ndarray, best: float, cells: int, e: np.ndarray, bits: np.ndarray):
    """(softmax expectation of the cell centre (c + 0.5) over row[:cells], whose max is best;
    the sum of exp(row[c] - best) over the cells, for the "no point" test). exp(d), d <= 0,
    as 2^k * 2^f with Cephes' exp2f polynomial for 2^f (|f| <= 0.5, relative error ~1e-7)
    and 2^k from the exponent bits: two loops LLVM vectorises, where a call to libm's expf
    per cell cost 70 % of the decode."""
    for c in range(cells):
        t = max((row[c] - best) * np.float32(1.4426950408889634), np.float32(-126.0))
        k = np.floor(t + np.float32(0.5))
        f = t - k
        p = np.float32(1.535336188319500e-4)
        p = p * f + np.float32(1.339887440266574e-3)
        p = p * f + np.float32(9.618437357674640e-3)
        p = p * f + np.float32(5.550332471162809e-2)
        p = p * f + np.float32(2.402264791363012e-1)
        p = p * f + np.float32(6.931472028550421e-1)
        e[c] = p * f + np.float32(1.0)
        bits[c] = (np.int32(k) + 127) << 23  # the float32 2^k
    scale = bits.view(np.float32)
    total, acc = np.float32(0.0), np.float32(0.0)
    for c in range(cells):
        w = e[c] * scale[c]
        total += w
        acc += w * (np.float32(c) + np.float32(0.5))
    return acc / total, total


LANE_FIT_MIN_POINTS = 5  # a lane with fewer points keeps its smoothed points, unfitted
# a lane that its quadratic misses by more than this on average (in lane cells) keeps its
# points: an S-bend (a perfect S-bend prediction moved up to 46 px at 1280 when fitted)
LANE_FIT_MAX_RESIDUAL_CELLS = 0.5


@njit(cache=True, nogil=True)
def fit_quadratic(t: np.ndarray, x: np.ndarray, min_points: int, max_residual: float) -> None:
    """x[i] where x[i] != NO_POINT becomes the least-squares quadratic in t[i] through those
    points, in place, unless it misses them by more than max_residual on average (a shape it
    cannot follow, such as an S-bend: the points stay as they are; one stray row moves the
    mean little, and the fit pulls it back). Fewer than min_points points, or fewer than 3
    distinct t, leave x as it is too. t is centred and scaled to [-1, 1] and the 3 x 3 normal
    equations are solved by Cramer's rule in float64 (well conditioned there; ~1 us for 56
    rows)."""
    n, mean = 0, 0.0
    for i in range(x.shape[0]):
        if x[i] != NO_POINT:
            n += 1
            mean += t[i]
    if n < min_points:
        return
    mean /= n
    half = 0.0
    for i in range(x.shape[0]):
        if x[i] != NO_POINT:
            half = max(half, abs(t[i] - mean))
    if half == 0.0:
        return
    s1 = s2 = s3 = s4 = b0 = b1 = b2 = 0.0
    for i in range(x.shape[0]):
        if x[i] != NO_POINT:
            u = (t[i] - mean) / half
            u2 = u * u
            s1 += u
            s2 += u2
            s3 += u2 * u
            s4 += u2 * u2
            b0 += x[i]
            b1 += x[i] * u
            b2 += x[i] * u2
    s0 = float(n)
    det = s0 * (s2 * s4 - s3 * s3) - s1 * (s1 * s4 - s3 * s2) + s2 * (s1 * s3 - s2 * s2)
    if abs(det) < 1e-9 * s0 * s0 * s0:  # fewer than 3 distinct t
        return
    c0 = (b0 * (s2 * s4 - s3 * s3) - s1 * (b1 * s4 - s3 * b2) + s2 * (b1 * s3 - s2 * b2)) / det
    c1 = (s0 * (b1 * s4 - b2 * s3) - b0 * (s1 * s4 - s3 * s2) + s2 * (s1 * b2 - b1 * s2)) / det
    c2 = (s0 * (s2 * b2 - s3 * b1) - s1 * (s1 * b2 - s2 * b1) + b0 * (s1 * s3 - s2 * s2)) / det
    miss = 0.0
    for i in range(x.shape[0]):
        if x[i] != NO_POINT:
            u = (t[i] - mean) / half
            miss += abs(c0 + u * (c1 + u * c2) - x[i])
    if miss > max_residual * n:
        return
    for i in range(x.shape[0]):
        if x[i] != NO_POINT:
            u = (t[i] - mean) / half
            x[i] = c0 + u * (c1 + u * c2)


@njit(cache=True, nogil=True)
def decode_lanes(
    logits: np.ndarray,
    exist: np.ndarray,
    threshold: float,
    width: float,
    rows: np.ndarray,
    out: np.ndarray,
    fit_gate_cells: float,
) -> None:
    """logits float32[L, R, G+1], exist float32[L] probabilities, rows float32[R] (the
    anchors' rows, any unit) -> out float32[L, R] x in pixels of an image `width` wide,
    NO_POINT where the lane is absent or the row says none: "no point" more likely than a
    point in any cell, P(G) > P(cells 0..G-1 together), that is its logit above the cells'
    logsumexp. (Not above every cell's logit alone: a row whose mass is spread over two
    neighbouring cells is a point at their expectation. On the validation split, 32 cells:
    lane accuracy / FP / FN 94.18 / 6.21 / 6.40 % with the argmax test, 94.63 / 5.89 / 5.95
    with this one.)

    x is the softmax expectation over the G cells (sub-cell precision, as UFLD); a 3-tap
    moving average smooths sub-cell jitter at interior points of each run of rows; then, with
    fit_gate_cells > 0, each lane of at least LANE_FIT_MIN_POINTS points is replaced by its
    least-squares quadratic in the row (fit_quadratic), at the same rows, unless the
    quadratic misses its points by more than fit_gate_cells on average: a lane's image is
    smooth, and the fit takes out the row-to-row wobble that the 3-tap mean leaves. Chosen on
    the validation split (1,050 frames, lane FP / FN %): no fit 9.16 / 9.45; quadratic
    ungated 8.79 / 9.09, gated at 0.5 cells 8.94 / 9.24, at 0.35 cells 9.01 / 9.30; degree 1
    9.44 / 9.74, degree 3 8.94 / 9.23. The gate gives up 0.15 points there to leave a perfect
    S-bend prediction as it is (tests/test_model.py, the round trip); nothing was tuned on
    the test split or the real set."""
    n_lanes, n_rows, n_cls = logits.shape
    cells = n_cls - 1
    cell_px = width / cells
    log_cells = np.log(np.float32(cells))
    tmp = np.empty(n_rows, np.float32)
    e, bits = np.empty(cells, np.float32), np.empty(cells, np.int32)
    for lane in range(n_lanes):
        for r in range(n_rows):
            tmp[r] = NO_POINT
            if exist[lane] < threshold:
                continue
            row = logits[lane, r]
            best = _row_max(row, cells)
            if row[cells] - best > log_cells:  # "no point" outweighs all cells together
                continue
            x, total = _expected_cell(row, best, cells, e, bits)
            if row[cells] - best > np.log(total):
                continue
            tmp[r] = x * width / cells
        for r in range(n_rows):
            x = tmp[r]
            # interior points only (at the ends of a run a 2-tap mean is biased on slopes),
            # and only jitter below half a cell: a real bend is kept as it is
            if (
                x != NO_POINT
                and 0 < r < n_rows - 1
                and tmp[r - 1] != NO_POINT
                and tmp[r + 1] != NO_POINT
                and abs(tmp[r - 1] - 2.0 * x + tmp[r + 1]) <= 0.5 * cell_px
            ):
                x = (tmp[r - 1] + x + tmp[r + 1]) / 3.0
            out[lane, r] = x
        if fit_gate_cells > 0:
            fit_quadratic(rows, out[lane], LANE_FIT_MIN_POINTS, fit_gate_cells * cell_px)


@njit(cache=True, nogil=True)
def _iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0.0 or ih <= 0.0:
        return 0.0
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@njit(cache=True, nogil=True)
def nms(
    boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou: float, max_out: int
) -> np.ndarray:
    """Class-wise greedy NMS. boxes float32[N, 4] x1 y1 x2 y2; returns kept indices, by
    descending score, at most max_out."""
    order = np.argsort(-scores)
    keep = np.empty(min(len(order), max_out), np.int64)
    dead = np.zeros(len(order), np.bool_)
    k = 0
    for i in range(len(order)):
        if dead[i]:
            continue
        bi = order[i]
        keep[k] = bi
        k += 1
        if k == max_out:
            break
        for j in range(i + 1, len(order)):
            bj = order[j]
            if not dead[j] and classes[bj] == classes[bi] and _iou(boxes[bi], boxes[bj]) > iou:
                dead[j] = True
    return keep[:k]


@njit(cache=True, nogil=True)
def decode_boxes(
    heat: np.ndarray,
    box: np.ndarray,
    thresholds: np.ndarray,
    stride: float,
    sx: float,
    sy: float,
    width: float,
    height: float,
    iou: float,
    max_out: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """heat float32[C, h, w] probabilities, box float32[4, h, w] l t r b distances (input
    pixels), thresholds float32[C] per class -> (boxes float32[N, 4] source pixels, scores,
    classes).

    A candidate is a cell at or above its class's threshold that is the maximum of its 3x3
    neighbourhood in its class (CenterNet's peak test); class-wise NMS then removes
    duplicates between neighbouring peaks. sx, sy scale input pixels to source pixels; boxes
    are clipped to width x height."""
    n_cls, h, w = heat.shape
    cap = 4 * max_out
    boxes = np.empty((cap, 4), np.float32)
    scores = np.empty(cap, np.float32)
    classes = np.empty(cap, np.int32)
    n = 0
    for c in range(n_cls):
        threshold = thresholds[c]
        for y in range(h):
            for x in range(w):
                v = heat[c, y, x]
                if v < threshold:
                    continue
                peak = True
                for dy in range(-1, 2):
                    for dx in range(-1, 2):
                        yy, xx = y + dy, x + dx
                        if 0 <= yy < h and 0 <= xx < w and heat[c, yy, xx] > v:
                            peak = False
                if not peak:
                    continue
                if n == cap:  # keep the strongest candidates when there are too many
                    weakest = np.argmin(scores)
                    if v <= scores[weakest]:
                        continue
                    i = int(weakest)
                else:
                    i = int(n)
                    n += 1
                cx, cy = (x + 0.5) * stride, (y + 0.5) * stride
                boxes[i, 0] = max((cx - box[BOX_LEFT, y, x]) * sx, 0.0)
                boxes[i, 1] = max((cy - box[BOX_TOP, y, x]) * sy, 0.0)
                boxes[i, 2] = min((cx + box[BOX_RIGHT, y, x]) * sx, width - 1.0)
                boxes[i, 3] = min((cy + box[BOX_BOTTOM, y, x]) * sy, height - 1.0)
                scores[i] = v
                classes[i] = c
    keep = nms(boxes[:n], scores[:n], classes[:n], iou, max_out)
    return boxes[keep], scores[keep], classes[keep]


class Postprocessor:
    """Decode settings from the contract plus preallocated buffers, for one source size."""

    def __init__(self, contract: ModelContract, width: int, height: int):
        self.c = contract
        self.width, self.height = width, height
        self.rows = (np.asarray(contract.row_anchors, np.float32) * height).astype(np.float32)
        self.sx = width / contract.input_width
        self.sy = height / contract.input_height
        self.thresholds = np.asarray(contract.thresholds(), np.float32)

    def __call__(
        self, out: ModelOutputs[np.ndarray], score_threshold: float | None = None
    ) -> FramePrediction:
        """One image's outputs (no batch axis: ``outputs.image(0)``) -> FramePrediction in
        source pixels. score_threshold overrides the contract's per-class thresholds with one
        for every class (evaluation ranks detections down to a low one for AP)."""
        c = self.c
        thr = self.thresholds
        if score_threshold is not None:
            thr = np.full(len(thr), score_threshold, np.float32)
        b, s, k = decode_boxes(
            out.heatmap,
            out.box,
            thr,
            float(c.stride),
            self.sx,
            self.sy,
            float(self.width),
            float(self.height),
            c.nms_iou,
            c.max_detections,
        )
        xs = np.empty(out.lane_logits.shape[:2], np.float32)
        w = float(self.width)
        gate = LANE_FIT_MAX_RESIDUAL_CELLS  # read here, not frozen into the Numba code
        decode_lanes(
            out.lane_logits, out.lane_exist, c.lane_exist_threshold, w, self.rows, xs, gate
        )
        exist = out.lane_exist.astype(np.float32)
        return FramePrediction(Lanes(xs, self.rows, exist), Detections(b, s, k))

    def warmup(self) -> None:
        g = self.c.grid
        n_l, n_r = len(self.c.lane_slots), len(self.c.row_anchors)
        self(
            ModelOutputs(
                np.zeros((len(self.c.class_names), *g), np.float32),
                np.zeros((4, *g), np.float32),
                np.zeros((n_l, n_r, self.c.lane_cells + 1), np.float32),
                np.ones(n_l, np.float32),
            )
        )
