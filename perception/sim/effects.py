"""The simulated camera: one Numba pass from a rendered albedo image to sensor output.

Lighting, fog, glare, exposure, white balance, vignetting and sensor noise are fused into a
single loop over the pixels: done as separate numpy operations they would cost ~10 float
copies of a 1280x720x3 frame each; fused they cost one read and one write (hand-written on
purpose: no library fuses these).
"""

from __future__ import annotations

import numpy as np
from numba import njit

LIGHT_ONE = 128  # light-map value meaning "lit as rendered"; 255 is ~2x (lamps, halos)


@njit(cache=True, nogil=True, fastmath=True)
def apply_camera(
    img: np.ndarray,
    light: np.ndarray,
    fog_row: np.ndarray,
    fog_bgr: np.ndarray,
    gain_bgr: np.ndarray,
    vignette: float,
    glare_uv: np.ndarray,
    glare: float,
    glare_r: float,
    noise: np.ndarray,
    noise_off: np.ndarray,
) -> None:
    """In place on img uint8[H, W, 3] BGR.

    light uint8[H, W] (LIGHT_ONE = 1.0); fog_row float32[H] fraction of fog colour per row;
    fog_bgr float32[3]; gain_bgr float32[3] exposure x white balance; vignette: darkening at
    the corners (0..1); glare_uv (u, v) pixels, glare strength (grey levels), glare_r radius
    (px); noise int8[T, T, 3] tile, noise_off int64[2] per-frame offset into it.
    """
    h, w = img.shape[0], img.shape[1]
    tn = noise.shape[0]
    cx, cy = w * 0.5, h * 0.5
    inv_r2 = 1.0 / (cx * cx + cy * cy)
    inv_g2 = 1.0 / (glare_r * glare_r)
    for y in range(h):
        f = fog_row[y]
        dy = y - cy
        gy = y - glare_uv[1]
        ny = (y + noise_off[0]) % tn
        for x in range(w):
            lit = light[y, x] * (1.0 / LIGHT_ONE) * (1.0 - f)
            dx = x - cx
            vig = 1.0 - vignette * (dx * dx + dy * dy) * inv_r2
            gx = x - glare_uv[0]
            gl = glare / (1.0 + (gx * gx + gy * gy) * inv_g2)
            nx = (x + noise_off[1]) % tn
            for c in range(3):
                v = (img[y, x, c] * lit + fog_bgr[c] * f + gl) * gain_bgr[c] * vig
                v += noise[ny, nx, c]
                img[y, x, c] = 0 if v < 0.0 else (255 if v > 255.0 else np.uint8(v + 0.5))


def noise_tile(rng: np.random.Generator, sigma: float, size: int = 257) -> np.ndarray:
    """Gaussian sensor noise, int8[size, size, 3]; a prime size hides the tiling."""
    return np.clip(rng.normal(0.0, sigma, (size, size, 3)), -127, 127).astype(np.int8)
