"""Numba twins of serving.geometry's flat-road projections, for the per-frame kernels
(serving.lanes, serving.kalman): the same formulas on a packed camera, no Python objects.

A camera is packed once per calibration (``pack``) into float64[14]: fx, fy, cx, cy (pixels),
camera height (metres), then R (ego -> camera rotation, row-major). Frames as in
serving.geometry: ego x forward, y left, z up, metres; pixels u right, v down. Undistorted
pixels only (lens distortion is handled before and after, in serving.undistort)."""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from serving.geometry import Calib

FX, FY, CX, CY, HEIGHT, R0 = range(6)  # offsets into a packed camera; R is R0 .. R0 + 8


def pack(calib: Calib) -> np.ndarray:
    """float64[14]: what the kernels take for a Calib (see the module doc)."""
    c = calib
    head = [c.fx, c.fy, c.cx, c.cy, c.camera_height_m]
    return np.concatenate([np.asarray(head, np.float64), c.R.ravel()])


@njit(cache=True, nogil=True, inline="always")
def ground_point(cam: np.ndarray, u: float, v: float) -> tuple[float, float]:
    """(x, y) ego frame, metres, where the ray through pixel (u, v) meets the road z = 0;
    (NaN, NaN) at or above the horizon. Calib.pixel_to_ground, one point."""
    a = (u - cam[CX]) / cam[FX]
    b = (v - cam[CY]) / cam[FY]
    r = cam[R0:]
    ex = a * r[0] + b * r[3] + r[6]  # the ray in the ego frame: rays_c @ R
    ey = a * r[1] + b * r[4] + r[7]
    ez = a * r[2] + b * r[5] + r[8]
    if not ez < -1e-9:
        return math.nan, math.nan
    s = -cam[HEIGHT] / ez
    return s * ex, s * ey


@njit(cache=True, nogil=True, inline="always")
def project_ground(cam: np.ndarray, x: float, y: float) -> tuple[float, float]:
    """Pixel (u, v) of the road point (x, y, 0), ego frame metres; (NaN, NaN) behind the
    camera. Calib.project, one point on the road."""
    r = cam[R0:]
    pz = -cam[HEIGHT]  # the point relative to the camera centre, ego frame: (x, y, -h)
    c0 = r[0] * x + r[1] * y + r[2] * pz
    c1 = r[3] * x + r[4] * y + r[5] * pz
    c2 = r[6] * x + r[7] * y + r[8] * pz
    if c2 <= 1e-6:
        return math.nan, math.nan
    return cam[FX] * c0 / c2 + cam[CX], cam[FY] * c1 / c2 + cam[CY]
