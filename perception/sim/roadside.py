"""Roadside objects placed along the road and drawn each frame: trees, bushes, signs, poles,
fences, gantries, and the concrete median barrier of a divided highway.

Everything is placed in road coordinates (arc length s, lateral offset, metres) once per clip
and projected through the camera each frame, so clutter sits where real roads have it: along
the verges, behind the barrier, over the carriageway.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from perception.sim.road import Pose, Road
from perception.sim.scenario import Scenario
from perception.sim.scenery import Sprite, blit, bush, delineator, distractor, sign, tree

Project = Callable[[Pose, np.ndarray], tuple[np.ndarray, np.ndarray]]
BARRIER_H = 0.82  # a Jersey barrier, metres
SHIFT = 3
SCALE = 1 << SHIFT


@dataclass
class Item:
    sprite: int  # index into Roadside.sprites; -1 = a plain pole
    s: float
    lat: float
    scale: float


def _spaced(rng: np.random.Generator, length: float, per_100m: float) -> np.ndarray:
    """Arc lengths of objects spaced at random, per_100m on average."""
    if per_100m <= 0:
        return np.zeros(0)
    gaps = rng.exponential(100.0 / per_100m, int(length * per_100m / 100.0) + 2)
    s = np.cumsum(gaps) + rng.uniform(0, 10)
    return s[s < length]


class Roadside:
    def __init__(self, sc: Scenario, road: Road, rng: np.random.Generator):
        self.sc, self.road = sc, road
        spec, sn = road.spec, sc.scenery
        off = road.boundary_offsets()
        self.barrier_lat = float(off[0] + spec.median_m) if spec.median_m > 0 else None
        night = sc.conditions.time_of_day == "night"
        self.sprites: list[Sprite] = [tree(rng) for _ in range(5)]
        self.sprites += [bush(rng) for _ in range(3)]
        self.sprites += [sign(rng) for _ in range(4)]
        self.sprites.append(delineator(rng))  # index 12
        self.sprites += [distractor(rng) for _ in range(4)]  # 13..16
        if night:  # unlit foliage and signs are dim; headlights do the rest
            for sp in self.sprites:
                sp.bgr = (sp.bgr * 0.35).astype(np.uint8)
        self.items: list[Item] = []
        for side, edge in ((1, off[0]), (-1, off[-1])):
            verge = edge + side * (spec.shoulder_m + 1.0)
            if side > 0 and self.barrier_lat is not None:
                verge = self.barrier_lat + 3 * spec.lane_width_m + 2.0  # beyond the far lanes
            for s in _spaced(rng, road.length, sn.trees_per_100m / 2):
                lat = verge + side * rng.uniform(1.0, 14.0)
                self.items.append(Item(int(rng.integers(0, 5)), s, lat, rng.uniform(0.7, 1.3)))
            for s in _spaced(rng, road.length, sn.bushes_per_100m / 2):
                lat = verge + side * rng.uniform(0.0, 6.0)
                self.items.append(Item(int(rng.integers(5, 8)), s, lat, rng.uniform(0.6, 1.4)))
            for s in _spaced(rng, road.length, sn.signs_per_100m / 2):
                lat = edge + side * (spec.shoulder_m + rng.uniform(0.5, 2.5))
                self.items.append(Item(int(rng.integers(8, 12)), s, lat, rng.uniform(0.8, 1.2)))
            for s in _spaced(rng, road.length, 2.5):
                lat = edge + side * (spec.shoulder_m + rng.uniform(0.8, 4.0))
                self.items.append(Item(-1, s, lat, rng.uniform(0.7, 1.4)))
        for s in _spaced(rng, road.length, sn.distractors_per_100m):
            side = 1 if rng.random() < 0.5 else -1
            edge = off[0] if side > 0 else off[-1]
            lat = edge + side * (spec.shoulder_m + rng.uniform(0.5, 8.0))
            self.items.append(Item(int(rng.integers(13, 17)), s, lat, rng.uniform(0.6, 1.5)))
        if sn.delineator_every_m > 0:
            lat = off[-1] - spec.shoulder_m - 0.5
            s = rng.uniform(0, sn.delineator_every_m)
            while s < road.length:
                self.items.append(Item(12, s, lat, 1.0))
                s += sn.delineator_every_m
        self.items.sort(key=lambda it: it.s)
        self.fence_lat = (
            float(off[-1] - spec.shoulder_m - rng.uniform(2.0, 6.0)) if sc.scenery.fence else None
        )
        every = sn.gantry_every_m
        self.gantries = list(np.arange(rng.uniform(40, 120), road.length, every)) if every else []

    # -- per frame -----------------------------------------------------------------------
    def draw_items(
        self,
        img: np.ndarray,
        depth: np.ndarray,
        ego: Pose,
        s0: float,
        s1: float,
        project: Project,
        fx: float,
    ) -> None:
        """Sprites and poles between arc lengths s0 and s1, far to near; each one's distance
        goes into depth over the pixels it covers (for the fog)."""
        night = self.sc.conditions.time_of_day == "night"
        pole = (50, 50, 55) if night else (120, 120, 125)
        for it in reversed(self.items):
            if not s0 + 2 < it.s < s1:
                continue
            if it.sprite < 0:
                height = 7.0 * it.scale
            else:
                height = self.sprites[it.sprite].height_m * it.scale
            pts = self.road.points(np.array([it.s, it.s]), it.lat, np.array([0.0, height]))
            uv, pe = project(ego, pts)
            if pe[0, 0] < 1.5 or np.isnan(uv).any():
                continue
            dist = float(pe[0, 0])
            if it.sprite < 0:
                p0, p1 = tuple(uv[0].astype(int)), tuple(uv[1].astype(int))
                thick = max(1, int(0.22 * fx / dist))
                cv2.line(img, p0, p1, pole, thick)
                cv2.line(depth, p0, p1, dist, thick)
            else:
                drawn = blit(img, self.sprites[it.sprite], uv[0, 0], uv[0, 1], uv[0, 1] - uv[1, 1])
                if drawn is not None:
                    rows, cols, alpha = drawn
                    depth[rows, cols][alpha > 127] = dist

    def draw_fence(
        self,
        img: np.ndarray,
        strip: Callable[..., list[np.ndarray]],
        ahead: np.ndarray,
        ego: Pose,
        project: Project,
    ) -> None:
        if self.fence_lat is None:
            return
        col = (110, 115, 115) if self.sc.conditions.time_of_day != "night" else (35, 35, 35)
        cv2.fillPoly(
            img, strip(ego, ahead, self.fence_lat, self.fence_lat, 1.05, 1.15), col, 8, SHIFT
        )
        posts = ahead[(np.round(ahead) % 3 == 0) & (ahead - ahead[0] > 3)]
        for s in posts[::2]:
            pts = self.road.points(np.array([s, s]), self.fence_lat, np.array([0.0, 1.15]))
            uv, pe = project(ego, pts)
            if pe[0, 0] > 1.5 and not np.isnan(uv).any():
                cv2.line(img, tuple(uv[0].astype(int)), tuple(uv[1].astype(int)), col, 1)

    def draw_gantries(
        self, img: np.ndarray, depth: np.ndarray, ego: Pose, s_ego: float, project: Project
    ) -> None:
        """Overhead sign gantries: two posts and a beam with green boards over the road."""
        off = self.road.boundary_offsets()
        left, right = off[0] + 1.0, off[-1] - 1.0
        for s in self.gantries:
            if not s_ego + 8.0 < s < s_ego + 150.0:
                continue
            for lat in (left, right):
                self._quad(img, depth, ego, project, s, lat, lat, 0.0, 6.6, (130, 130, 135), 0.3)
            self._quad(img, depth, ego, project, s, left, right, 6.0, 6.6, (120, 120, 125), 0.0)
            width = (left - right) / 3
            for k in range(2):
                a = right + width * (0.4 + 1.4 * k)
                board = (60, 120, 20)
                self._quad(img, depth, ego, project, s - 0.2, a + width, a, 4.6, 6.2, board, 0.0)

    def _quad(
        self,
        img: np.ndarray,
        depth: np.ndarray,
        ego: Pose,
        project: Project,
        s: float,
        lat_a: float,
        lat_b: float,
        h0: float,
        h1: float,
        col: tuple[int, int, int],
        thick_m: float,
    ) -> None:
        """A vertical rectangle across the road at arc length s (lat_a..lat_b, h0..h1), or a
        post thick_m wide when lat_a == lat_b."""
        if lat_a == lat_b:
            lat_a, lat_b = lat_a + thick_m / 2, lat_b - thick_m / 2
        pts = np.concatenate(
            [
                self.road.points(np.array([s, s]), np.array([lat_a, lat_b]), h0),
                self.road.points(np.array([s, s]), np.array([lat_b, lat_a]), h1),
            ]
        )
        uv, pe = project(ego, pts)
        if (pe[:, 0] < 1.5).any() or np.isnan(uv).any():
            return
        poly = [(uv * SCALE).astype(np.int32)]
        cv2.fillPoly(img, poly, col, 8, SHIFT)
        cv2.fillPoly(depth, poly, float(pe[:, 0].min()), 8, SHIFT)

    def draw_barrier(
        self,
        img: np.ndarray,
        strip: Callable[..., list[np.ndarray]],
        ahead: np.ndarray,
        ego: Pose,
        concrete: tuple[int, int, int],
    ) -> None:
        """The median barrier's face, its dirty foot and its top, over whatever is beyond."""
        if self.barrier_lat is None:
            return
        lat = self.barrier_lat
        foot = tuple(int(c * 0.7) for c in concrete)
        top = tuple(min(int(c * 1.15), 255) for c in concrete)
        cv2.fillPoly(img, strip(ego, ahead, lat, lat, 0.0, BARRIER_H), concrete, 8, SHIFT)
        cv2.fillPoly(img, strip(ego, ahead, lat - 0.05, lat - 0.05, 0.0, 0.12), foot, 8, SHIFT)
        cv2.fillPoly(img, strip(ego, ahead, lat, lat + 0.2, BARRIER_H, BARRIER_H), top, 8, SHIFT)

    def barrier_top_line(
        self, ego: Pose, ahead: np.ndarray, project: Project
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """The barrier's top edge in the image: (u, v) pixels sorted by u; None without one.
        Objects beyond the barrier show only above this line."""
        if self.barrier_lat is None:
            return None
        uv, pe = project(ego, self.road.points(ahead, self.barrier_lat, BARRIER_H))
        ok = (pe[:, 0] > 0.8) & ~np.isnan(uv).any(axis=1)
        if ok.sum() < 2:
            return None
        u, v = uv[ok, 0], uv[ok, 1]
        order = np.argsort(u)
        return u[order], v[order]
