"""Rasterise one frame of a scenario with OpenCV and compute its exact labels.

Everything is drawn from 3D: road strips, paint, seams, shadows, roadside objects and actor
parts are projected through the clip's calibration, so labels and pixels come from the same
numbers. Painter's order (far to near) resolves visibility; occlusion between actors is
measured on a quarter-resolution id buffer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from perception.dataset.schema import Lane, Obstacle
from perception.sim.actors import SENSOR_HZ, Actor, Part, Traffic, person_parts
from perception.sim.effects import LIGHT_ONE, apply_camera, noise_tile
from perception.sim.road import Pose, Road
from perception.sim.roadside import Roadside
from perception.sim.scenario import Scenario
from perception.sim.scenery import backdrop, draw_hood, hood_top
from perception.sim.texture import GroundMap, apply_texture, surface_texture
from serving.contract import LANE_SLOTS

SHIFT = 3  # fixed-point bits for sub-pixel polygon vertices
SCALE = 1 << SHIFT
MAX_RANGE_M = 160.0
PAINT = {"white": (225, 228, 230), "yellow": (40, 175, 215)}
# box corners: index bits (x, y, z) -> -/+ half size; faces as corner indices + outward normal
_CORNERS = np.array([[(i >> 2) & 1, (i >> 1) & 1, i & 1] for i in range(8)], float) - 0.5
_FACES = (
    ((0, 1, 3, 2), (-1, 0, 0)),
    ((4, 5, 7, 6), (1, 0, 0)),
    ((0, 1, 5, 4), (0, -1, 0)),
    ((2, 3, 7, 6), (0, 1, 0)),
    ((0, 2, 6, 4), (0, 0, -1)),
    ((1, 3, 7, 5), (0, 0, 1)),
)
_FACE_IDX = np.array([f[0] for f in _FACES])  # (6, 4) corner indices
_NORMALS = np.array([f[1] for f in _FACES], float)  # (6, 3)
_SHADE = np.array([0.8, 0.85, 0.68, 0.72, 0.3, 1.0])  # per face: light from above and ahead


@dataclass
class Drawn:
    """One actor as drawn: polygons (pixels, fixed point) with colours, and its label."""

    depth: float
    polys: list[tuple[np.ndarray, tuple[int, int, int], str]]
    corners_uv: np.ndarray  # all projected part corners, pixels
    label: Obstacle
    beyond_barrier: bool = False  # on the other carriageway: drawn before the median barrier


def _sample_s(near: float, far: float) -> np.ndarray:
    """Arc-length offsets ahead of the ego: fine near, coarse far (metres)."""
    a = np.arange(near, min(far, 40.0), 0.5)
    return np.concatenate([a, np.arange(40.0, far, 2.0)]) if far > 40.0 else a


class Renderer:
    def __init__(self, sc: Scenario, road: Road, traffic: Traffic, rng: np.random.Generator):
        self.sc, self.road, self.traffic, self.rng = sc, road, traffic, rng
        self._ego_poses: dict[int, Pose] = {}
        self.calib = sc.calib
        self.w, self.h = sc.calib.image_width, sc.calib.image_height
        self.noise = noise_tile(rng, sc.conditions.noise_sigma)
        self.paint = self._paint_segments()
        self.features = self._road_features()
        self.patches = self._patches()
        self.roadside = Roadside(sc, road, rng)
        self.shadow_bands = self._shadows()
        self.base_light = self._base_light()
        self.fog_bgr = np.array(self._fog_colour(), np.float32)
        self.backdrop = backdrop(sc, self.calib, rng)
        self.ground = GroundMap(self.calib)
        self.texture = surface_texture(rng, road.spec.surface, road.spec.grain)
        self.hood = hood_top(self.calib, sc.scenery.hood_frac)
        under = np.arange(self.h)[:, None] >= self.hood[None, :]
        self.base_light[under] = self.base_light[0, 0]  # ambient: no headlight on the bonnet
        self.rain = self._rain_streaks() if sc.conditions.rain_intensity > 0 else None

    # -- per-clip precomputation ------------------------------------------------------------
    def _paint_segments(self) -> tuple[np.ndarray, ...]:
        """Arrays s0, s1, lat_a, lat_b, colour index of every painted piece along the road;
        colours in self.paint_colours."""
        spec, rng = self.road.spec, self.rng
        asphalt = np.array(spec.asphalt_bgr, float)
        segs = []
        self.paint_colours: dict[Any, Any] = {}  # colour -> index, then index -> colour
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
                    col = tuple(
                        int(c)
                        for c in base * (1 - round(fade * 8) / 8) + asphalt * round(fade * 8) / 8
                    )
                    k = self.paint_colours.setdefault(col, len(self.paint_colours))
                    for a, b in strips:
                        segs.append((s, s + length, a, b, k))
                s += period
        self.paint_colours = {k: c for c, k in self.paint_colours.items()}
        arr = np.array(segs, np.float64).reshape(-1, 5)
        return arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3], arr[:, 4].astype(np.int64)

    def _road_features(self) -> list[tuple[np.ndarray, np.ndarray, tuple[int, int, int], int]]:
        """Tar seams, cracks and patches: (s, lat) polylines with colour and thickness."""
        rng, spec = self.rng, self.road.spec
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
        return out  # type: ignore[return-value]

    def _patches(self) -> list[tuple[float, float, float, float, float]]:
        """Repair patches and stains: (s0, s1, lat_a, lat_b, brightness factor)."""
        rng, spec = self.rng, self.road.spec
        off = self.road.boundary_offsets()
        out = []
        for _ in range(int(spec.patches * self.road.length / 100.0)):
            s0 = rng.uniform(0, self.road.length)
            lat = rng.uniform(off[-1], off[0])
            out.append(
                (
                    s0,
                    s0 + rng.uniform(1.0, 15.0),
                    lat,
                    lat - rng.uniform(0.5, 3.5),
                    float(rng.choice([rng.uniform(0.6, 0.85), rng.uniform(1.1, 1.3)])),
                )
            )
        return out

    def _shadows(self) -> list[tuple[float, float]]:
        if not self.sc.conditions.shadows:
            return []
        rng = self.rng
        return [
            (rng.uniform(0, self.road.length), rng.uniform(2.0, 12.0))
            for _ in range(int(self.road.length / 25))
        ]

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

    def _fog_colour(self) -> tuple[int, int, int]:
        tod = self.sc.conditions.time_of_day
        return {"day": (200, 198, 195), "dusk": (150, 150, 165), "night": (28, 26, 26)}[tod]

    def _rain_streaks(self) -> np.ndarray:
        n = int(400 * self.sc.conditions.rain_intensity)
        x = self.rng.uniform(0, self.w, n)
        y = self.rng.uniform(0, self.h, n)
        ln = self.rng.uniform(10, 35, n)
        return np.stack([x, y, ln], 1)

    # -- projection helpers -----------------------------------------------------------------
    def _to_uv(self, ego: Pose, world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World points -> (uv pixels, ego-frame points)."""
        pe = ego.to_body(world.reshape(-1, 3))
        uv, _ = self.calib.project(pe)
        return uv, pe

    def _strip_quads(
        self,
        ego: Pose,
        s: np.ndarray,
        lat_a: np.ndarray | float,
        lat_b: np.ndarray | float,
        h_a: float = 0.0,
        h_b: float = 0.0,
        joined: np.ndarray | None = None,
    ) -> list[np.ndarray]:
        """Quads between two lateral offsets over consecutive arc lengths, fixed point.

        joined[i] False breaks the strip between samples i and i + 1 (several pieces of
        paint are projected in one call); h_a, h_b are heights above the road (a guard rail
        is a strip at one offset between two heights)."""
        pts = np.concatenate([self.road.points(s, lat_a, h_a), self.road.points(s, lat_b, h_b)])
        uv, pe = self._to_uv(ego, pts)
        n = len(s)
        front = (pe[:n, 0] > 0.8) & (pe[n:, 0] > 0.8)
        ok = front[:-1] & front[1:]
        if joined is not None:
            ok &= joined[:-1]
        fp = np.nan_to_num(uv * SCALE, nan=0.0).clip(-(2**28), 2**28).astype(np.int32)
        a, b = fp[:n], fp[n:]
        quads = np.stack([a[:-1], a[1:], b[1:], b[:-1]], axis=1)[ok]
        return list(quads)

    # -- drawing ----------------------------------------------------------------------------
    def draw_world(
        self, img: np.ndarray, light: np.ndarray, ego: Pose, s_ego: float, horizon_cut: float
    ) -> np.ndarray:
        """Ground, paint, texture, shadows and roadside clutter; returns the arc lengths it
        sampled (the barrier and actors are drawn later, in depth order)."""
        spec = self.road.spec
        off = self.road.boundary_offsets()
        s_far = min(s_ego + MAX_RANGE_M, self.road.length)
        ahead = s_ego + _sample_s(-2.0, horizon_cut)
        ahead = ahead[ahead < s_far]
        left, right = off[0] + spec.shoulder_m, off[-1] - spec.shoulder_m
        verge = tuple(int(c) for c in spec.verge_bgr)
        shoulder = tuple(min(int(c) + 15, 255) for c in spec.asphalt_bgr)
        quads = self._strip_quads
        cv2.fillPoly(img, quads(ego, ahead, left + 30, right - 30), verge, 8, SHIFT)
        barrier = self.roadside.barrier_lat
        if barrier is not None:  # the other carriageway, beyond the median
            far = barrier + 3 * spec.lane_width_m + 1.0
            other = tuple(max(int(c) - 6, 0) for c in spec.asphalt_bgr)
            cv2.fillPoly(img, quads(ego, ahead, far, barrier), other, 8, SHIFT)
        cv2.fillPoly(img, quads(ego, ahead, left, right), shoulder, 8, SHIFT)
        cv2.fillPoly(
            img, quads(ego, ahead, off[0] + 0.3, off[-1] - 0.3), spec.asphalt_bgr, 8, SHIFT
        )
        self._draw_surface(img, ego, s_ego, s_ego + horizon_cut)
        if spec.guard_rail:
            for lat in (left + 0.3, right - 0.3)[1 if barrier is not None else 0 :]:
                cv2.fillPoly(img, quads(ego, ahead, lat, lat, 0.55, 0.8), (150, 150, 150), 8, SHIFT)
        self._draw_features(img, ego, s_ego, s_ego + horizon_cut)
        self._draw_paint(img, ego, s_ego, s_ego + horizon_cut)
        t = self.traffic
        step = int(np.searchsorted(t.ego_s, s_ego))
        apply_texture(
            img,
            self.ground.fwd,
            self.ground.lat,
            self.ground.first_row,
            self.texture,
            s_ego,
            float(t.ego_lat[min(step, t.n - 1)]),
            70.0,
        )
        self._draw_shadows(light, ego, s_ego, left, right)
        project = self._to_uv
        self.roadside.draw_items(img, ego, s_ego, s_ego + horizon_cut, project, self.calib.fx)
        self.roadside.draw_fence(img, quads, ahead, ego, project)
        self.roadside.draw_gantries(img, ego, s_ego, project)
        return ahead

    def _draw_surface(self, img: np.ndarray, ego: Pose, s0: float, s1: float) -> None:
        """Repair patches and the darker wheel paths of each lane."""
        spec = self.road.spec
        base = np.array(spec.asphalt_bgr, float)
        for a, b, la, lb, k in self.patches:
            if b < s0 or a > s1:
                continue
            ss = np.linspace(max(a, s0 - 1), min(b, s1), 4)
            col = tuple(int(c) for c in np.clip(base * k, 0, 255))
            cv2.fillPoly(img, self._strip_quads(ego, ss, la, lb), col, 8, SHIFT)
        if spec.tyre_tracks <= 0:
            return
        ss = s0 + _sample_s(-2.0, min(s1 - s0, 80.0))
        col = tuple(int(c) for c in base * (1.0 - 0.12 * spec.tyre_tracks))
        polys = []
        for lane in range(spec.lanes):
            centre = self.road.lane_centre(lane)
            for side in (-0.8, 0.8):
                polys += self._strip_quads(ego, ss, centre + side + 0.3, centre + side - 0.3)
        cv2.fillPoly(img, polys, col, 8, SHIFT)

    def _draw_paint(self, img: np.ndarray, ego: Pose, s0: float, s1: float) -> None:
        """All paint in view, projected in one call per colour (4 samples per piece)."""
        a, b, la, lb, col = self.paint
        for c in np.unique(col[(b > s0 - 1) & (a < s1)]):
            sel = (col == c) & (b > s0 - 1) & (a < s1)
            ss = (
                np.maximum(a[sel], s0 - 1)[:, None]
                + np.linspace(0, 1, 4)
                * (np.minimum(b[sel], s1) - np.maximum(a[sel], s0 - 1))[:, None]
            )
            joined = np.tile([True, True, True, False], len(ss))
            quads = self._strip_quads(
                ego, ss.ravel(), np.repeat(la[sel], 4), np.repeat(lb[sel], 4), joined=joined
            )
            cv2.fillPoly(img, quads, self.paint_colours[c], 8, SHIFT)

    def _draw_features(self, img: np.ndarray, ego: Pose, s0: float, s1: float) -> None:
        for s, lat, col, thick in self.features:
            if s.max() < s0 or s.min() > s1:
                continue
            uv, pe = self._to_uv(ego, self.road.points(s, lat))
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
            quads += self._strip_quads(ego, np.linspace(s, s + length, 4), left, right)
        if quads:
            cv2.fillPoly(light, quads, int(LIGHT_ONE * 0.5), 8, SHIFT)

    # -- actors -----------------------------------------------------------------------------
    def actor_parts(self, a: Actor, step: int) -> list[Part]:
        if a.cls in ("car", "truck"):
            return a.parts
        phase = float(abs(a.s[step] - a.s[0]) + abs(a.lat[step] - a.lat[0])) * 3.2
        return person_parts(a.dims, a.colour, a.accent, phase, a.cls == "cyclist")

    def actor_pose(self, a: Actor, step: int) -> Pose:
        return self.road.pose(float(a.s[step]), float(a.lat[step]), a.yaw_offset(step))

    def draw_actor(self, a: Actor, step: int, ego: Pose, cam_world: np.ndarray) -> Drawn | None:
        """Project every part of an actor at once; faces turned to the camera become polygons
        (far parts first). None when any part is behind the camera or nothing shows."""
        pose = self.actor_pose(a, step)
        parts = self.actor_parts(a, step)
        body_to_world = np.stack([pose.fwd, pose.left, pose.up])  # rows: body axes in world
        cam_body = pose.to_body(cam_world[None])[0]
        centres = np.array([p.centre for p in parts])  # (P, 3) body frame, metres
        sizes = np.array([p.size for p in parts])
        corners = centres[:, None, :] + _CORNERS[None] * sizes[:, None, :]  # (P, 8, 3)
        uv, pe = self._to_uv(ego, pose.pos + corners.reshape(-1, 3) @ body_to_world)
        if (pe[:, 0] < 0.5).any() or np.isnan(uv).any():
            return None
        uv_p = uv.reshape(len(parts), 8, 2)
        face_c = centres[:, None, :] + _NORMALS[None] * sizes[:, None, :] / 2  # (P, 6, 3)
        visible = np.einsum("pfk,fk->pf", cam_body - face_c, _NORMALS) > 0
        colours = np.minimum(
            np.array([p.colour for p in parts], float)[:, None, :] * _SHADE[None, :, None], 255
        ).astype(int)
        fixed = (uv_p * SCALE).astype(np.int32)
        polys: list[tuple[np.ndarray, tuple[int, int, int], str]] = []
        for pi in np.argsort(-np.linalg.norm(cam_body - centres, axis=1), kind="stable"):
            for f in np.nonzero(visible[pi])[0]:
                col = colours[pi, f]
                polys.append(
                    (
                        fixed[pi, _FACE_IDX[f]],
                        (int(col[0]), int(col[1]), int(col[2])),
                        parts[pi].kind,
                    )
                )
        if not polys:
            return None
        uv_all = uv
        label = self._obstacle_label(a, step, ego, pose, uv_all)
        if label is None:
            return None
        shadow = self._contact_shadow(a, pose, ego)
        if shadow is not None:
            polys.insert(0, (shadow, (0, 0, 0), "shadow"))
        barrier = self.roadside.barrier_lat
        beyond = barrier is not None and float(a.lat[step]) > barrier
        return Drawn(float(np.linalg.norm(pose.pos - cam_world)), polys, uv_all, label, beyond)

    def _contact_shadow(self, a: Actor, pose: Pose, ego: Pose) -> np.ndarray | None:
        """The dark patch on the road under a body (its footprint, a little larger): the
        strongest cue that a real object stands on the road. Fixed point pixels or None."""
        L, W, _ = a.dims
        k = 1.08 if a.cls in ("car", "truck") else 1.6
        foot = np.array([[-L, -W, 0], [L, -W, 0], [L, W, 0], [-L, W, 0]], float) * [k / 2, k / 2, 0]
        body_to_world = np.stack([pose.fwd, pose.left, pose.up])
        uv, pe = self._to_uv(ego, pose.pos + (foot + np.array([0.0, 0.0, 0.01])) @ body_to_world)
        if (pe[:, 0] < 0.5).any() or np.isnan(uv).any():
            return None
        return (uv * SCALE).astype(np.int32)

    def _obstacle_label(
        self, a: Actor, step: int, ego: Pose, pose: Pose, uv: np.ndarray
    ) -> Obstacle | None:
        x1, y1 = uv.min(0)
        x2, y2 = uv.max(0)
        cx1, cy1 = max(x1, 0.0), max(y1, 0.0)
        cx2, cy2 = min(x2, self.w - 1.0), min(y2, self.h - 1.0)
        if cx2 - cx1 < 2.0 or cy2 - cy1 < 4.0:
            return None
        trunc = 1.0 - (cx2 - cx1) * (cy2 - cy1) / max((x2 - x1) * (y2 - y1), 1e-9)
        L, W, H = a.dims
        body_to_world = np.stack([pose.fwd, pose.left, pose.up])
        box_corners = pose.pos + (_CORNERS * np.array([L, W, H]) + [0, 0, H / 2]) @ body_to_world
        pe_corners = ego.to_body(box_corners)
        pos = ego.to_body(pose.pos[None])[0]
        return Obstacle(
            track_id=a.track_id,
            cls=a.cls,
            box=[round(float(v), 2) for v in (cx1, cy1, cx2, cy2)],
            position_m=[round(float(v), 3) for v in pos],
            dims_m=[round(float(v), 3) for v in a.dims],
            yaw_rad=round(float(math.atan2(pose.fwd @ ego.left, pose.fwd @ ego.fwd)), 4),
            distance_m=round(float(pe_corners[:, 0].min()), 3),
            rel_velocity_mps=[round(float(v), 3) for v in self._rel_velocity(a, step)],
            truncation=round(float(max(trunc, 0.0)), 3),
        )

    def _rel_velocity(self, a: Actor, step: int) -> np.ndarray:
        """Velocity of the actor relative to the ego, in the ego frame at this step (m/s)."""
        t = self.traffic
        i0, i1 = max(step - 1, 0), min(step + 1, t.n - 1)
        ego0, ego1 = self.ego_pose(i0), self.ego_pose(i1)
        p0 = ego0.to_body(self.actor_pose(a, i0).pos[None])[0]
        p1 = ego1.to_body(self.actor_pose(a, i1).pos[None])[0]
        return (p1 - p0)[:2] * SENSOR_HZ / max(i1 - i0, 1)

    def ego_pose(self, step: int) -> Pose:
        if step not in self._ego_poses:  # every actor's label asks for the same few steps
            self._ego_poses[step] = self._ego_pose(step)
        return self._ego_poses[step]

    def _ego_pose(self, step: int) -> Pose:
        t = self.traffic
        j = min(step + 1, t.n - 1)
        k = j - 1
        yaw = math.atan2(t.ego_lat[j] - t.ego_lat[k], max(t.ego_s[j] - t.ego_s[k], 1e-6))
        return self.road.pose(float(t.ego_s[step]), float(t.ego_lat[step]), yaw)

    # -- lanes ------------------------------------------------------------------------------
    def lane_labels(self, ego: Pose, s_ego: float, h_samples: list[int]) -> list[Lane]:
        spec = self.road.spec
        off = self.road.boundary_offsets()
        slot_boundary = {
            "ego_left": spec.ego_lane,
            "ego_right": spec.ego_lane + 1,
            "outer_left": spec.ego_lane - 1,
            "outer_right": spec.ego_lane + 2,
        }
        s = s_ego + _sample_s(0.5, MAX_RANGE_M)
        s = s[s < self.road.length]
        lanes = []
        for slot in LANE_SLOTS:
            b = slot_boundary[slot]
            if not 0 <= b <= spec.lanes:
                continue
            lane = self._lane(
                ego, s, float(off[b]), h_samples, slot, spec.styles[b], spec.colors[b]
            )
            if lane is not None:
                lanes.append(lane)
        return lanes

    def _lane(
        self,
        ego: Pose,
        s: np.ndarray,
        lat: float,
        h_samples: list[int],
        slot: str,
        style: str,
        colour: str,
    ) -> Lane | None:
        uv, pe = self._to_uv(ego, self.road.points(s, lat))
        front = pe[:, 0] > 1.0
        uv, pe = uv[front], pe[front]
        if len(uv) < 2:
            return None
        # keep the part before the road drops out of sight over a crest (v must keep falling)
        rising = np.nonzero(np.diff(uv[:, 1]) >= -1e-3)[0]
        end = int(rising[0]) + 1 if len(rising) else len(uv)
        uv, pe = uv[:end], pe[:end]
        inside = (
            (uv[:, 0] >= 0) & (uv[:, 0] <= self.w - 1) & (uv[:, 1] >= 0) & (uv[:, 1] <= self.h - 1)
        )
        under_hood = uv[:, 1] >= self.hood[np.clip(uv[:, 0], 0, self.w - 1).astype(int)] - 1
        idx = np.nonzero(inside & ~under_hood)[0]
        if len(idx) < 2:
            return None
        run_end = idx[0] + np.argmax(np.diff(np.append(idx, -1)) != 1)  # first contiguous run
        sel = slice(idx[0], run_end + 1)
        uv, pe = uv[sel], pe[sel]
        # thin to >= 0.25 px steps in v so that v still falls strictly once rounded to 0.01 px
        keep = np.r_[True, np.diff(np.round(uv[:, 1], 2)) < -0.25]
        uv, pe = uv[keep], pe[keep]
        if len(uv) < 2:
            return None
        v_asc, u_asc = uv[::-1, 1], uv[::-1, 0]
        xs = [
            round(float(np.interp(hh, v_asc, u_asc)), 2) if v_asc[0] <= hh <= v_asc[-1] else -2.0
            for hh in h_samples
        ]
        if sum(x >= 0 for x in xs) < 3:
            return None
        return Lane(
            slot=slot,
            style=style,
            color=colour,
            points=[[round(float(u), 2), round(float(v), 2)] for u, v in uv],
            x_at_h=xs,
            points_3d=[[round(float(c), 3) for c in p] for p in pe],
        )

    # -- whole frame ------------------------------------------------------------------------
    def render(
        self, frame: int, h_samples: list[int]
    ) -> tuple[np.ndarray, list[Lane], list[Obstacle]]:
        t = self.traffic
        step = frame * t.steps_per_frame
        ego = self.ego_pose(step)
        s_ego = float(t.ego_s[step])
        cam_world = ego.pos + ego.up * self.calib.camera_height_m
        img = self.backdrop.copy()
        light = self.base_light.copy()
        ahead = self.draw_world(img, light, ego, s_ego, MAX_RANGE_M)
        drawn = [
            d
            for a in t.actors
            if -10.0 < a.s[step] - s_ego < MAX_RANGE_M
            and (d := self.draw_actor(a, step, ego, cam_world)) is not None
        ]
        drawn.sort(key=lambda d: -d.depth)
        self._occlusion(drawn)
        self._behind_barrier(drawn, ego, ahead)
        for d in drawn:
            if d.beyond_barrier:
                self._draw_drawn(img, light, d, step)
        asphalt = self.road.spec.asphalt_bgr
        concrete = tuple(int(c) for c in np.clip(np.array(asphalt) * 0.3 + 120, 0, 255))
        self.roadside.draw_barrier(img, self._strip_quads, ahead, ego, concrete)  # type: ignore[arg-type]
        for d in drawn:
            if not d.beyond_barrier:
                self._draw_drawn(img, light, d, step)
        draw_hood(img, self.hood, self.sc.scenery.hood_bgr)
        self._camera(img, light, frame)
        lanes = self.lane_labels(ego, s_ego, h_samples)
        return img, lanes, self._visible_labels(drawn)

    def _draw_drawn(self, img: np.ndarray, light: np.ndarray, d: Drawn, step: int) -> None:
        night = self.sc.conditions.time_of_day == "night"
        shadow = tuple(int(c * 0.28) for c in self.road.spec.asphalt_bgr)
        for poly, col, kind in d.polys:
            cv2.fillPoly(img, [poly], shadow if kind == "shadow" else col, 8, SHIFT)
            if kind.startswith("light") and (
                night or (kind == "light_rear" and self._braking(d, step))
            ):
                if night:  # halo around lamps, drawn into the light map
                    c = poly.mean(0) / SCALE
                    r = int(max(2.0, np.ptp(poly[:, 0]) / SCALE * 0.9))
                    cv2.circle(light, (int(c[0]), int(c[1])), r, 175, -1)
                cv2.fillPoly(light, [poly], 255, 8, SHIFT)

    def _behind_barrier(self, drawn: list[Drawn], ego: Pose, ahead: np.ndarray) -> None:
        """Boxes of objects beyond the median barrier cover only what shows above it (the
        convention of the real test labels); the hidden share counts as occlusion."""
        line = self.roadside.barrier_top_line(ego, ahead, self._to_uv)
        for d in drawn:
            if not d.beyond_barrier or line is None:
                continue
            b = d.label.box
            v_cut = float(np.interp([b[0], b[2]], *line).max())
            if v_cut < b[3]:
                full = max(b[3] - b[1], 1e-6)
                b[3] = round(max(v_cut, b[1]), 2)
                hidden = 1.0 - (b[3] - b[1]) / full
                d.label.occlusion = round(max(d.label.occlusion, hidden), 3)

    def _visible_labels(self, drawn: list[Drawn]) -> list[Obstacle]:
        """Labels of what can be seen: boxes cut at the bonnet, too small or hidden ones out."""
        out = []
        for d in drawn:
            b = d.label.box
            x0, x1 = int(max(b[0], 0)), int(min(b[2], self.w - 1))
            cut = float(self.hood[x0 : x1 + 1].min()) - 1.0 if x1 >= x0 else b[3]
            if cut < b[3]:
                b[3] = round(max(cut, b[1]), 2)
            if d.label.occlusion < 0.95 and b[3] - b[1] >= 4.0:
                out.append(d.label)
        return out

    def _braking(self, d: Drawn, step: int) -> bool:
        a = next(a for a in self.traffic.actors if a.track_id == d.label.track_id)
        i0, i1 = max(step - 5, 0), min(step + 5, self.traffic.n - 1)
        v0, v1 = a.s[i0 + 1] - a.s[i0], a.s[i1] - a.s[i1 - 1]
        return bool(v1 < v0 - 1e-4)

    def _occlusion(self, drawn: list[Drawn]) -> None:
        """Fraction of each actor's silhouette covered by nearer actors (quarter resolution)."""
        q = 4
        ids = np.zeros((self.h // q + 1, self.w // q + 1), np.int32)
        areas = []
        for k, d in enumerate(drawn, 1):
            hull = cv2.convexHull((d.corners_uv / q).astype(np.float32)).astype(np.int32)
            own = np.zeros_like(ids, np.uint8)
            cv2.fillConvexPoly(own, hull, 1)
            areas.append(int(own.sum()))
            ids[own > 0] = k
        for k, d in enumerate(drawn, 1):
            vis = int((ids == k).sum())
            d.label.occlusion = round(1.0 - vis / areas[k - 1], 3) if areas[k - 1] else 0.0

    def _camera(self, img: np.ndarray, light: np.ndarray, frame: int) -> None:
        c, calib = self.sc.conditions, self.calib
        rows = np.arange(self.h, dtype=np.float64)
        g = calib.pixel_to_ground(np.stack([np.full(self.h, calib.cx), rows], 1))[:, 0]
        dist = np.where(np.isnan(g), 1e4, g)
        fog = (1.0 - np.exp(-dist / c.fog_visibility_m)).astype(np.float32)
        if c.weather != "fog":
            fog *= 0.15 if c.time_of_day != "night" else 0.0
        t = frame / self.sc.fps
        gain = c.exposure * (1.0 + c.exposure_wobble * math.sin(1.3 * t + 0.7 * math.sin(3.1 * t)))
        gains = np.array(c.white_balance, np.float32) * np.float32(gain)
        glare_uv = np.array([c.sun_u * self.w, calib.horizon_v - 0.08 * self.h], np.float64)
        glare = 120.0 if c.glare else 0.0
        off = np.array([(frame * 37) % 257, (frame * 91) % 257], np.int64)
        apply_camera(
            img,
            light,
            fog,
            self.fog_bgr,
            gains,
            c.vignette,
            glare_uv,
            glare,
            0.12 * self.w,
            self.noise,
            off,
        )
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
