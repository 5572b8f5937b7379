"""Camera model shared by the simulator, the dataset tools and the real-time loop.

Frames used everywhere in the project (ISO 8855 for the vehicle):

* ego frame: origin on the road surface straight below the camera, x forward, y left, z up,
  metres.
* camera frame: x right, y down, z along the optical axis, metres.
* image: u to the right, v down, pixels, origin at the top-left corner of the top-left pixel
  centre (OpenCV's convention).

Pitch is positive when the camera looks down (the horizon moves up in the image), yaw is
positive to the left, roll is positive clockwise as seen from behind the camera.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

# Ego (x fwd, y left, z up) -> camera (x right, y down, z fwd) before any rotation.
_EGO_TO_CAM = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])


@dataclass(frozen=True)
class Calib:
    """Pinhole intrinsics and the camera pose relative to the ego frame (no lens distortion)."""

    image_width: int
    image_height: int
    fx: float
    fy: float
    cx: float
    cy: float
    camera_height_m: float
    pitch_rad: float = 0.0
    yaw_rad: float = 0.0
    roll_rad: float = 0.0

    @classmethod
    def default(cls, width: int = 1280, height: int = 720) -> Calib:
        """A ~65 deg horizontal field of view camera, 1.5 m high, looking 2 deg down."""
        f = 1000.0 * width / 1280.0
        return cls(width, height, f, f, width / 2.0, height / 2.0, 1.5, math.radians(2.0))

    @classmethod
    def from_dict(cls, d: dict) -> Calib:
        names = cls.__dataclass_fields__
        missing = [
            n
            for n in ("image_width", "image_height", "fx", "fy", "cx", "cy", "camera_height_m")
            if n not in d
        ]
        if missing:
            raise ValueError(f"calibration lacks {', '.join(missing)}")
        return cls(**{k: v for k, v in d.items() if k in names})

    @classmethod
    def load(cls, path: str | Path) -> Calib:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def to_dict(self) -> dict:
        return asdict(self)

    def scaled(self, width: int, height: int) -> Calib:
        """The same camera seen through an image resized to width x height."""
        sx, sy = width / self.image_width, height / self.image_height
        return Calib(
            width,
            height,
            self.fx * sx,
            self.fy * sy,
            self.cx * sx,
            self.cy * sy,
            self.camera_height_m,
            self.pitch_rad,
            self.yaw_rad,
            self.roll_rad,
        )

    @cached_property
    def K(self) -> np.ndarray:  # the usual name of the intrinsic matrix
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @cached_property
    def R(self) -> np.ndarray:  # rotation ego -> camera
        cp, sp = math.cos(self.pitch_rad), math.sin(self.pitch_rad)
        cyw, syw = math.cos(self.yaw_rad), math.sin(self.yaw_rad)
        cr, sr = math.cos(self.roll_rad), math.sin(self.roll_rad)
        rx = np.array([[1.0, 0.0, 0.0], [0.0, cp, -sp], [0.0, sp, cp]])
        # yaw to the left turns the optical axis towards -x_cam: rotate points the other way
        ry = np.array([[cyw, 0.0, syw], [0.0, 1.0, 0.0], [-syw, 0.0, cyw]])
        rz = np.array([[cr, -sr, 0.0], [sr, cr, 0.0], [0.0, 0.0, 1.0]])
        return rz @ rx @ ry @ _EGO_TO_CAM

    @property
    def position(self) -> np.ndarray:
        """Camera centre in the ego frame, metres."""
        return np.array([0.0, 0.0, self.camera_height_m])

    @property
    def horizon_v(self) -> float:
        """Image row of the horizon of a flat road (no roll)."""
        return self.cy - self.fy * math.tan(self.pitch_rad)

    def ego_to_camera(self, pts: np.ndarray) -> np.ndarray:
        """pts: float[N, 3] ego frame, metres -> float[N, 3] camera frame, metres."""
        return (np.asarray(pts, dtype=np.float64) - self.position) @ self.R.T

    def project(self, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Project ego-frame points to pixels.

        pts: float[N, 3] ego frame, metres. Returns (uv float[N, 2] pixels, depth float[N]
        metres along the optical axis). Points with depth <= 0 get NaN pixels.
        """
        pc = self.ego_to_camera(pts)
        z = pc[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            u = self.fx * pc[:, 0] / z + self.cx
            v = self.fy * pc[:, 1] / z + self.cy
        bad = z <= 1e-6
        u[bad] = np.nan
        v[bad] = np.nan
        return np.stack([u, v], axis=1), z

    def pixel_to_ground(self, uv: np.ndarray) -> np.ndarray:
        """Intersect the rays through pixels with the flat road z = 0.

        uv: float[N, 2] pixels. Returns float[N, 3] ego frame, metres; NaN for pixels at or
        above the horizon.
        """
        uv = np.asarray(uv, dtype=np.float64).reshape(-1, 2)
        rays_c = np.stack(
            [(uv[:, 0] - self.cx) / self.fx, (uv[:, 1] - self.cy) / self.fy, np.ones(len(uv))],
            axis=1,
        )
        rays_e = rays_c @ self.R  # R is orthonormal: R.T maps camera -> ego
        with np.errstate(divide="ignore", invalid="ignore"):
            s = -self.camera_height_m / rays_e[:, 2]
        s[~(rays_e[:, 2] < -1e-9)] = np.nan
        return self.position + s[:, None] * rays_e


def ground_distance(calib: Calib, u: float, v: float) -> float:
    """Forward distance (ego x, metres) of the road point seen at pixel (u, v); NaN above the
    horizon. Used for an obstacle's distance from the bottom edge of its box (flat road)."""
    return float(calib.pixel_to_ground(np.array([[u, v]]))[0, 0])
