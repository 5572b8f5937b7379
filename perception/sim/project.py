"""Projection of the road world into the clip's camera, shared by everything that draws.

Polygons are handed to OpenCV in fixed point (SHIFT fractional bits) so that sub-pixel
geometry survives rasterisation; points behind the camera are dropped before they can fold
a polygon across the image.
"""

from __future__ import annotations

import numpy as np

from perception.sim.road import Pose, Road
from serving.geometry import Calib

SHIFT = 3  # fixed-point bits for sub-pixel polygon vertices
SCALE = 1 << SHIFT
MAX_RANGE_M = 160.0  # nothing farther is drawn or labelled


def sample_s(near: float, far: float) -> np.ndarray:
    """Arc-length offsets ahead of the ego: fine near, coarse far (metres)."""
    a = np.arange(near, min(far, 40.0), 0.5)
    return np.concatenate([a, np.arange(40.0, far, 2.0)]) if far > 40.0 else a


class View:
    """The road seen through one camera: world points -> pixels, road strips -> polygons."""

    def __init__(self, road: Road, calib: Calib):
        self.road, self.calib = road, calib

    def to_uv(self, ego: Pose, world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World points float[..., 3] -> (uv float[N, 2] pixels, ego-frame points [N, 3])."""
        pe = ego.to_body(world.reshape(-1, 3))
        uv, _ = self.calib.project(pe)
        return uv, pe

    def strip_quads(
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
        uv, pe = self.to_uv(ego, pts)
        n = len(s)
        front = (pe[:n, 0] > 0.8) & (pe[n:, 0] > 0.8)
        ok = front[:-1] & front[1:]
        if joined is not None:
            ok &= joined[:-1]
        fp = np.nan_to_num(uv * SCALE, nan=0.0).clip(-(2**28), 2**28).astype(np.int32)
        a, b = fp[:n], fp[n:]
        quads = np.stack([a[:-1], a[1:], b[1:], b[:-1]], axis=1)[ok]
        return list(quads)
