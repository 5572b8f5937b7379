"""What one simulated clip contains: camera rig, road, traffic and conditions.

A scenario is drawn from a seeded generator and is the whole specification of a clip: the
renderer adds nothing random that is not derived from it, so the same seed gives the same
bytes. Distributions randomise what should not matter to the model (camera rig, asphalt,
paint wear, lighting, weather, vehicle colours) and keep what should (lane geometry, the
shape of vehicles and people) so that what is learnt carries over to real footage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from serving.geometry import Calib

TIMES_OF_DAY = ("day", "dusk", "night")
WEATHERS = ("clear", "rain", "fog")
ROAD_SHAPES = ("straight", "curve", "sharp_curve", "s_bend")


@dataclass(frozen=True)
class Conditions:
    time_of_day: str
    weather: str
    fog_visibility_m: float  # distance at which contrast falls to 1/e
    rain_intensity: float  # 0..1: streak density and road wetness
    shadows: bool  # tree and bridge shadows across the road
    glare: bool  # low sun near the horizon
    noise_sigma: float  # sensor noise, grey levels
    blur: int  # motion / defocus blur kernel, pixels (1 = none)
    exposure: float  # mean exposure gain
    exposure_wobble: float  # amplitude of auto-exposure changes over the clip
    white_balance: tuple[float, float, float]  # B, G, R gains
    sun_u: float  # sun direction as an image column fraction (glare)
    vignette: float  # darkening at the image corners, 0..1
    chroma_px: float  # lateral chromatic aberration at the corners, pixels (R out, B in)
    jpeg_quality: int  # encoder quality of the clip's frames


@dataclass(frozen=True)
class RoadSpec:
    kind: str  # "highway": divided, one direction, median barrier | "road": two-way, verges
    shape: str
    curvature_knots: np.ndarray  # curvature (1/m) every knot_spacing_m along the road
    knot_spacing_m: float
    hill_amplitude_m: float
    hill_wavelength_m: float
    hill_phase: float
    lanes: int  # lanes in total, 2..4
    oncoming_lanes: int  # lanes on the left driven the other way
    ego_lane: int  # 0 = leftmost
    lane_width_m: float
    styles: tuple[str, ...]  # one per boundary, left to right: solid|dashed|double|none
    colors: tuple[str, ...]
    wear: float  # probability that a marking segment is worn away
    dash_m: float
    gap_m: float
    asphalt_bgr: tuple[int, int, int]
    shoulder_m: float
    guard_rail: bool
    verge_bgr: tuple[int, int, int]
    median_m: float  # distance from the leftmost line to a concrete median barrier; 0 = none
    railing: bool  # a metal railing on posts along the top of the barrier (bridges)
    surface: str  # asphalt | concrete (light slabs with joints)
    grain: float  # contrast of the surface texture (aggregate, blotches), 0..1
    tyre_tracks: float  # darkening of the wheel paths in each lane, 0..1
    patches: float  # repair patches per 100 m


@dataclass(frozen=True)
class Scenery:
    """What stands beside the road: unlabelled clutter a detector must learn to ignore."""

    trees_per_100m: float
    bushes_per_100m: float
    signs_per_100m: float
    gantry_every_m: float  # overhead sign gantries; 0 = none
    fence: bool
    delineator_every_m: float  # white posts with reflectors along the right verge; 0 = none
    distractors_per_100m: float  # random textured shapes by the road (flying distractors)
    treeline: float  # density of distant trees along the horizon, 0..1
    hills: tuple[float, float, float]  # height above the horizon (fraction of image), phase,
    #                                    brightness; height 0 = none
    hill_bgr: tuple[int, int, int]
    hood_frac: float  # the ego's bonnet covers this fraction of the image rows; 0 = none
    hood_bgr: tuple[int, int, int]
    clouds: int


@dataclass(frozen=True)
class TrafficSpec:
    density: str  # light | dense
    events: tuple[str, ...]  # lead_brake, cut_in, oncoming, ped_crossing, cyclist, parked


@dataclass(frozen=True)
class Scenario:
    clip_id: str
    seed: int
    calib: Calib
    fps: float
    frames: int
    ego_speed_mps: float
    road: RoadSpec
    traffic: TrafficSpec
    conditions: Conditions
    scenery: Scenery
    tags: dict[str, str] = field(default_factory=dict)


def sample_calib(rng: np.random.Generator, width: int, height: int) -> Calib:
    """Camera rigs from a compact car's windscreen to a truck cab."""
    hfov = math.radians(rng.uniform(50.0, 78.0))
    f = (width / 2.0) / math.tan(hfov / 2.0)
    return Calib(
        image_width=width,
        image_height=height,
        fx=f,
        fy=f * rng.uniform(0.995, 1.005),
        cx=width / 2.0 + rng.normal(0.0, width * 0.01),
        cy=height / 2.0 + rng.normal(0.0, height * 0.015),
        camera_height_m=float(
            rng.choice([rng.uniform(1.15, 1.6), rng.uniform(1.6, 2.4)], p=[0.75, 0.25])
        ),
        # negative pitch (looking up) puts the horizon below the image centre, as on many
        # dashcams (the real test frames' vanishing point sits at ~0.6 of the height)
        pitch_rad=math.radians(rng.uniform(-4.0, 5.0)),
        yaw_rad=math.radians(rng.normal(0.0, 0.6)),
        roll_rad=math.radians(rng.normal(0.0, 0.4)),
    )


