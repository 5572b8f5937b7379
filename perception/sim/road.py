"""Road geometry in a world frame (x east, y north, z up, metres) and the ego's path on it.

The road reference line follows a curvature profile integrated along arc length s (a chain
of clothoid-like pieces), with gentle hills as a sum of sines. Any point of the road surface
is named by (s, l): arc length along the reference line and lateral offset, positive left.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from perception.sim.scenario import RoadSpec

DS = 0.5  # metres between road samples


@dataclass(frozen=True)
class Pose:
    """A body pose in the world frame: position (metres) and unit axes forward, left, up."""

    pos: np.ndarray
    fwd: np.ndarray
    left: np.ndarray
    up: np.ndarray

    def to_body(self, pts: np.ndarray) -> np.ndarray:
        """World points float[N, 3] -> this body's frame (x fwd, y left, z up), metres."""
        d = pts - self.pos
        return np.stack([d @ self.fwd, d @ self.left, d @ self.up], axis=-1)

    def vec_to_body(self, v: np.ndarray) -> np.ndarray:
        return np.array([v @ self.fwd, v @ self.left, v @ self.up])


class Road:
    def __init__(self, spec: RoadSpec, length_m: float):
        self.spec = spec
        n = int(length_m / DS) + 1
        self.s = np.arange(n) * DS
        knots_s = np.arange(len(spec.curvature_knots)) * spec.knot_spacing_m
        self.k = np.interp(self.s, knots_s, spec.curvature_knots)
        self.theta = np.concatenate([[0.0], np.cumsum(self.k[:-1] * DS)])
        self.x = np.concatenate([[0.0], np.cumsum(np.cos(self.theta[:-1]) * DS)])
        self.y = np.concatenate([[0.0], np.cumsum(np.sin(self.theta[:-1]) * DS)])
        w = 2 * math.pi / spec.hill_wavelength_m
        self.z = spec.hill_amplitude_m * (
            np.sin(w * self.s + spec.hill_phase) - math.sin(spec.hill_phase)
        )
        self.grade = spec.hill_amplitude_m * w * np.cos(w * self.s + spec.hill_phase)

    @property
    def length(self) -> float:
        return float(self.s[-1])

    def boundary_offsets(self) -> np.ndarray:
        """Lateral offset (m, left positive) of each lane boundary, left to right, relative to
        the reference line, which runs along the centre of the ego's lane."""
        sp = self.spec
        left_of_ego = sp.ego_lane + 0.5
        return (left_of_ego - np.arange(sp.lanes + 1)) * sp.lane_width_m

    def lane_centre(self, lane: int) -> float:
        return float((self.spec.ego_lane - lane) * self.spec.lane_width_m)

    def points(
        self, s: np.ndarray, lat: np.ndarray | float, h: np.ndarray | float = 0.0
    ) -> np.ndarray:
        """World points float[N, 3] at arc lengths s, lateral offsets lat, heights h above the
        surface (metres)."""
        s = np.clip(np.asarray(s, dtype=np.float64), 0.0, self.length)
        th = np.interp(s, self.s, self.theta)
        x = np.interp(s, self.s, self.x) - np.sin(th) * lat
        y = np.interp(s, self.s, self.y) + np.cos(th) * lat
        z = np.interp(s, self.s, self.z) + h
        return np.stack(np.broadcast_arrays(x, y, z), axis=-1)

    def heading(self, s: float) -> float:
        return float(np.interp(s, self.s, self.theta))

    def curvature(self, s: float) -> float:
        return float(np.interp(s, self.s, self.k))

    def pose(self, s: float, lat: float, yaw_offset: float = 0.0) -> Pose:
        """Pose of a body on the road surface at (s, lat), heading along the road plus
        yaw_offset (rad, left positive), pitched with the road grade."""
        pos = self.points(np.array([s]), lat)[0]
        psi = self.heading(s) + yaw_offset
        gam = math.atan(float(np.interp(s, self.s, self.grade)))
        fwd = np.array(
            [math.cos(psi) * math.cos(gam), math.sin(psi) * math.cos(gam), math.sin(gam)]
        )
        left = np.array([-math.sin(psi), math.cos(psi), 0.0])
        up = np.cross(fwd, left)
        return Pose(pos, fwd, left, up)
