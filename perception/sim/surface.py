"""The road surface of one clip: verges, shoulders, asphalt or concrete, paint, seams and
cracks, repair patches, wheel paths, texture and shadows across the road.

Everything is laid out along the road once per clip (arc length s, lateral offset, metres)
and drawn each frame through the View, far to near, before any object stands on it.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from perception.sim.effects import LIGHT_ONE
from perception.sim.project import MAX_RANGE_M, SCALE, SHIFT, View, sample_s
from perception.sim.road import Pose
from perception.sim.scenario import Scenario
from perception.sim.texture import GroundMap, apply_texture, surface_texture

PAINT = {"white": (225, 228, 230), "yellow": (40, 175, 215)}
TEXTURE_FADE_M = 70.0  # the surface texture fades out by this distance (far texels alias)


class RoadSurface:
    """Built in steps (paint, then the rest) so that each clip's random draws keep their
    order: the same seed gives the same bytes as before the renderer was split up."""

    def __init__(self, sc: Scenario, view: View, rng: np.random.Generator):
        self.sc, self.view, self.road = sc, view, view.road
        self.paint_colours: dict[Any, Any] = {}  # colour -> index, then index -> colour
        self.paint = self._paint_segments(rng)
        self.features = self._road_features(rng)
        self.patches = self._patches(rng)
        self.shadow_bands: list[tuple[float, float]] = []
        self.texture = np.zeros((1, 1), np.float32)
        self.ground = GroundMap(view.calib)

    def add_shadows(self, rng: np.random.Generator) -> None:
        """Bands of shade across the road (trees, bridges) on sunny clips."""
        if self.sc.conditions.shadows:
            n = int(self.road.length / 25)
            self.shadow_bands = [
                (rng.uniform(0, self.road.length), rng.uniform(2.0, 12.0)) for _ in range(n)
            ]

    def add_texture(self, rng: np.random.Generator) -> None:
        self.texture = surface_texture(rng, self.road.spec.surface, self.road.spec.grain)

    # -- per-clip layout ------------------------------------------------------------------
    def _paint_segments(self, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        """Arrays s0, s1, lat_a, lat_b, colour index of every painted piece along the road;
        colours in self.paint_colours."""
        spec = self.road.spec
        asphalt = np.array(spec.asphalt_bgr, float)
        segs = []
        for off, style, colour in zip(
            self.road.boundary_offsets(), spec.styles, spec.colors, strict=True
        ):
            if style == "none":
                continue
            base = np.array(PAINT[colour], float)
            strips = (
                [(off - 0.075, off + 0.075)]
                if style != "double"
                else [(off - 0.22, off - 0.08), (off + 0.08, off + 0.22)]
            )
            period = spec.dash_m + spec.gap_m if style == "dashed" else 3.0
            length = spec.dash_m if style == "dashed" else 3.0
            s = rng.uniform(0, period)
            while s < self.road.length:
                worn = rng.random() < spec.wear
                fade = rng.uniform(0.55, 0.85) if worn else rng.uniform(0.0, 0.15)
                if not (worn and rng.random() < 0.5):
                    # fade quantised to 8 levels: one fillPoly call per colour
                    q = round(fade * 8)
                    col = tuple(int(c) for c in base * (1 - q / 8) + asphalt * q / 8)
                    k = self.paint_colours.setdefault(col, len(self.paint_colours))
                    for a, b in strips:
                        segs.append((s, s + length, a, b, k))
                s += period
        self.paint_colours = {k: c for c, k in self.paint_colours.items()}
        arr = np.array(segs, np.float64).reshape(-1, 5)
        return arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3], arr[:, 4].astype(np.int64)

    def _road_features(
        self, rng: np.random.Generator
    ) -> list[tuple[np.ndarray, np.ndarray, tuple[int, ...], int]]:
        """Tar seams and cracks: (s, lat) polylines with colour and thickness."""
        spec = self.road.spec
        off = self.road.boundary_offsets()
        out = []
        dark = tuple(max(int(c) - 25, 0) for c in spec.asphalt_bgr)
        for _ in range(int(rng.integers(0, 12))):  # longitudinal seams that look like lines
            s0 = rng.uniform(0, self.road.length)
            s = s0 + np.linspace(0, rng.uniform(10, 60), 12)
            lat = rng.uniform(off[-1], off[0]) + np.cumsum(rng.normal(0, 0.05, 12))
            out.append((s, lat, dark, int(rng.integers(1, 3))))
        for _ in range(int(rng.integers(0, 30))):  # cracks and transverse joints
            s = rng.uniform(0, self.road.length) + np.cumsum(rng.normal(0, 0.4, 6))
            lat = rng.uniform(off[-1], off[0]) + np.cumsum(rng.normal(0, 0.5, 6))
            out.append((s, lat, dark, 1))
        return out

    def _patches(self, rng: np.random.Generator) -> list[tuple[float, ...]]:
        """Repair patches and stains: (s0, s1, lat_a, lat_b, brightness factor)."""
        spec = self.road.spec
        off = self.road.boundary_offsets()
        out: list[tuple[float, ...]] = []
        for _ in range(int(spec.patches * self.road.length / 100.0)):
            s0 = rng.uniform(0, self.road.length)
            lat = rng.uniform(off[-1], off[0])
            length, width = rng.uniform(1.0, 15.0), rng.uniform(0.5, 3.5)
            shade = float(rng.choice([rng.uniform(0.6, 0.85), rng.uniform(1.1, 1.3)]))
            out.append((s0, s0 + length, lat, lat - width, shade))
        return out

    # -- per frame ------------------------------------------------------------------------
    def draw(
        self,
        img: np.ndarray,
        light: np.ndarray,
        ego: Pose,
        s_ego: float,
        lat_ego: float,
        ahead: np.ndarray,
        barrier_lat: float | None,
    ) -> None:
        """The ground up to the paint, its texture, and shade in the light map. ahead: arc
        lengths to draw strips at (metres)."""
        spec, quads = self.road.spec, self.view.strip_quads
        off = self.road.boundary_offsets()
        s1 = s_ego + MAX_RANGE_M
        left, right = off[0] + spec.shoulder_m, off[-1] - spec.shoulder_m
        shoulder = tuple(min(int(c) + 15, 255) for c in spec.asphalt_bgr)
        cv2.fillPoly(img, quads(ego, ahead, left + 30, right - 30), spec.verge_bgr, 8, SHIFT)
        if barrier_lat is not None:  # the other carriageway, beyond the median
            far = barrier_lat + 3 * spec.lane_width_m + 1.0
            other = tuple(max(int(c) - 6, 0) for c in spec.asphalt_bgr)
            cv2.fillPoly(img, quads(ego, ahead, far, barrier_lat), other, 8, SHIFT)
        cv2.fillPoly(img, quads(ego, ahead, left, right), shoulder, 8, SHIFT)
        asphalt = quads(ego, ahead, off[0] + 0.3, off[-1] - 0.3)
        cv2.fillPoly(img, asphalt, spec.asphalt_bgr, 8, SHIFT)
        self._draw_wear(img, ego, s_ego, s1)
        if spec.guard_rail:  # beside the verges; a median barrier replaces the left one
            for lat in (left + 0.3, right - 0.3)[1 if barrier_lat is not None else 0 :]:
                cv2.fillPoly(img, quads(ego, ahead, lat, lat, 0.55, 0.8), (150, 150, 150), 8, SHIFT)
        self._draw_features(img, ego, s_ego, s1)
        self._draw_paint(img, ego, s_ego, s1)
        g = self.ground
        apply_texture(img, g.fwd, g.lat, g.first_row, self.texture, s_ego, lat_ego, TEXTURE_FADE_M)
        self._draw_shadows(light, ego, s_ego, left, right)

    def _draw_wear(self, img: np.ndarray, ego: Pose, s0: float, s1: float) -> None:
        """Repair patches and the darker wheel paths of each lane."""
        spec, quads = self.road.spec, self.view.strip_quads
        base = np.array(spec.asphalt_bgr, float)
        for a, b, la, lb, k in self.patches:
            if b < s0 or a > s1:
                continue
            ss = np.linspace(max(a, s0 - 1), min(b, s1), 4)
            col = tuple(int(c) for c in np.clip(base * k, 0, 255))
            cv2.fillPoly(img, quads(ego, ss, la, lb), col, 8, SHIFT)
        if spec.tyre_tracks <= 0:
            return
        ss = s0 + sample_s(-2.0, min(s1 - s0, 80.0))
        col = tuple(int(c) for c in base * (1.0 - 0.12 * spec.tyre_tracks))
        polys = []
        for lane in range(spec.lanes):
            centre = self.road.lane_centre(lane)
            for side in (-0.8, 0.8):
                polys += quads(ego, ss, centre + side + 0.3, centre + side - 0.3)
        cv2.fillPoly(img, polys, col, 8, SHIFT)

    def _draw_paint(self, img: np.ndarray, ego: Pose, s0: float, s1: float) -> None:
        """All paint in view, projected in one call per colour (4 samples per piece)."""
        a, b, la, lb, col = self.paint
        for c in np.unique(col[(b > s0 - 1) & (a < s1)]):
            sel = (col == c) & (b > s0 - 1) & (a < s1)
            start = np.maximum(a[sel], s0 - 1)
            ss = start[:, None] + np.linspace(0, 1, 4) * (np.minimum(b[sel], s1) - start)[:, None]
            joined = np.tile([True, True, True, False], len(ss))
            quads = self.view.strip_quads(
                ego, ss.ravel(), np.repeat(la[sel], 4), np.repeat(lb[sel], 4), joined=joined
            )
            cv2.fillPoly(img, quads, self.paint_colours[c], 8, SHIFT)

    def _draw_features(self, img: np.ndarray, ego: Pose, s0: float, s1: float) -> None:
        for s, lat, col, thick in self.features:
            if s.max() < s0 or s.min() > s1:
                continue
            uv, pe = self.view.to_uv(ego, self.road.points(s, lat))
            keep = pe[:, 0] > 1.0
            if keep.sum() >= 2:
                fp = (uv[keep] * SCALE).clip(-(2**28), 2**28).astype(np.int32)
                cv2.polylines(img, [fp], False, col, thick, 8, SHIFT)

    def _draw_shadows(
        self, light: np.ndarray, ego: Pose, s_ego: float, left: float, right: float
    ) -> None:
        quads = []
        for s, length in self.shadow_bands:
            if s + length < s_ego or s > s_ego + MAX_RANGE_M:
                continue
            quads += self.view.strip_quads(ego, np.linspace(s, s + length, 4), left, right)
        if quads:
            cv2.fillPoly(light, quads, int(LIGHT_ONE * 0.5), 8, SHIFT)