def _curvature_knots(rng: np.random.Generator, shape: str, n: int) -> np.ndarray:
    """Curvature profile (1/m): radius >= ~2 km straight, 300-1000 m gentle, 120-300 m sharp."""
    sign = rng.choice([-1.0, 1.0])
    if shape == "straight":
        return rng.normal(0.0, 1.5e-4, n)
    if shape == "curve":
        k = sign / rng.uniform(300.0, 1000.0)
        ramp = np.clip(np.arange(n) - rng.integers(0, 3), 0, 2) / 2.0
        return k * ramp + rng.normal(0.0, 1e-4, n)
    if shape == "sharp_curve":
        k = sign / rng.uniform(120.0, 300.0)
        ramp = np.clip(np.arange(n) - rng.integers(0, 3), 0, 2) / 2.0
        return k * ramp
    # s_bend: curvature that changes sign along the clip
    k = 1.0 / rng.uniform(180.0, 600.0)
    period = rng.uniform(3.0, 6.0)
    return sign * k * np.sin(2 * math.pi * np.arange(n) / period + rng.uniform(0, math.pi))


def _markings(
    rng: np.random.Generator, lanes: int, oncoming: int, highway: bool
) -> tuple[list[str], list[str]]:
    """Paint of each boundary, left to right (lanes + 1 boundaries). On a divided highway the
    left edge line is yellow (as in North America) half of the time."""
    styles, colors = [], []
    for b in range(lanes + 1):
        edge = b in (0, lanes)
        if edge:
            style = str(rng.choice(["solid", "none"], p=[0.92, 0.08] if highway else [0.8, 0.2]))
            yellow_p = 0.5 if highway else 0.3 * (oncoming == 0)
            color = "yellow" if b == 0 and rng.random() < yellow_p else "white"
        elif oncoming and b == oncoming:
            style = str(rng.choice(["double", "solid", "dashed"], p=[0.5, 0.3, 0.2]))
            color = "yellow" if rng.random() < 0.75 else "white"
        else:
            style = str(rng.choice(["dashed", "solid"], p=[0.88, 0.12]))
            color = "white" if rng.random() < 0.94 else "yellow"
        styles.append(style)
        colors.append(color)
    return styles, colors


def _surface(rng: np.random.Generator) -> tuple[str, tuple[int, int, int]]:
    """Dark asphalt, worn grey asphalt or light concrete, slightly tinted (BGR)."""
    surface = str(rng.choice(["asphalt", "concrete"], p=[0.7, 0.3]))
    grey = int(rng.integers(135, 190)) if surface == "concrete" else int(rng.integers(40, 130))
    tint = rng.integers(-8, 9, 3)
    warm = int(rng.integers(0, 10))  # sun-bleached asphalt and concrete lean warm
    return surface, (grey + int(tint[0]) - warm, grey + int(tint[1]), grey + int(tint[2]) + warm)


