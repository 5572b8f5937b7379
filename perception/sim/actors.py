"""Traffic: who is on the road, how they move, and their 3D shape.

Motion is simulated at the sensor rate (100 Hz). Each actor follows the road at (s, lat)
with a speed profile and optional lateral manoeuvre; the ego follows its lane and keeps its
distance to whatever is ahead in its lane with the Intelligent Driver Model, so braking
leads, cut-ins and crossing pedestrians produce real decelerations in the sensor log.

Shapes are unions of boxes ("parts") in the actor's body frame (x forward, y left, z up,
origin at the centre of the footprint on the road), so that a 2D box computed from the
projected part corners is tight, and the 3D truth stays exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from perception.sim.road import Road
from perception.sim.scenario import Scenario

SENSOR_HZ = 100.0

# class -> (length, width, height) ranges in metres
DIMS = {
    "car": ((3.8, 5.0), (1.7, 1.95), (1.4, 1.75)),
    "truck": ((6.0, 12.0), (2.3, 2.55), (2.6, 3.8)),
    "pedestrian": ((0.35, 0.5), (0.45, 0.6), (1.5, 1.95)),
    "cyclist": ((1.6, 1.85), (0.55, 0.7), (1.6, 1.85)),
}
BODY_COLOURS = np.array(
    [
        [235, 235, 235],
        [30, 30, 30],
        [128, 128, 128],
        [190, 190, 195],
        [40, 40, 170],
        [150, 80, 30],
        [40, 110, 40],
        [30, 150, 210],
        [90, 40, 40],
        [200, 200, 60],
        [60, 60, 100],
    ],
    dtype=np.int32,
)


# car shape -> (cabin length, cabin centre offset), fractions of the body length
CAR_SHAPES = {
    "sedan": (0.5, -0.05),
    "hatch": (0.62, -0.12),
    "suv": (0.68, -0.1),
    "van": (0.86, -0.04),
    "pickup": (0.36, 0.12),
}


@dataclass
class Part:
    """A box in the body frame: centre (x, y, z of its middle), size (l, w, h), BGR colour."""

    centre: tuple[float, float, float]
    size: tuple[float, float, float]
    colour: tuple[int, int, int]
    kind: str = "body"  # body | glass | light_rear | light_front | skin | wheel


@dataclass
class Actor:
    track_id: int
    cls: str
    dims: tuple[float, float, float]
    colour: tuple[int, int, int]
    s: np.ndarray  # arc length per step
    lat: np.ndarray  # lateral offset per step
    heading: float = 0.0  # relative to the road: 0 same way, pi oncoming, ±pi/2 across
    accent: tuple[int, int, int] = (60, 60, 60)
    parts: list[Part] = field(default_factory=list)

    def yaw_offset(self, i: int) -> float:
        """Heading relative to the road tangent at step i, including lateral motion."""
        j = min(i + 1, len(self.s) - 1)
        k = max(j - 1, 0)
        ds, dl = self.s[j] - self.s[k], self.lat[j] - self.lat[k]
        if self.heading == 0.0 and abs(ds) > 1e-3:
            return math.atan2(dl, ds)
        return self.heading


def _dims(rng: np.random.Generator, cls: str) -> tuple[float, float, float]:
    (l0, l1), (w0, w1), (h0, h1) = DIMS[cls]
    return float(rng.uniform(l0, l1)), float(rng.uniform(w0, w1)), float(rng.uniform(h0, h1))


def vehicle_parts(
    cls: str,
    dims: tuple[float, float, float],
    colour: tuple[int, int, int],
    rng: np.random.Generator,
) -> list[Part]:
    """Body on wheels with a cabin for cars (sedan, hatchback, SUV, van, pickup shapes), cargo
    box and cab for trucks; glass, lights, number plate and tyres that show from behind below
    the body, where a real car's silhouette has its dark gap."""
    L, W, H = dims
    dark = (20, 20, 22)
    glass = (int(rng.integers(30, 75)),) * 3
    clear = float(rng.uniform(0.15, 0.3))  # ground clearance
    if cls == "car":
        style = str(rng.choice(list(CAR_SHAPES), p=[0.4, 0.2, 0.25, 0.08, 0.07]))
        hb = (H - clear) * float(rng.uniform(0.42, 0.55)) + clear  # top of the lower body
        cab_l, cab_x = L * CAR_SHAPES[style][0], L * CAR_SHAPES[style][1]
        taper = float(rng.uniform(0.78, 0.9))
        parts = [
            Part((0.0, 0.0, (clear + hb) / 2), (L, W, hb - clear), colour),
            Part((cab_x, 0.0, hb + (H - hb) / 2), (cab_l, W * taper, H - hb), colour),
            # windows: slightly larger, shorter glass box around the cabin
            Part(
                (cab_x, 0.0, hb + (H - hb) * 0.48),
                (cab_l + 0.02, W * taper + 0.02, (H - hb) * 0.68),
                glass,
                "glass",
            ),
            # bumper and plate at the back
            Part((-L / 2 - 0.03, 0.0, clear + 0.12), (0.06, W * 0.96, 0.18), _shade(colour, 0.6)),
            Part((-L / 2 - 0.05, 0.0, clear + 0.3), (0.02, 0.52, 0.13), (200, 205, 210)),
        ]
    else:
        cab_l = min(2.2, L * 0.3)
        box_l = L - cab_l - 0.2
        parts = [
            Part((-L / 2 + box_l / 2, 0.0, H / 2 + 0.5), (box_l, W, H - 1.0), colour),
            Part((L / 2 - cab_l / 2, 0.0, 1.5), (cab_l, W * 0.97, 2.1), (200, 200, 205)),
            Part(
                (L / 2 - cab_l / 2, 0.0, 2.0), (cab_l + 0.02, W * 0.97 + 0.02, 0.7), glass, "glass"
            ),
            Part((0.0, 0.0, 0.75), (L * 0.95, W * 0.9, 0.5), dark),
            Part((-L / 2 - 0.03, 0.0, 0.7), (0.06, W * 0.95, 0.15), (40, 40, 45)),
        ]
        clear = 0.45
    lw, lh = 0.2 * W, 0.1 * H
    zl = H * 0.45 if cls == "car" else 1.1
    for side in (-1, 1):
        y = side * (W / 2 - lw / 2 - 0.05)
        parts.append(Part((-L / 2 - 0.01, y, zl), (0.03, lw, lh), (30, 30, 200), "light_rear"))
        parts.append(Part((L / 2 + 0.01, y, zl), (0.03, lw, lh), (210, 230, 235), "light_front"))
        wheel_y = side * (W / 2 - 0.17)
        for x in (-L / 2 + 0.8, L / 2 - 0.8):
            parts.append(Part((x, wheel_y, 0.33), (0.66, 0.26, 0.66), dark, "wheel"))
    return parts


