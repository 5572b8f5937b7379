"""The simulated camera: one Numba pass from a rendered albedo image to sensor output.

Lighting, fog, glare, exposure, white balance, vignetting and sensor noise are fused into a
single loop over the pixels: done as separate numpy operations they would cost ~10 float
copies of a 1280x720x3 frame each; fused they cost one read and one write (hand-written on
purpose: no library fuses these).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from numba import njit

from perception.sim.scenario import Scenario

LIGHT_ONE = 128  # light-map value meaning "lit as rendered"; 255 is ~2x (lamps, halos)


@njit(cache=True, nogil=True, fastmath=True)
def apply_camera(
    img: np.ndarray,
    light: np.ndarray,
    dist: np.ndarray,
    inv_visibility: float,
    fog_scale: float,
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

    light uint8[H, W] (LIGHT_ONE = 1.0); dist float32[H, W] metres to the surface each pixel
    shows: the share of fog colour there is fog_scale * (1 - exp(-dist * inv_visibility));
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
        dy = y - cy
        gy = y - glare_uv[1]
        ny = (y + noise_off[0]) % tn
        nx = noise_off[1] % tn  # (x + noise_off[1]) % tn, counted: no division a pixel
        d_prev = np.float32(-1.0)
        f = 0.0
        for x in range(w):
            d = dist[y, x]
            if d != d_prev:  # a row holds runs of one distance (the road, an object's face):
                f = fog_scale * (1.0 - math.exp(-d * inv_visibility))  # one exp a run
                d_prev = d
            lit = light[y, x] * (1.0 / LIGHT_ONE) * (1.0 - f)
            dx = x - cx
            vig = 1.0 - vignette * (dx * dx + dy * dy) * inv_r2
            gx = x - glare_uv[0]
            gl = glare / (1.0 + (gx * gx + gy * gy) * inv_g2)
            for c in range(3):
                v = (img[y, x, c] * lit + fog_bgr[c] * f + gl) * gain_bgr[c] * vig
                v += noise[ny, nx, c]
                img[y, x, c] = 0 if v < 0.0 else (255 if v > 255.0 else np.uint8(v + 0.5))
            nx = nx + 1 if nx + 1 < tn else 0


def noise_tile(rng: np.random.Generator, sigma: float, size: int = 257) -> np.ndarray:
    """Gaussian sensor noise, int8[size, size, 3]; a prime size hides the tiling."""
    return np.clip(rng.normal(0.0, sigma, (size, size, 3)), -127, 127).astype(np.int8)


class SensorModel:
    """One clip's light and lens: ambient light and headlight cones, fog, rain streaks,
    exposure and white balance, vignetting, glare, noise, blur and chromatic aberration.
    The rain layer is added after the rest of the clip is laid out (add_rain) so that each
    clip's random draws keep their order."""

    def __init__(self, sc: Scenario, rng: np.random.Generator):
        self.sc, self.calib = sc, sc.calib
        self.w, self.h = sc.calib.image_width, sc.calib.image_height
        self.noise = noise_tile(rng, sc.conditions.noise_sigma)
        self.base_light = self._base_light()
        tod = sc.conditions.time_of_day
        fog = {"day": (200, 198, 195), "dusk": (150, 150, 165), "night": (28, 26, 26)}[tod]
        self.fog_bgr = np.array(fog, np.float32)
        self.rain: np.ndarray | None = None
        rows = np.arange(self.h, dtype=np.float64)
        g = self.calib.pixel_to_ground(np.stack([np.full(self.h, self.calib.cx), rows], 1))[:, 0]
        self.row_dist = np.where(np.isnan(g), 1e4, g).astype(np.float32)

    def depth_map(self) -> np.ndarray:
        """float32[H, W] metres to the road (1e4 above the horizon) at each pixel, from the
        pixel's row: what the fog sees before the renderer writes the distance of each
        upright thing it draws (actors, roadside items) over its own pixels."""
        return np.repeat(self.row_dist[:, None], self.w, axis=1)

    def add_rain(self, rng: np.random.Generator) -> None:
        if self.sc.conditions.rain_intensity > 0:
            n = int(400 * self.sc.conditions.rain_intensity)
            x = rng.uniform(0, self.w, n)
            y = rng.uniform(0, self.h, n)
            ln = rng.uniform(10, 35, n)
            self.rain = np.stack([x, y, ln], 1)

    def _base_light(self) -> np.ndarray:
        """Light map without shadows: ambient level, plus headlight cones at night."""
        c = self.sc.conditions
        ambient = {"day": 1.0, "dusk": 0.6, "night": 0.16}[c.time_of_day]
        if c.weather != "clear":
            ambient *= 0.8
        light = np.full((self.h, self.w), ambient, np.float32)
        if c.time_of_day == "night":
            small = self.calib.scaled(self.w // 4, self.h // 4)
            vv, uu = np.mgrid[0 : small.image_height, 0 : small.image_width].astype(np.float64)
            g = small.pixel_to_ground(np.stack([uu.ravel(), vv.ravel()], 1))
            x, y = g[:, 0], g[:, 1]
            beam = np.exp(-((y / (0.25 * np.nan_to_num(x, nan=1.0) + 1.2)) ** 2))
            reach = np.clip(x / 6.0, 0, 1) ** 2 / (1.0 + (np.nan_to_num(x, nan=1e3) / 45) ** 2)
            hl = np.nan_to_num(beam * reach, nan=0.0).reshape(vv.shape).astype(np.float32)
            light = light + 1.6 * cv2.resize(hl, (self.w, self.h))
        return np.clip(light * LIGHT_ONE, 0, 255).astype(np.uint8)

    def apply(self, img: np.ndarray, light: np.ndarray, depth: np.ndarray, frame: int) -> None:
        """Turn the lit albedo image into what the sensor records, in place; depth is the
        frame's depth_map() with the drawn objects' distances written in. Fog follows the
        distance of what each pixel shows, not its row: by row, the part of a near truck
        above the horizon took the fog of the sky (all of it) and vanished in fog."""
        c, calib = self.sc.conditions, self.calib
        fog_scale = 1.0 if c.weather == "fog" else (0.15 if c.time_of_day != "night" else 0.0)
        t = frame / self.sc.fps
        gain = c.exposure * (1.0 + c.exposure_wobble * math.sin(1.3 * t + 0.7 * math.sin(3.1 * t)))
        gains = np.array(c.white_balance, np.float32) * np.float32(gain)
        glare_uv = np.array([c.sun_u * self.w, calib.horizon_v - 0.08 * self.h], np.float64)
        glare = 120.0 if c.glare else 0.0
        off = np.array([(frame * 37) % 257, (frame * 91) % 257], np.int64)
        apply_camera(
            img, light, depth, 1.0 / c.fog_visibility_m, fog_scale, self.fog_bgr, gains,
            c.vignette, glare_uv, glare, 0.12 * self.w, self.noise, off,
        )  # fmt: skip
        if self.rain is not None:
            self._draw_rain(img, frame)
        cv2.GaussianBlur(img, (3, 3), 0, dst=img)
        if c.blur > 1:
            cv2.blur(img, (c.blur, 1), dst=img)
        if c.chroma_px > 0:  # lateral chromatic aberration: red magnified, blue shrunk
            k = c.chroma_px / (0.5 * math.hypot(self.w, self.h))
            for ch, sign in ((2, 1.0), (0, -1.0)):
                m = cv2.getRotationMatrix2D((self.w / 2, self.h / 2), 0.0, 1.0 + sign * k)
                img[..., ch] = cv2.warpAffine(
                    img[..., ch], m, (self.w, self.h), borderMode=cv2.BORDER_REPLICATE
                )

    def _draw_rain(self, img: np.ndarray, frame: int) -> None:
        assert self.rain is not None
        x, y, ln = self.rain.T
        y = (y + frame * 45.0) % self.h
        col = (170, 170, 170) if self.sc.conditions.time_of_day != "night" else (70, 70, 70)
        segs = np.stack([x, y, x - 0.15 * ln, y + ln], 1).astype(np.int32).reshape(-1, 2, 2)
        cv2.polylines(img, list(segs), False, col, 1)