def sample_road(rng: np.random.Generator, length_m: float) -> RoadSpec:
    kind = str(rng.choice(["highway", "road"], p=[0.5, 0.5]))
    highway = kind == "highway"
    shape = str(
        rng.choice(ROAD_SHAPES, p=[0.35, 0.35, 0.15, 0.15] if highway else [0.3, 0.3, 0.2, 0.2])
    )
    knot = 40.0
    n = int(length_m / knot) + 3
    if highway:  # one carriageway of a divided road: every lane runs our way
        lanes = int(rng.choice([2, 3, 4, 5], p=[0.2, 0.35, 0.3, 0.15]))
        oncoming = 0
    else:
        lanes = int(rng.choice([2, 3, 4], p=[0.4, 0.35, 0.25]))
        oncoming = int(rng.random() < 0.6) * (1 if lanes < 4 else 2)
    ego_lane = int(rng.integers(oncoming, lanes))
    styles, colors = _markings(rng, lanes, oncoming, highway)
    surface, asphalt = _surface(rng)
    verge = rng.choice(
        [[60, 110, 70], [70, 120, 120], [90, 100, 105], [50, 90, 80], [95, 150, 170]]
    )
    return RoadSpec(
        kind=kind,
        shape=shape,
        curvature_knots=_curvature_knots(rng, shape, n),
        knot_spacing_m=knot,
        hill_amplitude_m=float(rng.choice([0.0, rng.uniform(0.5, 4.0)], p=[0.4, 0.6])),
        hill_wavelength_m=float(rng.uniform(150.0, 400.0)),
        hill_phase=float(rng.uniform(0, 6.3)),
        lanes=lanes,
        oncoming_lanes=oncoming,
        ego_lane=ego_lane,
        lane_width_m=float(rng.uniform(3.0, 3.9)),
        styles=tuple(styles),
        colors=tuple(colors),
        wear=float(rng.choice([0.0, rng.uniform(0.05, 0.45)], p=[0.5, 0.5])),
        dash_m=float(rng.choice([3.0, 4.5, 6.0])),
        gap_m=float(rng.choice([6.0, 9.0, 12.0])),
        asphalt_bgr=asphalt,
        shoulder_m=float(rng.uniform(0.3, 1.2) if highway else rng.uniform(0.3, 2.5)),
        guard_rail=bool(rng.random() < (0.6 if highway else 0.3)),
        verge_bgr=(int(verge[0]), int(verge[1]), int(verge[2])),
        median_m=float(rng.uniform(0.4, 1.5)) if highway and rng.random() < 0.8 else 0.0,
        railing=bool(rng.random() < 0.35),
        surface=surface,
        grain=float(rng.uniform(0.1, 1.0)),
        tyre_tracks=float(rng.choice([0.0, rng.uniform(0.1, 0.6)], p=[0.3, 0.7])),
        patches=float(rng.choice([0.0, rng.uniform(1.0, 8.0)], p=[0.4, 0.6])),
    )


def sample_conditions(rng: np.random.Generator) -> Conditions:
    tod = str(rng.choice(TIMES_OF_DAY, p=[0.55, 0.2, 0.25]))
    weather = str(rng.choice(WEATHERS, p=[0.6, 0.2, 0.2]))
    wb = rng.normal(1.0, 0.06, 3)
    if tod == "dusk":
        wb = wb * np.array([0.85, 0.95, 1.12])
    return Conditions(
        time_of_day=tod,
        weather=weather,
        fog_visibility_m=float(rng.uniform(35.0, 90.0)) if weather == "fog" else 1e9,
        rain_intensity=float(rng.uniform(0.3, 1.0)) if weather == "rain" else 0.0,
        shadows=bool(tod == "day" and rng.random() < 0.5),
        glare=bool(tod in ("day", "dusk") and weather == "clear" and rng.random() < 0.3),
        noise_sigma=float(rng.uniform(1.0, 4.0) * (2.0 if tod == "night" else 1.0)),
        blur=int(rng.choice([1, 1, 3, 5])),
        exposure=float(rng.uniform(0.8, 1.25)),
        exposure_wobble=float(rng.uniform(0.0, 0.15)),
        white_balance=(float(wb[0]), float(wb[1]), float(wb[2])),
        sun_u=float(rng.uniform(0.1, 0.9)),
        vignette=float(rng.uniform(0.0, 0.45)),
        chroma_px=float(rng.choice([0.0, rng.uniform(0.5, 2.5)], p=[0.5, 0.5])),
        jpeg_quality=int(rng.integers(60, 96)),
    )