def _shade(c: tuple[int, int, int], k: float) -> tuple[int, int, int]:
    return (int(c[0] * k), int(c[1] * k), int(c[2] * k))


def person_parts(
    dims: tuple[float, float, float],
    colour: tuple[int, int, int],
    accent: tuple[int, int, int],
    phase: float,
    cyclist: bool,
) -> list[Part]:
    """A boxy walker or rider; phase (rad) swings the legs."""
    L, W, H = dims
    skin = (120, 150, 190)
    if cyclist:
        parts = [
            Part((0.0, 0.0, 0.35), (L, 0.06, 0.7), (25, 25, 25), "wheel"),
            Part((0.1, 0.0, H * 0.62), (0.35, W * 0.8, H * 0.3), colour),
            Part((0.1, 0.0, H * 0.35), (0.2, W * 0.5, H * 0.3), accent),
        ]
    else:
        swing = 0.18 * math.sin(phase)
        parts = [
            Part((swing, 0.09, H * 0.24), (0.14, 0.14, H * 0.48), accent),
            Part((-swing, -0.09, H * 0.24), (0.14, 0.14, H * 0.48), accent),
            Part((0.0, 0.0, H * 0.63), (0.26, W * 0.75, H * 0.32), colour),
            Part((-swing * 0.5, W * 0.43, H * 0.6), (0.1, 0.1, H * 0.3), colour),
            Part((swing * 0.5, -W * 0.43, H * 0.6), (0.1, 0.1, H * 0.3), colour),
        ]
    parts.append(Part((0.05 if cyclist else 0.0, 0.0, H - 0.12), (0.2, 0.2, 0.24), skin, "skin"))
    return parts


