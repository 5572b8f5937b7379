"""Camera model shared by the simulator, the dataset tools and the real-time loop.

Frames used everywhere in the project (ISO 8855 for the vehicle):

* ego frame: origin on the road surface straight below the camera, x forward, y left, z up,
  metres.
* camera frame: x right, y down, z along the optical axis, metres.
* image: u to the right, v down, pixels, origin at the top-left corner of the top-left pixel
  centre (OpenCV's convention).

Pitch is positive when the camera looks down (the horizon moves up in the image), yaw is
positive to the left, roll is positive clockwise as seen from behind the camera.

Lens distortion: a Calib may carry OpenCV's five coefficients (k1 k2 p1 p2 k3). The pinhole
methods below (project, pixel_to_ground, ...) work in *undistorted* pixels, i.e. the image an
ideal pinhole camera with the same K would see; ``distort_pixels`` maps those to the pixels of
the real, distorted image (closed form). Simulated cameras have no distortion.
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


NO_DISTORTION = (0.0, 0.0, 0.0, 0.0, 0.0)


@dataclass(frozen=True)
class Calib:
    """Pinhole intrinsics, the camera pose relative to the ego frame and, optionally, lens
    distortion: dist = (k1, k2, p1, p2, k3), OpenCV's order and model, on normalised image
    coordinates (so the same coefficients hold at any image scale)."""

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
    dist: tuple[float, float, float, float, float] = NO_DISTORTION

    @property
    def has_distortion(self) -> bool:
        return any(c != 0.0 for c in self.dist)

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
        kw = {k: v for k, v in d.items() if k in names}
        if "dist" in kw:
            kw["dist"] = _dist_coefficients(kw["dist"])
        return cls(**kw)

    @classmethod
    def load(cls, path: str | Path) -> Calib:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def to_dict(self) -> dict:
        """JSON-ready fields; dist only when there is distortion, so that files written
        before the field existed (and every simulated clip's calib.json) keep their bytes."""
        d = asdict(self)
        d["dist"] = list(self.dist)
        if not self.has_distortion:
            del d["dist"]
        return d

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
            self.dist,  # on normalised coordinates: unchanged by a resize
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

    def distort_pixels(self, uv: np.ndarray) -> np.ndarray:
        """Undistorted pixels -> the pixels where the real (distorted) lens images them.

        uv: float[N, 2] pixels of the ideal pinhole image with this K. Returns float64[N, 2]
        pixels of the source image. OpenCV's forward model, closed form: with (x, y) the
        normalised coordinates and r2 = x^2 + y^2, x' = x (1 + k1 r2 + k2 r2^2 + k3 r2^3) +
        2 p1 x y + p2 (r2 + 2 x^2), y' likewise with p1 and p2 swapped. Without distortion
        the input comes back unchanged."""
        uv = np.asarray(uv, dtype=np.float64).reshape(-1, 2)
        if not self.has_distortion:
            return uv.copy()
        k1, k2, p1, p2, k3 = self.dist
        x, y = (uv[:, 0] - self.cx) / self.fx, (uv[:, 1] - self.cy) / self.fy
        r2 = x * x + y * y
        radial = 1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))
        xd = x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x)
        yd = y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y
        return np.stack([xd * self.fx + self.cx, yd * self.fy + self.cy], axis=1)

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


def _dist_coefficients(value: object) -> tuple[float, float, float, float, float]:
    """A calib file's "dist": five numbers k1 k2 p1 p2 k3 (OpenCV's first five)."""
    if not isinstance(value, list | tuple) or len(value) != 5:
        raise ValueError(f"dist must be 5 numbers k1 k2 p1 p2 k3, got {value!r}")
    k1, k2, p1, p2, k3 = (float(v) for v in value)
    if not all(math.isfinite(c) for c in (k1, k2, p1, p2, k3)):
        raise ValueError(f"dist has a non-finite coefficient: {value!r}")
    return k1, k2, p1, p2, k3


def ground_distance(calib: Calib, u: float, v: float) -> float:
    """Forward distance (ego x, metres) of the road point seen at pixel (u, v); NaN above the
    horizon. Used for an obstacle's distance from the bottom edge of its box (flat road)."""
    return float(calib.pixel_to_ground(np.array([[u, v]]))[0, 0])


# ---------------------------------------------------------------------------------------
# What the loop reads off one frame: obstacle ground positions (the ego lane: serving.lanes).
# ---------------------------------------------------------------------------------------


def obstacle_positions(boxes: np.ndarray, calib: Calib) -> np.ndarray:
    """Ground position of each obstacle from its box's bottom-centre pixel (flat road).

    boxes: float[N, 4] x1 y1 x2 y2, pixels of the image `calib` describes. Returns
    float64[N, 2] (x forward, y left) in the ego frame, metres; NaN rows where the box's
    bottom is at or above the horizon.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    uv = np.stack([0.5 * (b[:, 0] + b[:, 2]), b[:, 3]], axis=1)
    return calib.pixel_to_ground(uv)[:, :2]