def sample_scenery(rng: np.random.Generator, road: RoadSpec) -> Scenery:
    """Roadside clutter: trees and bushes with leaf texture, signs on posts (some with
    animals or people drawn on them), gantries, fences, hills; the ego's bonnet."""
    highway = road.kind == "highway"
    hills = (float(rng.uniform(0.02, 0.12)), float(rng.uniform(0, 6.3)), float(rng.uniform(0.6, 1)))
    hill = rng.choice([[70, 120, 150], [60, 100, 90], [110, 110, 100], [90, 140, 170]])
    return Scenery(
        trees_per_100m=float(rng.uniform(0.5, 8.0)),
        bushes_per_100m=float(rng.uniform(0.0, 10.0)),
        signs_per_100m=float(rng.uniform(0.3, 3.0)),
        gantry_every_m=float(rng.uniform(150.0, 400.0)) if highway and rng.random() < 0.3 else 0.0,
        fence=bool(rng.random() < 0.4),
        delineator_every_m=float(rng.uniform(15.0, 50.0)) if rng.random() < 0.5 else 0.0,
        distractors_per_100m=float(rng.uniform(0.0, 8.0)),
        treeline=float(rng.uniform(0.2, 1.0)) if rng.random() < 0.6 else 0.0,
        hills=hills if rng.random() < 0.7 else (0.0, 0.0, 0.0),
        hill_bgr=(int(hill[0]), int(hill[1]), int(hill[2])),
        hood_frac=float(rng.uniform(0.03, 0.09)) if rng.random() < 0.4 else 0.0,
        hood_bgr=tuple(int(c) for c in rng.integers(20, 200, 3)),  # type: ignore[arg-type]
        clouds=int(rng.integers(1, 12)) if rng.random() < 0.5 else 0,
    )


def sample_traffic(rng: np.random.Generator, road: RoadSpec) -> TrafficSpec:
    density = str(rng.choice(["light", "dense"], p=[0.5, 0.5]))
    # people walk beside ordinary roads, rarely on a highway's shoulder
    people = 1.0 if road.kind == "road" else 0.1
    events = [
        e
        for e, p in (
            ("lead_brake", 0.35),
            ("cut_in", 0.3),
            ("ped_crossing", 0.5 * people),
            ("cyclist", 0.5 * people),
            ("walkers", 0.8 * people),
            ("parked", 0.3 * people),
        )
        if rng.random() < p
    ]
    if road.oncoming_lanes or road.median_m > 0:
        events.append("oncoming")  # on the other carriageway beyond a median barrier
    return TrafficSpec(density=density, events=tuple(events))


def sample_scenario(
    clip_id: str, seed: int, width: int, height: int, fps: float, frames: int
) -> Scenario:
    rng = np.random.default_rng(seed)
    calib = sample_calib(rng, width, height)
    speed = float(rng.uniform(8.0, 30.0))
    road = sample_road(rng, speed * frames / fps + 400.0)
    traffic = sample_traffic(rng, road)
    cond = sample_conditions(rng)
    scenery = sample_scenery(rng, road)
    tags = {
        "time_of_day": cond.time_of_day,
        "weather": cond.weather,
        "road": road.shape,
        "traffic": traffic.density,
        "kind": road.kind,
    }
    return Scenario(clip_id, seed, calib, fps, frames, speed, road, traffic, cond, scenery, tags)
