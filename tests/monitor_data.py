"""Small simulated datasets for the monitor's tests, picked by scenario tags.

A scenario's tags (time of day, weather, ...) come from its seed before anything is drawn
(perception.sim.scenario.sample_scenario), so the seeds of day-only, night or fog clips are
found for free and only those clips are rendered (perception.sim.generate.generate_clip, two
processes), into a dataset with a manifest like `perception generate` writes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np

from perception.dataset.schema import write_manifest
from perception.params import DataParams
from perception.sim.generate import generate_clip
from perception.sim.scenario import sample_scenario
from serving.geometry import Calib

SIZE = (640, 360)  # the tiny profile's frame size (profiles/tiny.yaml)
FPS = 20.0

Want = Callable[[Mapping[str, str]], bool]


def seeds_where(want: Want, n: int, start: int, frames: int) -> list[int]:
    """The first n seeds from `start` whose scenario of `frames` frames has tags that satisfy
    want (the frame count is part of the draw: it sets the road's length)."""
    out: list[int] = []
    seed = start
    while len(out) < n:
        if want(sample_scenario("pick", seed, *SIZE, FPS, frames).tags):
            out.append(seed)
        seed += 1
    return out


def _one(args: tuple[Path, str, int, int]) -> dict:
    root, clip_id, seed, frames = args
    p = DataParams(seed=seed, clips=1, frames=frames, width=SIZE[0], height=SIZE[1], fps=FPS)
    return generate_clip(root, clip_id, seed, p)


def generate(root: Path, groups: Mapping[str, tuple[list[int], int]]) -> dict[str, list[str]]:
    """Render groups {name: (seeds, frames per clip)} into one dataset at root; returns the
    clip ids of each group (ids "<name>-<seed>")."""
    jobs = [(root, f"{g}-{s}", s, n) for g, (seeds, n) in groups.items() for s in seeds]
    (root / "clips").mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(2) as pool:
        entries = list(pool.map(_one, jobs))
    write_manifest(root, "sim", entries, generator="test", seed=0, width=SIZE[0], height=SIZE[1])
    return {g: [f"{g}-{s}" for s in seeds] for g, (seeds, _) in groups.items()}


def lane_labels(
    seed: int, frames: int, pitch_deg: float = 0.0, start: int = 0
) -> tuple[list[dict], Calib]:
    """The lanes the simulator labels on frames start..frames-1 of scenario `seed` (slot ->
    x at the TuSimple rows, pixels), with the camera pitched down by pitch_deg more than the
    scenario draws: the same road, traffic and drive, seen by a camera knocked 3 degrees.
    Labels only (no pixels are rendered: the pitch test feeds lanes). Returns (frames,
    calib)."""
    from perception.sim.actors import Traffic
    from perception.sim.labels import lane_labels as labels_of
    from perception.sim.render import Renderer
    from perception.sim.road import Road
    from serving.contract import tusimple_h_samples

    sc = sample_scenario("pitch", seed, *SIZE, FPS, frames)
    if pitch_deg:
        pitch = sc.calib.pitch_rad + math.radians(pitch_deg)
        sc = replace(sc, calib=replace(sc.calib, pitch_rad=pitch))
    rng = np.random.default_rng(seed + 1)  # as generate_clip draws them
    road = Road(sc.road, sc.ego_speed_mps * frames / FPS + 500.0)
    traffic = Traffic(sc, road, rng)
    r = Renderer(sc, road, traffic, rng)
    hs = tusimple_h_samples(SIZE[1])
    out = []
    for i in range(start, frames):
        step = i * traffic.steps_per_frame
        lanes = labels_of(r.view, r.hood, r.ego_pose(step), float(traffic.ego_s[step]), hs)
        out.append({lane.slot: np.asarray(lane.x_at_h, np.float32) for lane in lanes})
    return out, sc.calib