class Traffic:
    """Spawns actors for a scenario and simulates everyone's motion at SENSOR_HZ."""

    def __init__(self, sc: Scenario, road: Road, rng: np.random.Generator):
        self.sc, self.road, self.rng = sc, road, rng
        self.steps_per_frame = round(SENSOR_HZ / sc.fps)
        self.n = sc.frames * self.steps_per_frame + 2
        self.t = np.arange(self.n) / SENSOR_HZ
        self.s0 = 25.0
        self.actors: list[Actor] = []
        self._next_id = 1
        self._spawn()
        self.ego_s, self.ego_v, self.ego_a, self.ego_lat = self._simulate_ego()

    # -- spawning ---------------------------------------------------------------------------
    def _add(self, cls: str, s: np.ndarray, lat: np.ndarray, heading: float = 0.0) -> Actor:
        rng = self.rng
        colour = tuple(int(c) for c in BODY_COLOURS[rng.integers(len(BODY_COLOURS))])
        accent = tuple(int(c) for c in BODY_COLOURS[rng.integers(len(BODY_COLOURS))])
        a = Actor(self._next_id, cls, _dims(rng, cls), colour, s, lat, heading, accent)  # type: ignore[arg-type]
        if cls in ("car", "truck"):
            a.parts = vehicle_parts(cls, a.dims, a.colour, rng)
        self._next_id += 1
        self.actors.append(a)
        return a

    def _vehicle_cls(self) -> str:
        return "truck" if self.rng.random() < 0.25 else "car"

    def _cruise(self, s_start: float, v: float) -> np.ndarray:
        wob = 0.5 * np.sin(self.t * self.rng.uniform(0.2, 0.6) + self.rng.uniform(0, 6.3))
        return s_start + np.cumsum(np.full(self.n, v) + wob) / SENSOR_HZ

    def _spawn(self) -> None:
        sc, road, rng = self.sc, self.road, self.rng
        spec, v_ego = road.spec, sc.ego_speed_mps
        events = set(sc.traffic.events)
        per_lane = 2 if sc.traffic.density == "light" else 4
        for lane in range(spec.oncoming_lanes, spec.lanes):
            v_lane = v_ego + rng.uniform(-3.0, 3.0) if lane != spec.ego_lane else v_ego
            # near and mid-range traffic first: most real boxes are 10-60 m away
            start = rng.uniform(12.0, 35.0) if lane == spec.ego_lane else rng.uniform(-12.0, 12.0)
            gaps = np.cumsum(rng.uniform(10.0, 40.0, per_lane)) + start
            for gap in gaps:
                lat = road.lane_centre(lane) + rng.normal(0.0, 0.15)
                self._add(
                    self._vehicle_cls(), self._cruise(self.s0 + gap, v_lane), np.full(self.n, lat)
                )
        lead = self._lead()
        if "lead_brake" in events and lead is not None:
            tb, dec, dur = rng.uniform(0.5, 2.5), rng.uniform(3.0, 6.0), rng.uniform(1.0, 2.5)
            v = np.full(self.n, v_ego)
            on = (self.t > tb) & (self.t < tb + dur)
            v = np.maximum(v - np.cumsum(on * dec) / SENSOR_HZ, 0.0)
            lead.s = lead.s[0] + np.cumsum(v) / SENSOR_HZ
        if "cut_in" in events and spec.lanes - spec.oncoming_lanes > 1:
            side = 1 if spec.ego_lane + 1 < spec.lanes else -1
            from_lat = road.lane_centre(spec.ego_lane + side)
            tc = rng.uniform(0.5, 2.0)
            frac = np.clip((self.t - tc) / rng.uniform(2.0, 3.5), 0.0, 1.0)
            frac = 0.5 - 0.5 * np.cos(np.pi * frac)
            self._add(
                self._vehicle_cls(),
                self._cruise(self.s0 + rng.uniform(12.0, 22.0), v_ego - rng.uniform(1, 4)),
                from_lat * (1.0 - frac),
            )
        if "oncoming" in events:
            self._spawn_oncoming(per_lane)
        self._spawn_vulnerable(events)

    def _spawn_oncoming(self, per_lane: int) -> None:
        """Traffic the other way: in the oncoming lanes of a two-way road, or on the other
        carriageway beyond a median barrier (seen over it)."""
        rng, road, spec = self.rng, self.road, self.road.spec
        if spec.oncoming_lanes:
            lanes = [road.lane_centre(k) for k in range(spec.oncoming_lanes)]
        else:
            edge = self._edge_lat(1) + spec.median_m + 0.6  # beyond the barrier
            lanes = [edge + spec.lane_width_m * (k + 0.5) for k in range(3)]
        for _ in range(per_lane + 1):
            lat = lanes[int(rng.integers(0, len(lanes)))]
            s = (
                self.s0
                + rng.uniform(20.0, 220.0)
                - np.cumsum(np.full(self.n, rng.uniform(10.0, 30.0))) / SENSOR_HZ
            )
            self._add(self._vehicle_cls(), s, np.full(self.n, lat), math.pi)

    def _edge_lat(self, side: int) -> float:
        off = self.road.boundary_offsets()
        return float(off[0] if side > 0 else off[-1])

    def _spawn_vulnerable(self, events: set[str]) -> None:
        rng = self.rng
        if "ped_crossing" in events:
            for _ in range(int(rng.integers(1, 4))):
                side = int(rng.choice([-1, 1]))
                lat0 = self._edge_lat(side) + side * rng.uniform(0.5, 2.0)
                speed = rng.uniform(1.0, 1.7) * -side
                t0 = rng.uniform(0.0, 2.0)
                lat = lat0 + speed * np.maximum(self.t - t0, 0.0)
                s = np.full(self.n, self.s0 + rng.uniform(35.0, 70.0))
                self._add("pedestrian", s, lat, -side * math.pi / 2)
        for _ in range(int(rng.integers(1, 7)) * ("walkers" in events)):  # along the verge
            side = int(rng.choice([-1, 1]))
            lat_p = self._edge_lat(side) + side * rng.uniform(0.8, 3.0)
            direction = int(rng.choice([0, 1]))
            v = rng.uniform(0.8, 1.6) * (1 if direction == 0 else -1)
            s = self.s0 + rng.uniform(15.0, 90.0) + np.cumsum(np.full(self.n, v)) / SENSOR_HZ
            self._add("pedestrian", s, np.full(self.n, lat_p), 0.0 if v > 0 else math.pi)
        if "cyclist" in events:
            for _ in range(int(rng.integers(1, 3))):
                lat_c = self._edge_lat(-1) + rng.uniform(0.3, 1.2)
                self._add(
                    "cyclist",
                    self._cruise(self.s0 + rng.uniform(15.0, 80.0), rng.uniform(3.5, 7.0)),
                    np.full(self.n, lat_c),
                )
        if "parked" in events:
            for k in range(int(rng.integers(1, 4))):
                lat_k = self._edge_lat(-1) - rng.uniform(1.0, 1.6)
                s = np.full(self.n, self.s0 + 20.0 + 12.0 * k + rng.uniform(0, 40.0))
                self._add("car", s, np.full(self.n, lat_k))
        for a in self.actors:
            if a.cls in ("pedestrian", "cyclist"):
                a.colour = tuple(int(c) for c in BODY_COLOURS[rng.integers(len(BODY_COLOURS))])  # type: ignore[assignment]

    def _lead(self) -> Actor | None:
        lat = self.road.lane_centre(self.road.spec.ego_lane)
        ahead = [
            a
            for a in self.actors
            if abs(a.lat[0] - lat) < 1.0 and a.s[0] > self.s0 and a.heading == 0.0
        ]
        return min(ahead, key=lambda a: a.s[0]) if ahead else None

    # -- ego --------------------------------------------------------------------------------
    def _simulate_ego(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """IDM on whatever is ahead in the ego lane; lateral wander within the lane."""
        v0, dt = self.sc.ego_speed_mps, 1.0 / SENSOR_HZ
        a_max, b, s_min, t_gap = 1.5, 3.0, 4.0, 1.2
        s, v = np.empty(self.n), np.empty(self.n)
        acc = np.empty(self.n)
        s[0], v[0] = self.s0, v0
        half = self.road.spec.lane_width_m / 2 + 0.3
        for i in range(self.n):
            gap, dv = 1e9, 0.0
            for a in self.actors:
                if abs(a.lat[i]) < half + (0.0 if a.cls in ("car", "truck") else 0.5):
                    g = a.s[i] - s[i] - a.dims[0] / 2 - 2.5
                    if 0.0 < g < gap:
                        nxt = min(i + 1, self.n - 1)
                        gap, dv = g, v[i] - (a.s[nxt] - a.s[i]) / dt * math.cos(a.heading)
            s_star = s_min + v[i] * t_gap + v[i] * dv / (2 * math.sqrt(a_max * b))
            acc[i] = a_max * (1 - (v[i] / v0) ** 4 - (max(s_star, 0.0) / gap) ** 2)
            acc[i] = max(acc[i], -8.0)
            if i + 1 < self.n:
                v[i + 1] = max(v[i] + acc[i] * dt, 0.0)
                s[i + 1] = s[i] + v[i + 1] * dt
        amp, freq = self.rng.uniform(0.05, 0.35), self.rng.uniform(0.1, 0.4)
        lat = amp * np.sin(2 * math.pi * freq * self.t + self.rng.uniform(0, 6.3))
        return s, v, acc, lat
