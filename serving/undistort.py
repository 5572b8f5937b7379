"""Lens undistortion fused into the preprocessing pass, and model outputs back to the lens.

A camera with lens distortion (serving.geometry.Calib.dist) bends straight lane lines near
the image edges. Rather than undistorting the whole 1280x720 frame (cv2.remap: one more full
pass over memory, ~4x the pixels the model sees), the model-input pixels are sampled straight
from the distorted frame: a sampling map at model resolution says, for each of the 448x256
input pixels, where its ray lands in the distorted source frame (Calib.distort_pixels, closed
form), and one Numba kernel does bilinear sampling, channel order, normalisation and HWC ->
CHW in a single pass (the plain path resizes with OpenCV, serving.preprocess: no lens map
there). The map depends only on the calibration and the two sizes: it is built once and
cached.

The model then sees the ideal pinhole image with the same K ("undistorted source pixels":
the source size, the source K, no distortion), so its lanes and boxes come out in those
pixels; ``distort_prediction`` maps them back onto the distorted source image (forward
model, closed form) before anything is scored or drawn there.

Kept in its own module, not in serving/preprocess.py: the plain kernel there is what training
caches frames with (a dependency of the train stage); this one only serves distorted cameras.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit, prange

from serving.contract import ModelContract
from serving.geometry import Calib
from serving.postprocess import NO_POINT, Detections, FramePrediction, Lanes
from serving.preprocess import Preprocessor, _as_hwc, rgb_order

_EDGE_SAMPLES = 5  # points per box edge mapped back (corners included): edges bow under
#                    barrel distortion, so the corners alone would cut the box short


@dataclass(frozen=True)
class SamplingMap:
    """Where each model-input pixel samples the distorted source frame.

    x0, y0: int32[h, w] top-left source pixel of the bilinear 2x2 footprint; fx, fy:
    float32[h, w] weights of the right / lower neighbours (0..1). Source pixels, clamped to
    the frame (a ray landing outside repeats the edge, as the plain resize's clamp does)."""

    x0: np.ndarray
    y0: np.ndarray
    fx: np.ndarray
    fy: np.ndarray


def sampling_map(calib: Calib, src_w: int, src_h: int, w: int, h: int) -> SamplingMap:
    """The map for a src_w x src_h source seen by a w x h model input.

    calib: the source camera (rescaled to src_w x src_h when it was made at another size).
    The model-input pixel (ox, oy) stands for the undistorted source position ((ox + 0.5)
    src_w / w - 0.5, likewise v): the half-pixel-centre convention of the plain resize, so
    that without distortion both sample the same points."""
    same = (calib.image_width, calib.image_height) == (src_w, src_h)
    cal = calib if same else calib.scaled(src_w, src_h)
    u = (np.arange(w) + 0.5) * (src_w / w) - 0.5
    v = (np.arange(h) + 0.5) * (src_h / h) - 0.5
    uu, vv = np.meshgrid(u, v)  # [h, w] undistorted source pixels
    d = cal.distort_pixels(np.stack([uu.ravel(), vv.ravel()], axis=1))
    sx = np.clip(d[:, 0], 0.0, src_w - 1.0).reshape(h, w)
    sy = np.clip(d[:, 1], 0.0, src_h - 1.0).reshape(h, w)
    x0, y0 = np.floor(sx), np.floor(sy)
    return SamplingMap(
        x0.astype(np.int32),
        y0.astype(np.int32),
        (sx - x0).astype(np.float32),
        (sy - y0).astype(np.float32),
    )


@njit(cache=True, nogil=True, fastmath=True, inline="always")
def _bilerp(src: np.ndarray, ya: int, yb: int, xa: int, xb: int, a: float, b: float, c: int):
    """Channel c of src at (xa + a, ya + b): two lerps along rows, one across."""
    p00, p01 = np.float32(src[ya, xa, c]), np.float32(src[ya, xb, c])
    p10, p11 = np.float32(src[yb, xa, c]), np.float32(src[yb, xb, c])
    top = p00 + a * (p01 - p00)
    return top + b * (p10 + a * (p11 - p10) - top)


@njit(cache=True, nogil=True, fastmath=True, parallel=True)
def _to_chw_mapped(
    src: np.ndarray,
    out: np.ndarray,
    order: np.ndarray,
    scale: np.ndarray,
    bias: np.ndarray,
    x0: np.ndarray,
    y0: np.ndarray,
    fx: np.ndarray,
    fy: np.ndarray,
) -> None:
    """src uint8[H, W, C]; out float32[3, h, w] = bilinear sample at the map's point *
    scale[k] + bias[k]; order[k] = source channel of RGB channel k. Rows over Numba's threads.
    Unlike the plain kernel there is no shared source row per output row (each pixel's
    footprint moves with the lens), so it takes four taps per value."""
    h, w = out.shape[1], out.shape[2]
    xmax, ymax = src.shape[1] - 1, src.shape[0] - 1
    c0, c1, c2 = order[0], order[1], order[2]
    s0, s1, s2 = scale[0], scale[1], scale[2]
    b0, b1, b2 = bias[0], bias[1], bias[2]
    for oy in prange(h):
        o0, o1, o2 = out[0, oy], out[1, oy], out[2, oy]
        for ox in range(w):
            xa, ya = x0[oy, ox], y0[oy, ox]
            xb, yb = min(xa + 1, xmax), min(ya + 1, ymax)
            a, b = fx[oy, ox], fy[oy, ox]
            o0[ox] = _bilerp(src, ya, yb, xa, xb, a, b, c0) * s0 + b0
            o1[ox] = _bilerp(src, ya, yb, xa, xb, a, b, c1) * s1 + b1
            o2[ox] = _bilerp(src, ya, yb, xa, xb, a, b, c2) * s2 + b2


class UndistortingPreprocessor(Preprocessor):
    """serving.preprocess.Preprocessor that undistorts in the same pass when ``calib`` has
    distortion; without distortion it is the plain Preprocessor (same kernel, zero cost).
    ``calib`` may be changed between frames (evaluation runs clips of several cameras)."""

    def __init__(self, contract: ModelContract, calib: Calib):
        super().__init__(contract)
        self.calib = calib
        self._maps: dict[tuple, SamplingMap] = {}

    def map_for(self, src_w: int, src_h: int) -> SamplingMap:
        h, w = self.out.shape[2], self.out.shape[3]
        key = (self.calib, src_w, src_h, w, h)
        if key not in self._maps:
            self._maps[key] = sampling_map(self.calib, src_w, src_h, w, h)
        return self._maps[key]

    def __call__(
        self, frame: np.ndarray, color: str = "bgr", out: np.ndarray | None = None
    ) -> np.ndarray:
        """frame uint8 (see serving.preprocess) -> float32[1, 3, h, w], undistorted."""
        if not self.calib.has_distortion:
            return super().__call__(frame, color, out)
        src, swap = _as_hwc(frame, color)
        order = rgb_order(src, swap)
        dst = self.out if out is None else out
        m = self.map_for(src.shape[1], src.shape[0])
        _to_chw_mapped(src, dst[0], order, self.scale, self.bias, m.x0, m.y0, m.fx, m.fy)
        return dst

    def warmup(self) -> None:
        """Compile (or load from the Numba cache) the plain and the mapped kernels."""
        super().warmup()
        saved = self.calib
        self.calib = Calib(8, 8, 8.0, 8.0, 4.0, 4.0, 1.0, dist=(-0.1, 0.0, 0.0, 0.0, 0.0))
        try:
            for frame in (np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8)):
                self(frame)
        finally:
            self.calib = saved


