"""What surrounds the road: sky and hills, trees, bushes, signs, gantries, the ego's bonnet.

None of it is labelled. It is here because a detector trained on an empty world calls every
real tree, sign and post a car or a person: these are the hard negatives of Structured
Domain Randomization (Prakash et al. 2019): real-looking clutter in the places real roads
have it. Trees, bushes and signs are sprites (a BGR image, an alpha mask and a size in
metres) built once per clip and scaled into place by projecting their base and top.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from numba import njit

from perception.sim.scenario import Scenario
from serving.geometry import Calib

Blitted = tuple[slice, slice, np.ndarray]  # rows, columns and alpha where a sprite was drawn


@dataclass
class Sprite:
    """bgr uint8[h, w, 3], alpha uint8[h, w] (255 = opaque); height_m: world height of the
    image's full height; the image's bottom centre stands on the ground."""

    bgr: np.ndarray
    alpha: np.ndarray
    height_m: float

    @property
    def aspect(self) -> float:
        return self.bgr.shape[1] / self.bgr.shape[0]


def _canvas(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((h, w, 3), np.uint8), np.zeros((h, w), np.uint8)


def _leafy(
    rng: np.random.Generator,
    bgr: np.ndarray,
    alpha: np.ndarray,
    green: np.ndarray,
    blobs: int,
    box: tuple[int, int, int, int],
) -> None:
    """Fill a canopy: overlapping blobs in several shades, then leaf-scale speckle and dark
    gaps, so the crown has the texture of foliage rather than a flat disc."""
    x0, y0, x1, y1 = box
    for _ in range(blobs):
        cx, cy = int(rng.uniform(x0, x1)), int(rng.uniform(y0, y1))
        r = int(rng.uniform(0.12, 0.3) * (x1 - x0)) + 2
        shade = np.clip(green * rng.uniform(0.6, 1.25), 0, 255)
        cv2.circle(bgr, (cx, cy), r, tuple(int(c) for c in shade), -1)
        cv2.circle(alpha, (cx, cy), r, 255, -1)
    h, w = alpha.shape
    speck = np.asarray(
        cv2.GaussianBlur(rng.normal(1.0, 0.28, (h, w)).astype(np.float32), (0, 0), 1.2)
    )
    holes = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), 2.0) < 0.42
    bgr[:] = np.clip(bgr * speck[..., None], 0, 255).astype(np.uint8)
    alpha[holes & (rng.random((h, w)) < 0.5)] = 0


def tree(rng: np.random.Generator) -> Sprite:
    """A tree 5-18 m tall: trunk and branches, a textured crown of one of several shapes."""
    h, w = 192, int(rng.uniform(110, 190))
    bgr, alpha = _canvas(h, w)
    trunk = tuple(int(c) for c in np.array([0.8, 0.9, 1.0]) * rng.uniform(40, 110))  # grey-brown
    tw = max(2, int(w * rng.uniform(0.04, 0.08)))
    crown_bottom = int(h * rng.uniform(0.35, 0.7))
    cv2.rectangle(bgr, (w // 2 - tw, crown_bottom - 10), (w // 2 + tw, h - 1), trunk, -1)
    cv2.rectangle(alpha, (w // 2 - tw, crown_bottom - 10), (w // 2 + tw, h - 1), 255, -1)
    for _ in range(int(rng.integers(2, 6))):  # branches into the crown
        end = (int(rng.uniform(0.15, 0.85) * w), int(rng.uniform(0.1, 0.5) * h))
        cv2.line(bgr, (w // 2, crown_bottom), end, trunk, max(1, tw // 2))
        cv2.line(alpha, (w // 2, crown_bottom), end, 255, max(1, tw // 2))
    green = np.array([rng.uniform(30, 80), rng.uniform(70, 130), rng.uniform(40, 100)], np.float32)
    if rng.random() < 0.2:  # dry or autumn foliage
        green = np.array([40, 110, 150], np.float32) * rng.uniform(0.7, 1.1)
    top = int(rng.uniform(0.0, 0.1) * h)
    _leafy(rng, bgr, alpha, green, int(rng.integers(8, 22)), (4, top + 10, w - 4, crown_bottom))
    return Sprite(bgr, alpha, float(rng.uniform(5.0, 18.0)))


def bush(rng: np.random.Generator) -> Sprite:
    """A shrub 0.6-2.5 m tall and wider than high, leaf-textured, sitting on the ground."""
    h, w = 64, int(rng.uniform(90, 180))
    bgr, alpha = _canvas(h, w)
    green = np.array([rng.uniform(30, 90), rng.uniform(70, 140), rng.uniform(50, 120)], np.float32)
    _leafy(rng, bgr, alpha, green, int(rng.integers(6, 14)), (6, 12, w - 6, h - 6))
    cv2.rectangle(alpha, (8, h - 14), (w - 8, h - 1), 255, -1)
    bgr[h - 14 :][alpha[h - 14 :] > 0] = (green * 0.6).astype(np.uint8)
    return Sprite(bgr, alpha, float(rng.uniform(0.6, 2.5)))


def _person_glyph(img: np.ndarray, c: tuple[int, int], s: float, col: tuple[int, int, int]) -> None:
    x, y = c
    cv2.circle(img, (x, int(y - 0.55 * s)), max(1, int(0.12 * s)), col, -1)
    cv2.line(img, (x, int(y - 0.4 * s)), (x, int(y + 0.1 * s)), col, max(1, int(0.1 * s)))
    for dx in (-1, 1):
        cv2.line(
            img,
            (x, int(y + 0.1 * s)),
            (int(x + dx * 0.2 * s), int(y + 0.5 * s)),
            col,
            max(1, int(0.08 * s)),
        )
        cv2.line(
            img, (x, int(y - 0.3 * s)), (int(x + dx * 0.25 * s), int(y)), col, max(1, int(0.07 * s))
        )


def _deer_glyph(img: np.ndarray, c: tuple[int, int], s: float, col: tuple[int, int, int]) -> None:
    x, y = c
    cv2.ellipse(img, (x, y), (int(0.35 * s), int(0.14 * s)), 0, 0, 360, col, -1)
    for dx in (-0.25, -0.15, 0.2, 0.3):
        cv2.line(
            img,
            (int(x + dx * s), y),
            (int(x + dx * s), int(y + 0.4 * s)),
            col,
            max(1, int(0.05 * s)),
        )
    cv2.line(
        img,
        (int(x + 0.3 * s), y),
        (int(x + 0.42 * s), int(y - 0.35 * s)),
        col,
        max(1, int(0.07 * s)),
    )
    cv2.line(
        img, (int(x + 0.42 * s), int(y - 0.35 * s)), (int(x + 0.3 * s), int(y - 0.6 * s)), col, 1
    )


def sign(rng: np.random.Generator) -> Sprite:
    """A sign on a post: a yellow warning diamond (some with a person or a deer on it), a
    green direction board, or a white speed limit."""
    kind = str(rng.choice(["diamond", "board", "limit"], p=[0.4, 0.35, 0.25]))
    h, w = 160, 96 if kind != "board" else 160
    bgr, alpha = _canvas(h, w)
    post = (int(rng.integers(90, 160)),) * 3
    n_posts = 2 if kind == "board" else 1
    for k in range(n_posts):
        px = w // 2 if n_posts == 1 else int(w * (0.25 + 0.5 * k))
        cv2.rectangle(bgr, (px - 2, 40), (px + 2, h - 1), post, -1)
        cv2.rectangle(alpha, (px - 2, 40), (px + 2, h - 1), 255, -1)
    black = (20, 20, 20)
    if kind == "diamond":
        pts = np.array([[48, 4], [92, 48], [48, 92], [4, 48]], np.int32)
        cv2.fillConvexPoly(bgr, pts, (20, 200, 235))
        cv2.polylines(bgr, [pts], True, black, 2)
        cv2.fillConvexPoly(alpha, pts, 255)
        glyph = rng.choice(["person", "deer", "arrow"])
        if glyph == "person":
            _person_glyph(bgr, (48, 52), 48, black)
        elif glyph == "deer":
            _deer_glyph(bgr, (44, 50), 50, black)
        else:
            cv2.arrowedLine(bgr, (30, 66), (62, 30), black, 5, tipLength=0.4)
    elif kind == "board":
        cv2.rectangle(bgr, (2, 2), (w - 3, 70), (60, 120, 20), -1)
        cv2.rectangle(bgr, (5, 5), (w - 6, 67), (230, 230, 230), 1)
        cv2.rectangle(alpha, (2, 2), (w - 3, 70), 255, -1)
        for row in range(int(rng.integers(1, 4))):  # lines of "text"
            y = 14 + 18 * row
            x = 12
            while x < w - 30:
                wl = int(rng.integers(8, 28))
                cv2.rectangle(bgr, (x, y), (x + wl, y + 9), (230, 230, 230), -1)
                x += wl + 7
    else:
        cv2.rectangle(bgr, (14, 2), (82, 86), (235, 235, 235), -1)
        cv2.rectangle(bgr, (17, 5), (79, 83), black, 2)
        cv2.rectangle(alpha, (14, 2), (82, 86), 255, -1)
        cv2.putText(
            bgr,
            str(int(rng.choice([25, 35, 45, 55, 65]))),
            (22, 70),
            cv2.FONT_HERSHEY_SIMPLEX,
            1.1,
            black,
            3,
        )
    return Sprite(bgr, alpha, float(rng.uniform(2.5, 4.5)) * (1.4 if kind == "board" else 1.0))


def _pattern(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A random procedural texture, uint8[h, w, 3]: noise, stripes, checkers or a gradient
    in random colours (Tremblay et al. 2018's distractor textures)."""
    a, b = (rng.integers(0, 256, 3).astype(np.float32) for _ in range(2))
    kind = rng.integers(0, 4)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == 0:
        t = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), rng.uniform(0.5, 4))
        t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
    elif kind == 1:
        ang, period = rng.uniform(0, np.pi), rng.uniform(4, 20)
        t = (np.sin((xx * np.cos(ang) + yy * np.sin(ang)) / period * 2 * np.pi) > 0).astype(
            np.float32
        )
    elif kind == 2:
        c = int(rng.integers(4, 16))
        t = ((xx // c + yy // c) % 2).astype(np.float32)
    else:
        t = yy / max(h - 1, 1)
    return (a * (1 - t[..., None]) + b * t[..., None]).astype(np.uint8)


def distractor(rng: np.random.Generator) -> Sprite:
    """A random textured shape standing by the road: one to three polygons or ellipses.
    Nothing real looks like it, which is the point: the detector learns that texture and
    clutter are not objects."""
    h, w = 96, int(rng.integers(32, 160))
    bgr, alpha = _pattern(rng, h, w), np.zeros((h, w), np.uint8)
    for _ in range(int(rng.integers(1, 4))):
        if rng.random() < 0.5:
            centre = (int(rng.uniform(0.2, 0.8) * w), int(rng.uniform(0.3, 0.8) * h))
            axes = (int(rng.uniform(0.15, 0.5) * w), int(rng.uniform(0.15, 0.5) * h))
            cv2.ellipse(alpha, centre, axes, float(rng.uniform(0, 180)), 0, 360, 255, -1)
        else:
            pts = np.stack([rng.uniform(0, w, 5), rng.uniform(0, h, 5)], 1).astype(np.int32)
            cv2.fillConvexPoly(alpha, cv2.convexHull(pts), 255)
    alpha[-2:] = np.where(alpha[-2:].any(0), 255, 0)[None]  # stand on the ground
    return Sprite(bgr, alpha, float(rng.uniform(0.4, 4.0)))


def delineator(rng: np.random.Generator) -> Sprite:
    """A roadside delineator: a white post about 1.1 m tall with a reflector near the top
    (thin, upright, pale: the shape that becomes a phantom pedestrian if never seen)."""
    h, w = 96, 12
    bgr, alpha = _canvas(h, w)
    white = int(rng.integers(180, 240))
    bgr[:] = (white, white, white)
    alpha[:] = 255
    reflector = (30, 140, 230) if rng.random() < 0.5 else (235, 235, 235)
    bgr[8:22] = reflector
    bgr[:, -2:] = (int(white * 0.7),) * 3  # shaded side
    return Sprite(bgr, alpha, float(rng.uniform(1.0, 1.25)))


def blit(img: np.ndarray, sp: Sprite, u: float, v_base: float, px_h: float) -> Blitted | None:
    """Draw sp with its bottom centre at pixel (u, v_base), px_h tall; where it went or None."""
    hh = round(px_h)
    ww = round(px_h * sp.aspect)
    if hh < 3 or ww < 2 or hh > 4 * img.shape[0]:
        return None
    x0, y0 = round(u - ww / 2), round(v_base - hh)
    H, W = img.shape[:2]
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x0 + ww, W), min(y0 + hh, H)
    if cx0 >= cx1 or cy0 >= cy1:
        return None
    interp = cv2.INTER_AREA if hh < sp.bgr.shape[0] else cv2.INTER_LINEAR
    src = cv2.resize(sp.bgr, (ww, hh), interpolation=interp)[
        cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0
    ]
    a = cv2.resize(sp.alpha, (ww, hh), interpolation=interp)[
        cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0
    ]
    _blend(img[cy0:cy1, cx0:cx1], src, a)
    return slice(cy0, cy1), slice(cx0, cx1), a


@njit(cache=True, nogil=True)
def _blend(dst: np.ndarray, src: np.ndarray, alpha: np.ndarray) -> None:
    """dst = src * k + dst * (1 - k), k = alpha / 255, in float32 and truncated to uint8, in
    place: what the numpy expression computes, value for value (no fastmath: no fused or
    reordered arithmetic), without its five temporary arrays (blits are ~25 a frame)."""
    h, w, ch = dst.shape
    one, inv = np.float32(1.0), np.float32(1.0 / 255.0)
    for y in range(h):
        for x in range(w):
            k = np.float32(alpha[y, x]) * inv
            for c in range(ch):
                v = np.float32(src[y, x, c]) * k + np.float32(dst[y, x, c]) * (one - k)
                dst[y, x, c] = np.uint8(v)


def backdrop(sc: Scenario, calib: Calib, rng: np.random.Generator) -> np.ndarray:
    """The frame before the road is drawn, uint8[H, W, 3]: sky gradient, clouds, and hills
    or far ground down to a little below the horizon (so no sky shows under the far road)."""
    c, sn = sc.conditions, sc.scenery
    h, w = calib.image_height, calib.image_width
    top, bottom = {
        "day": ((200, 140, 80), (235, 215, 190)),
        "dusk": ((120, 70, 60), (120, 160, 235)),
        "night": ((18, 10, 8), (40, 30, 28)),
    }[c.time_of_day]
    if c.weather != "clear":
        top = bottom = (165, 165, 160) if c.time_of_day == "day" else bottom
    t = np.linspace(0, 1, h)[:, None]
    sky = (np.array(top) * (1 - t) + np.array(bottom) * t).astype(np.float32)
    img = np.repeat(sky[:, None, :], w, axis=1)
    horizon = calib.horizon_v
    if c.time_of_day != "night" and c.weather == "clear" and sn.clouds:
        q = 4  # soft clouds drawn at a quarter of the size
        layer = np.zeros((h // q, w // q), np.float32)
        for _ in range(sn.clouds):
            cx, cy = rng.uniform(0, w), rng.uniform(0, max(horizon - 40, 10))
            ax, ay = rng.uniform(60, 260), rng.uniform(12, 45)
            blob = np.zeros_like(layer)
            cv2.ellipse(
                blob, (int(cx / q), int(cy / q)), (int(ax / q), int(ay / q)), 0, 0, 360, 1.0, -1
            )
            layer = np.maximum(layer, cv2.GaussianBlur(blob, (0, 0), ay * 0.5 / q))
        _clouds(img, np.asarray(cv2.resize(layer, (w, h))))
    light = {"day": 1.0, "dusk": 0.6, "night": 0.15}[c.time_of_day]
    u = np.arange(w)
    height, phase, bright = sn.hills
    ridge = np.full(w, horizon - 2.0)
    if height > 0:
        wave = 0.6 + 0.25 * np.sin(u / w * 7.0 + phase) + 0.15 * np.sin(u / w * 23.0 + 2 * phase)
        ridge = horizon - height * h * wave
    tex = cv2.resize(
        cv2.GaussianBlur(rng.normal(1.0, 0.15, (h // 2, w // 2)).astype(np.float32), (0, 0), 1.2),
        (w, h),
    )
    _land(img, ridge, tex, np.array(sn.hill_bgr, np.float32) * bright * light)
    if sn.treeline > 0:  # distant trees along the horizon: texture where the road meets sky
        _treeline(img, rng, horizon, sn.treeline, light)
    return img.clip(0, 255).astype(np.uint8)


# The two per-pixel passes of the backdrop, written as loops because numpy's versions
# broadcast over a last axis of 3 (slow inner loops) and gather and scatter by mask (the land
# fill 13.6 ms a clip, the clouds 34 to 69 ms where a clip has them). No fastmath: each value
# is computed as the numpy expressions they replace computed it (the data's bytes are
# pinned), with the same float widths and order.
@njit(cache=True, nogil=True)
def _clouds(img: np.ndarray, full: np.ndarray) -> None:
    """img += full * (245 - img) * 0.8 per channel, in float64, stored as float32."""
    h, w, ch = img.shape
    for y in range(h):
        for x in range(w):
            a = np.float64(full[y, x])
            if a == 0.0:  # adds an exact zero
                continue
            for c in range(ch):
                v = np.float64(img[y, x, c])
                img[y, x, c] = np.float32(v + a * (245.0 - v) * 0.8)


@njit(cache=True, nogil=True)
def _land(img: np.ndarray, ridge: np.ndarray, tex: np.ndarray, col: np.ndarray) -> None:
    """img = clip(col * tex, 0, 255) on every pixel at or below the ridge (its row >= ridge
    of its column: down to the bottom, where the road and verges cover the rest)."""
    h, w, ch = img.shape
    for y in range(h):
        for x in range(w):
            if y >= ridge[x]:
                t = tex[y, x]
                for c in range(ch):
                    img[y, x, c] = min(max(col[c] * t, np.float32(0.0)), np.float32(255.0))


def _treeline(
    img: np.ndarray, rng: np.random.Generator, horizon: float, density: float, light: float
) -> None:
    """Many small dark-green crowns just above the horizon (float image, in place)."""
    w = img.shape[1]
    for _ in range(int(density * w / 6)):
        u = rng.uniform(0, w)
        r = rng.uniform(2, 12)
        v = horizon - rng.uniform(0, 2.2) * r
        green = np.array([rng.uniform(25, 70), rng.uniform(55, 110), rng.uniform(35, 90)])
        cv2.circle(img, (int(u), int(v)), int(r), tuple(float(c) for c in green * light), -1)


def hood_top(calib: Calib, frac: float) -> np.ndarray:
    """The first image row covered by the bonnet, per column: int32[W]; H where none. The
    edge bulges up in the middle, as a bonnet seen from the windscreen does."""
    h, w = calib.image_height, calib.image_width
    if frac <= 0:
        return np.full(w, h, np.int32)
    x = (np.arange(w) - w / 2) / (w / 2)
    top = h * (1 - frac) + h * frac * 0.45 * x**2
    return np.clip(np.round(top), 0, h).astype(np.int32)


def draw_hood(img: np.ndarray, top: np.ndarray, bgr: tuple[int, int, int]) -> None:
    """Fill the bonnet below `top` (int32[W]) with its paint, brighter near its edge where it
    reflects the sky."""
    h = img.shape[0]
    first = int(top.min())
    if first >= h:
        return
    rows = np.arange(first, h)[:, None]
    mask = rows >= top[None, :]
    depth = np.clip((rows - top[None, :]) / max(h - first, 1), 0, 1)
    col = np.array(bgr, np.float32)
    shade = (0.55 + 0.45 * math.e ** (-4.0 * depth))[..., None]  # brighter at the edge
    band = (col * shade).clip(0, 255).astype(np.uint8)
    region = img[first:h]
    region[mask] = band[mask]
