"""Rasterise one frame of a scenario with OpenCV and compute its exact labels.

Everything is drawn from 3D: road strips, paint, seams, shadows, roadside objects and actor
parts are projected through the clip's calibration, so labels and pixels come from the same
numbers. Painter's order (far to near) resolves visibility; occlusion between actors is
measured on a quarter-resolution id buffer. The pieces live in their own modules: the road
surface (surface.py), roadside clutter (roadside.py), sky, hills and bonnet (scenery.py),
the sensor (effects.py), labels (labels.py); this one lays out a clip and draws its actors.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from perception.dataset.schema import Lane, Obstacle
from perception.sim.actors import SENSOR_HZ, Actor, Part, Traffic, person_parts
from perception.sim.effects import SensorModel
from perception.sim.labels import (
    Drawn,
    cut_behind_barrier,
    lane_labels,
    occlusion,
    visible_labels,
)
from perception.sim.project import MAX_RANGE_M, SCALE, SHIFT, View, sample_s
from perception.sim.road import Pose, Road
from perception.sim.roadside import Roadside
from perception.sim.scenario import Scenario
from perception.sim.scenery import backdrop, draw_hood, hood_top
from perception.sim.surface import RoadSurface

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


class Renderer:
    def __init__(self, sc: Scenario, road: Road, traffic: Traffic, rng: np.random.Generator):
        self.sc, self.road, self.traffic, self.rng = sc, road, traffic, rng
        self._ego_poses: dict[int, Pose] = {}
        self.calib = sc.calib
        self.w, self.h = sc.calib.image_width, sc.calib.image_height
        self.view = View(road, sc.calib)
        # the order of the random draws below is part of the data's bytes: keep it
        self.sensor = SensorModel(sc, rng)
        self.surface = RoadSurface(sc, self.view, rng)
        self.roadside = Roadside(sc, road, rng)
        self.surface.add_shadows(rng)
        self.backdrop = backdrop(sc, self.calib, rng)
        self.surface.add_texture(rng)
        self.hood = hood_top(self.calib, sc.scenery.hood_frac)
        under = np.arange(self.h)[:, None] >= self.hood[None, :]
        light = self.sensor.base_light
        light[under] = light[0, 0]  # ambient: no headlight on the bonnet
        self.sensor.add_rain(rng)
        self._to_uv = self.view.to_uv

    def draw_world(
        self,
        img: np.ndarray,
        light: np.ndarray,
        depth: np.ndarray,
        ego: Pose,
        s_ego: float,
        horizon_cut: float,
    ) -> np.ndarray:
        """Ground, paint, texture, shadows and roadside clutter (its distances written into
        depth for the fog); returns the arc lengths it sampled (the barrier and actors are
        drawn later, in depth order)."""
        s_far = min(s_ego + MAX_RANGE_M, self.road.length)
        ahead = s_ego + sample_s(-2.0, horizon_cut)
        ahead = ahead[ahead < s_far]
        t = self.traffic
        step = min(int(np.searchsorted(t.ego_s, s_ego)), t.n - 1)
        barrier = self.roadside.barrier_lat
        self.surface.draw(img, light, ego, s_ego, float(t.ego_lat[step]), ahead, barrier)
        project = self._to_uv
        roadside = self.roadside
        roadside.draw_items(img, depth, ego, s_ego, s_ego + horizon_cut, project, self.calib.fx)
        roadside.draw_fence(img, self.view.strip_quads, ahead, ego, project)
        roadside.draw_gantries(img, depth, ego, s_ego, project)
        return ahead

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
        light = self.sensor.base_light.copy()
        depth = self.sensor.depth_map()
        ahead = self.draw_world(img, light, depth, ego, s_ego, MAX_RANGE_M)
        drawn = [
            d
            for a in t.actors
            if -10.0 < a.s[step] - s_ego < MAX_RANGE_M
            and (d := self.draw_actor(a, step, ego, cam_world)) is not None
        ]
        drawn.sort(key=lambda d: -d.depth)
        occlusion(drawn, self.w, self.h)
        cut_behind_barrier(drawn, self.roadside.barrier_top_line(ego, ahead, self._to_uv))
        for d in drawn:
            if d.beyond_barrier:
                self._draw_drawn(img, light, depth, d, step)
        asphalt = self.road.spec.asphalt_bgr
        concrete = tuple(int(c) for c in np.clip(np.array(asphalt) * 0.3 + 120, 0, 255))
        self.roadside.draw_barrier(img, self.view.strip_quads, ahead, ego, concrete)  # type: ignore[arg-type]
        for d in drawn:
            if not d.beyond_barrier:
                self._draw_drawn(img, light, depth, d, step)
        draw_hood(img, self.hood, self.sc.scenery.hood_bgr)
        self.sensor.apply(img, light, depth, frame)
        lanes = lane_labels(self.view, self.hood, ego, s_ego, h_samples)
        return img, lanes, visible_labels(drawn, self.hood)

    def _draw_drawn(
        self, img: np.ndarray, light: np.ndarray, depth: np.ndarray, d: Drawn, step: int
    ) -> None:
        night = self.sc.conditions.time_of_day == "night"
        shadow = tuple(int(c * 0.28) for c in self.road.spec.asphalt_bgr)
        for poly, col, kind in d.polys:
            cv2.fillPoly(img, [poly], shadow if kind == "shadow" else col, 8, SHIFT)
            if kind != "shadow":  # a shadow lies on the road: the road's distance stays
                cv2.fillPoly(depth, [poly], d.depth, 8, SHIFT)
            if kind.startswith("light") and (
                night or (kind == "light_rear" and self._braking(d, step))
            ):
                if night:  # halo around lamps, drawn into the light map
                    c = poly.mean(0) / SCALE
                    r = int(max(2.0, np.ptp(poly[:, 0]) / SCALE * 0.9))
                    cv2.circle(light, (int(c[0]), int(c[1])), r, 175, -1)
                cv2.fillPoly(light, [poly], 255, 8, SHIFT)

    def _braking(self, d: Drawn, step: int) -> bool:
        a = next(a for a in self.traffic.actors if a.track_id == d.label.track_id)
        i0, i1 = max(step - 5, 0), min(step + 5, self.traffic.n - 1)
        v0, v1 = a.s[i0 + 1] - a.s[i0], a.s[i1] - a.s[i1 - 1]
        return bool(v1 < v0 - 1e-4)