# ---------------------------------------------------------------- outputs back to the lens


def _distort_lane(xs: np.ndarray, rows: np.ndarray, calib: Calib) -> np.ndarray:
    """One lane, x float[R] on rows float[R] (ascending), undistorted pixels, NO_POINT where
    none -> x on the same rows in distorted pixels. Each run of consecutive valid anchors is
    mapped point by point and re-sampled at the rows it spans (linear in v); gaps stay gaps."""
    out = np.full(len(rows), NO_POINT, np.float32)
    valid = xs != NO_POINT
    idx = np.flatnonzero(valid)
    if len(idx) < 2:
        return out
    d = calib.distort_pixels(np.stack([xs[idx], rows[idx]], axis=1))
    breaks = np.flatnonzero(np.diff(idx) > 1) + 1
    for run in np.split(np.arange(len(idx)), breaks):
        if len(run) < 2:
            continue
        u, v = d[run, 0], d[run, 1]
        order = np.argsort(v)
        u, v = u[order], v[order]
        inside = (rows >= v[0]) & (rows <= v[-1])
        out[inside] = np.interp(rows[inside], v, u).astype(np.float32)
    return out


def distort_boxes(boxes: np.ndarray, calib: Calib) -> np.ndarray:
    """boxes float[N, 4] x1 y1 x2 y2 undistorted pixels -> float32[N, 4] the boxes that
    enclose them in the distorted image, clipped to it: each edge is mapped at a few points
    (its ends and between), since straight edges bow under the lens."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    t = np.linspace(0.0, 1.0, _EDGE_SAMPLES)
    x1, y1, x2, y2 = (b[:, k : k + 1] for k in range(4))  # [N, 1] each
    xs = x1 + (x2 - x1) * t  # [N, S] along the top and bottom edges
    ys = y1 + (y2 - y1) * t  # [N, S] along the left and right edges
    u = np.concatenate([xs, xs, np.broadcast_to(x1, ys.shape), np.broadcast_to(x2, ys.shape)], 1)
    v = np.concatenate([np.broadcast_to(y1, xs.shape), np.broadcast_to(y2, xs.shape), ys, ys], 1)
    d = calib.distort_pixels(np.stack([u.ravel(), v.ravel()], axis=1)).reshape(*u.shape, 2)
    w, h = calib.image_width - 1.0, calib.image_height - 1.0
    out = np.stack(
        [
            np.clip(d[..., 0].min(1), 0.0, w),
            np.clip(d[..., 1].min(1), 0.0, h),
            np.clip(d[..., 0].max(1), 0.0, w),
            np.clip(d[..., 1].max(1), 0.0, h),
        ],
        axis=1,
    )
    return out.astype(np.float32)


def distort_prediction(pred: FramePrediction, calib: Calib) -> FramePrediction:
    """A prediction in undistorted source pixels -> the same in distorted source pixels.

    calib: the source camera at the source size. Lanes stay on their rows (Lanes.rows) with
    x re-sampled along the distorted lane; boxes become the boxes enclosing the distorted
    ones; scores, classes and lane existence are kept. Without distortion: pred itself."""
    if not calib.has_distortion:
        return pred
    rows = np.asarray(pred.lanes.rows, np.float64)
    order = np.argsort(rows)
    xs = np.asarray(pred.lanes.xs, np.float64)
    new_xs = np.full(xs.shape, NO_POINT, np.float32)
    for k in range(len(xs)):
        new_xs[k, order] = _distort_lane(xs[k, order], rows[order], calib)
    det = pred.detections
    return FramePrediction(
        Lanes(new_xs, pred.lanes.rows, pred.lanes.exist),
        Detections(distort_boxes(det.boxes, calib), det.scores, det.classes),
    )
