"""Road-surface texture: aggregate grain, blotches, concrete slab joints, fixed to the road.

The road is drawn with flat polygons; real asphalt and concrete have grain, stains and
joints, and a detector trained on flat grey learns that anything textured is an object. Each
clip gets a tileable texture in road coordinates (metres), and every frame each ground pixel
looks it up through the flat-road back-projection of that pixel, shifted by how far the ego
has driven, so the texture moves with the road as it should. Hills and curves bend the real
road away from that flat plane; the texture is statistics, not geometry, so that is fine.

The per-pixel lookup and multiply is a Numba kernel (hand-written: no library applies a
texture through a per-pixel coordinate map and a distance fade in one pass).
"""

from __future__ import annotations

import cv2
import numpy as np
from numba import njit

from serving.geometry import Calib

TEXEL_M = 0.04  # texture resolution: 4 cm per texel
TEX_FWD, TEX_LAT = 1024, 512  # 41 m x 20 m before it repeats


def _noise(rng: np.random.Generator, shape: tuple[int, int], blur: float) -> np.ndarray:
    """Zero-mean, unit-std noise smoothed over `blur` texels, tileable (wrap-around blur)."""
    n = rng.normal(0.0, 1.0, shape).astype(np.float32)
    if blur > 0:  # blur a wrapped copy so the texture tiles without seams
        r = int(3 * blur) + 1
        n = np.asarray(cv2.GaussianBlur(np.pad(n, r, mode="wrap"), (0, 0), blur)[r:-r, r:-r])
    return (n - n.mean()) / max(float(n.std()), 1e-6)


BANK = 8  # noise fields per process, shared by the clips (building one costs ~50 ms)
_bank: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def _fields(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Fine grain and blotch noise number k of the bank: seeded by k alone, so a clip's
    texture does not depend on which worker process renders it."""
    if k not in _bank:
        rng = np.random.default_rng(0x7E57 + k)
        _bank[k] = (_noise(rng, (TEX_FWD, TEX_LAT), 0.7), _noise(rng, (TEX_FWD, TEX_LAT), 18.0))
    return _bank[k]


def surface_texture(rng: np.random.Generator, surface: str, grain: float) -> np.ndarray:
    """float32[TEX_FWD, TEX_LAT] relative brightness change (0 = as drawn), axes (forward,
    lateral) in TEXEL_M units."""
    fine, blotch = _fields(int(rng.integers(0, BANK)))
    tex = fine * (0.05 * grain) + blotch * (0.06 * (0.4 + grain))
    if surface == "concrete":  # slabs of 4.5 m with dark joints and their own tone
        slab = int(4.5 / TEXEL_M)
        rows = np.arange(TEX_FWD)
        tone = rng.normal(0.0, 0.04, TEX_FWD // slab + 1).astype(np.float32)
        tex += tone[rows // slab][:, None]
        tex[(rows % slab) < 1] -= 0.25
        lat_joint = (np.arange(TEX_LAT) % int(3.7 / TEXEL_M)) < 1
        tex[:, lat_joint] -= 0.15
    return tex.astype(np.float32)


class GroundMap:
    """Flat-road coordinates of every pixel below the horizon, once per clip.

    fwd, lat float32[H, W]: ego-frame x forward and y left, metres (NaN above the horizon);
    first_row: the first image row with ground pixels."""

    def __init__(self, calib: Calib):
        h, w = calib.image_height, calib.image_width
        first = int(np.clip(np.floor(calib.horizon_v) - 2, 0, h)) // 2 * 2
        # every second pixel and row, repeated: a texel is bigger than a pixel where it
        # matters (near), and the texture fades out where it is not (far)
        vv, uu = np.mgrid[first:h:2, 0:w:2].astype(np.float64)
        g = calib.pixel_to_ground(np.stack([uu.ravel() + 0.5, vv.ravel() + 0.5], 1))
        self.fwd = np.full((h, w), np.nan, np.float32)
        self.lat = np.full((h, w), np.nan, np.float32)
        rows = h - first
        for dst, col in ((self.fwd, 0), (self.lat, 1)):
            half = g[:, col].reshape(vv.shape).astype(np.float32)
            dst[first:] = half.repeat(2, 0).repeat(2, 1)[:rows, :w]
        self.first_row = first


@njit(cache=True, nogil=True, fastmath=True)
def apply_texture(
    img: np.ndarray,
    fwd: np.ndarray,
    lat: np.ndarray,
    first_row: int,
    tex: np.ndarray,
    s_off: float,
    l_off: float,
    fade_m: float,
) -> None:
    """In place on img uint8[H, W, 3]: every ground pixel times (1 + tex at its road point).

    fwd, lat float32[H, W] metres (NaN = sky); tex float32[F, L] per TEXEL_M; s_off, l_off:
    the ego's arc length and lateral offset (metres) so the texture stays on the road; the
    texture fades out over fade_m metres (far texels would alias into sparkle)."""
    h, w = img.shape[0], img.shape[1]
    nf, nl = tex.shape[0], tex.shape[1]
    inv = 1.0 / TEXEL_M
    for y in range(first_row, h):
        for x in range(w):
            f = fwd[y, x]
            if not (f > 0.0):
                continue
            a = 1.0 - f / fade_m
            if a <= 0.0:
                continue
            i = int((f + s_off) * inv) % nf
            j = int((lat[y, x] - l_off) * inv) % nl
            k = 1.0 + tex[i, j] * a
            for c in range(3):
                v = img[y, x, c] * k
                img[y, x, c] = 255 if v > 255.0 else np.uint8(v)
