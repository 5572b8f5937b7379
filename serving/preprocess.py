"""Camera frame -> model input in one Numba pass.

Resize (bilinear, OpenCV's half-pixel-centre convention), channel order to RGB, mean/std
normalisation and HWC -> CHW are fused: each output value reads its four source pixels once
and is written once. OpenCV would need resize + cvtColor + subtract + divide + transpose,
five passes over memory. Hand-written because no library fuses these steps.

Frames may be gray (H, W) or (H, W, 1), BGR or RGB (H, W, 3), or BGRA (H, W, 4, alpha
ignored), of any size.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from serving.contract import ModelContract


@njit(cache=True, nogil=True, inline="always")
def _taps(o: int, scale: float, n: int) -> tuple[int, int, float]:
    """Source indices and weight of the second tap for output index o (cv2 INTER_LINEAR)."""
    f = (o + 0.5) * scale - 0.5
    if f < 0.0:
        f = 0.0
    i0 = int(f)
    if i0 >= n - 1:
        return n - 1, n - 1, 0.0
    return i0, i0 + 1, f - i0


@njit(cache=True, nogil=True)
def _to_chw(
    src: np.ndarray, out: np.ndarray, order: np.ndarray, mean: np.ndarray, inv_std: np.ndarray
) -> None:
    """src uint8[H, W, C]; out float32[3, h, w]; order[k] = source channel of RGB channel k."""
    h_in, w_in = src.shape[0], src.shape[1]
    h, w = out.shape[1], out.shape[2]
    sy, sx = h_in / h, w_in / w
    for oy in range(h):
        y0, y1, fy = _taps(oy, sy, h_in)
        for ox in range(w):
            x0, x1, fx = _taps(ox, sx, w_in)
            for k in range(3):
                c = order[k]
                top = src[y0, x0, c] * (1.0 - fx) + src[y0, x1, c] * fx
                bot = src[y1, x0, c] * (1.0 - fx) + src[y1, x1, c] * fx
                out[k, oy, ox] = ((top * (1.0 - fy) + bot * fy) - mean[k]) * inv_std[k]


@njit(cache=True, nogil=True)
def _to_hwc_u8(src: np.ndarray, out: np.ndarray, order: np.ndarray) -> None:
    """The same sampling as _to_chw, kept as uint8 RGB HWC (training caches these)."""
    h_in, w_in = src.shape[0], src.shape[1]
    h, w = out.shape[0], out.shape[1]
    sy, sx = h_in / h, w_in / w
    for oy in range(h):
        y0, y1, fy = _taps(oy, sy, h_in)
        for ox in range(w):
            x0, x1, fx = _taps(ox, sx, w_in)
            for k in range(3):
                c = order[k]
                top = src[y0, x0, c] * (1.0 - fx) + src[y0, x1, c] * fx
                bot = src[y1, x0, c] * (1.0 - fx) + src[y1, x1, c] * fx
                out[oy, ox, k] = np.uint8(top * (1.0 - fy) + bot * fy + 0.5)


_ORDERS = {"bgr": np.array([2, 1, 0]), "rgb": np.array([0, 1, 2]), "gray": np.array([0, 0, 0])}


def _as_hwc(frame: np.ndarray, color: str) -> tuple[np.ndarray, np.ndarray]:
    if frame.dtype != np.uint8:
        raise ValueError(f"frame dtype {frame.dtype}, expected uint8")
    if frame.ndim == 2:
        return frame[:, :, None], _ORDERS["gray"]
    if frame.ndim != 3 or frame.shape[2] not in (1, 3, 4):
        raise ValueError(f"frame shape {frame.shape}: expected (H, W), (H, W, 1|3|4)")
    if frame.shape[2] == 1:
        return frame, _ORDERS["gray"]
    return frame, _ORDERS["rgb" if color == "rgb" else "bgr"]


class Preprocessor:
    """Holds the contract's constants and a preallocated output buffer."""

    def __init__(self, contract: ModelContract):
        self.contract = contract
        self.mean = np.asarray(contract.mean, np.float32)
        self.inv_std = (1.0 / np.asarray(contract.std, np.float64)).astype(np.float32)
        self.out = np.empty((1, 3, contract.input_height, contract.input_width), np.float32)

    def __call__(
        self, frame: np.ndarray, color: str = "bgr", out: np.ndarray | None = None
    ) -> np.ndarray:
        """frame uint8 (see module doc) -> float32[1, 3, h, w] normalised RGB (a view of
        the preallocated buffer unless out is given: copy it to keep it)."""
        src, order = _as_hwc(frame, color)
        dst = self.out if out is None else out
        _to_chw(src, dst[0], order, self.mean, self.inv_std)
        return dst

    def warmup(self) -> None:
        self(np.zeros((8, 8, 3), np.uint8))
        resize_rgb_u8(np.zeros((8, 8, 3), np.uint8), 4, 4)


def resize_rgb_u8(frame: np.ndarray, width: int, height: int, color: str = "bgr") -> np.ndarray:
    """The preprocessing resize without normalisation: uint8[height, width, 3] RGB."""
    src, order = _as_hwc(frame, color)
    out = np.empty((height, width, 3), np.uint8)
    _to_hwc_u8(src, out, order)
    return out


def normalise_u8(rgb: np.ndarray, contract: ModelContract) -> np.ndarray:
    """uint8[..., H, W, 3] RGB -> float32[..., 3, H, W] as the model expects."""
    x = (rgb.astype(np.float32) - np.asarray(contract.mean, np.float32)) / np.asarray(
        contract.std, np.float32
    )
    return np.moveaxis(x, -1, -3)
