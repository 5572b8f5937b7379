"""Camera frame -> model input: OpenCV's resize, then one Numba pass.

The resize is cv2.resize, bilinear (INTER_LINEAR: half-pixel centres, 11-bit fixed-point
weights, rounded to uint8), on one thread: its SIMD code is the fastest resize on a CPU and
the only pass that reads the full frame. One Numba pass then does what
cv2.dnn.blobFromImage needs several passes for: channel order to RGB, mean/std
normalisation (one multiply-add a value) and HWC -> CHW, writing every float once. Each
channel layout has its own loop with constant offsets, which LLVM vectorises (interleaved
loads); a loop over a runtime channel order does not vectorise and costs twice as much.

Why not one fused Numba pass (resize included), as this module did before: measured side
by side on the 2-core machine, the fused kernel took 1.2x blobFromImage's time on one thread
and needed its second Numba thread to get ahead, and waking that thread each frame (Numba's
OpenMP pool sleeps between frames so that it leaves ONNX Runtime's cores alone) cost more
than it saved. OpenCV's resize plus this pass is 1.6x faster than blobFromImage on one
thread, with no pool to wake.

Training resizes its frames with the same function (``resize_rgb_u8``), so the network
sees the very bytes the loop feeds it. Frames may be gray (H, W) or (H, W, 1), BGR or RGB
(H, W, 3), or BGRA (H, W, 4, alpha ignored), of any size.
"""

from __future__ import annotations

import cv2
import numpy as np
from numba import njit

from serving.contract import ModelContract


@njit(cache=True, nogil=True, fastmath=True)
def _to_chw(small: np.ndarray, out: np.ndarray, scale: np.ndarray, bias: np.ndarray,
            swap: bool) -> None:  # fmt: skip
    """small uint8[h, w, C] (C = 1, 3 or 4; resized) -> out float32[3, h, w] normalised RGB:
    value * scale[k] + bias[k]. swap: the channels are BGR(A), else RGB(A) (ignored for
    gray, which goes to all three)."""
    h, w, ch = small.shape
    n = h * w
    src = small.reshape(n * ch)
    o = out.reshape(3, n)
    o0, o1, o2 = o[0], o[1], o[2]
    s0, s1, s2 = scale[0], scale[1], scale[2]
    b0, b1, b2 = bias[0], bias[1], bias[2]
    if ch == 1:
        for i in range(n):
            v = np.float32(src[i])
            o0[i], o1[i], o2[i] = v * s0 + b0, v * s1 + b1, v * s2 + b2
    elif ch == 3 and swap:
        for i in range(n):
            o0[i] = np.float32(src[3 * i + 2]) * s0 + b0
            o1[i] = np.float32(src[3 * i + 1]) * s1 + b1
            o2[i] = np.float32(src[3 * i]) * s2 + b2
    elif ch == 3:
        for i in range(n):
            o0[i] = np.float32(src[3 * i]) * s0 + b0
            o1[i] = np.float32(src[3 * i + 1]) * s1 + b1
            o2[i] = np.float32(src[3 * i + 2]) * s2 + b2
    elif swap:
        for i in range(n):
            o0[i] = np.float32(src[4 * i + 2]) * s0 + b0
            o1[i] = np.float32(src[4 * i + 1]) * s1 + b1
            o2[i] = np.float32(src[4 * i]) * s2 + b2
    else:
        for i in range(n):
            o0[i] = np.float32(src[4 * i]) * s0 + b0
            o1[i] = np.float32(src[4 * i + 1]) * s1 + b1
            o2[i] = np.float32(src[4 * i + 2]) * s2 + b2


def _as_hwc(frame: np.ndarray, color: str) -> tuple[np.ndarray, bool]:
    """(frame as uint8[H, W, C], whether its channels are BGR(A)); ValueError for frames
    the loop cannot read."""
    if frame.dtype != np.uint8:
        raise ValueError(f"frame dtype {frame.dtype}, expected uint8")
    if frame.ndim == 2:
        return frame[:, :, None], False
    if frame.ndim != 3 or frame.shape[2] not in (1, 3, 4) or min(frame.shape[:2]) < 1:
        raise ValueError(f"frame shape {frame.shape}: expected (H, W), (H, W, 1|3|4)")
    return frame, frame.shape[2] > 1 and color != "rgb"


def rgb_order(src: np.ndarray, swap: bool) -> np.ndarray:
    """int64[3]: the channel of src (uint8[H, W, C]) that feeds each of R, G, B, for kernels
    that take the order at run time (serving.undistort)."""
    if src.shape[2] == 1:
        return np.zeros(3, np.int64)
    return np.array([2, 1, 0] if swap else [0, 1, 2], np.int64)


def _resize(src: np.ndarray, width: int, height: int, dst: np.ndarray | None) -> np.ndarray:
    """cv2.resize INTER_LINEAR of uint8[H, W, C] to uint8[height, width, C] (into dst when
    it has that shape)."""
    size = (height, width, src.shape[2])
    if src.shape[2] == 1:  # OpenCV drops a channel axis of 1
        small = cv2.resize(src[:, :, 0], (width, height), interpolation=cv2.INTER_LINEAR)
        return small[:, :, None]
    if dst is None or dst.shape != size:
        dst = np.empty(size, np.uint8)
    cv2.resize(src, (width, height), dst=dst, interpolation=cv2.INTER_LINEAR)
    return dst


class Preprocessor:
    """Holds the contract's constants, a preallocated output buffer and the resized frame."""

    def __init__(self, contract: ModelContract):
        self.contract = contract
        std = np.asarray(contract.std, np.float64)
        # (v - mean) / std folded into one multiply-add per value
        self.scale = (1.0 / std).astype(np.float32)
        self.bias = (-np.asarray(contract.mean, np.float64) / std).astype(np.float32)
        self.out = np.empty((1, 3, contract.input_height, contract.input_width), np.float32)
        self._small: np.ndarray | None = None

    def __call__(
        self, frame: np.ndarray, color: str = "bgr", out: np.ndarray | None = None
    ) -> np.ndarray:
        """frame uint8 (see module doc) -> float32[1, 3, h, w] normalised RGB (a view of
        the preallocated buffer unless out is given: copy it to keep it)."""
        src, swap = _as_hwc(frame, color)
        dst = self.out if out is None else out
        self._small = _resize(src, dst.shape[3], dst.shape[2], self._small)
        _to_chw(self._small, dst[0], self.scale, self.bias, swap)
        return dst

    def warmup(self) -> None:
        """Compile (or load from the Numba cache) every kernel variant used at run time."""
        for frame in (
            np.zeros((8, 8, 3), np.uint8),
            np.zeros((8, 8), np.uint8),
            np.zeros((8, 8, 4), np.uint8),
        ):
            self(frame)


def resize_rgb_u8(frame: np.ndarray, width: int, height: int, color: str = "bgr") -> np.ndarray:
    """The preprocessing resize without normalisation: uint8[height, width, 3] RGB, the bytes
    the Preprocessor normalises (training caches these)."""
    src, swap = _as_hwc(frame, color)
    small = _resize(src, width, height, None)
    if small.shape[2] == 1:
        return cv2.cvtColor(small[:, :, 0], cv2.COLOR_GRAY2RGB)
    if swap:
        return cv2.cvtColor(small, cv2.COLOR_BGRA2RGB if small.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(small[:, :, :3])


def normalise_u8(rgb: np.ndarray, contract: ModelContract) -> np.ndarray:
    """uint8[..., H, W, 3] RGB -> float32[..., 3, H, W] as the model expects."""
    x = (rgb.astype(np.float32) - np.asarray(contract.mean, np.float32)) / np.asarray(
        contract.std, np.float32
    )
    return np.moveaxis(x, -1, -3)
