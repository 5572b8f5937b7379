"""The simulator: determinism, label geometry against the 3D truth, sensor sync."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from perception.dataset.schema import TAG_KEYS, Dataset
from perception.sim.actors import Traffic
from perception.sim.effects import LIGHT_ONE, apply_camera
from perception.sim.generate import DataParams, generate
from perception.sim.render import _CORNERS, Renderer
from perception.sim.road import Road
from perception.sim.scenario import sample_scenario
from serving.contract import tusimple_h_samples
from serving.geometry import Calib

SMALL = DataParams(seed=11, clips=3, frames=4, width=320, height=180, workers=1)


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_seed_same_bytes_whatever_the_worker_count(tmp_path: Path) -> None:
    generate(tmp_path / "a", SMALL, progress=False)
    generate(tmp_path / "b", replace(SMALL, workers=2), progress=False)
    a, b = _hashes(tmp_path / "a"), _hashes(tmp_path / "b")
    assert len(a) == 3 * (4 + 4) + 1  # frames + labels/calib/meta/sensors per clip, manifest
    assert a == b


def test_other_seed_other_bytes(tmp_path: Path) -> None:
    generate(tmp_path / "a", replace(SMALL, clips=1), progress=False)
    generate(tmp_path / "b", replace(SMALL, clips=1, seed=12), progress=False)
    assert _hashes(tmp_path / "a") != _hashes(tmp_path / "b")


def test_dataset_reads_back(tmp_path: Path) -> None:
    generate(tmp_path, SMALL, progress=False)
    ds = Dataset(tmp_path)
    assert ds.manifest["num_frames"] == 12
    for clip in ds.clips():
        assert clip.calib.image_width == 320
        labels = clip.labels
        assert [lb.frame for lb in labels] == list(range(4))
        img = cv2.imread(str(clip.frame_path(labels[0])))
        assert img.shape == (180, 320, 3)
        assert set(clip.meta.tags) == set(TAG_KEYS)


def _cv2_project(calib: Calib, pts: np.ndarray) -> np.ndarray:
    """An independent projection (OpenCV's) of ego-frame points to pixels."""
    rvec, _ = cv2.Rodrigues(calib.R)
    tvec = -calib.R @ calib.position
    uv, _ = cv2.projectPoints(pts.astype(np.float64), rvec, tvec, calib.K, None)
    return uv.reshape(-1, 2)


def _flat_scene(seed: int, frames: int = 8, **conditions):
    """A flat road with a lead, a cut-in and a parked car; conditions override the scene's
    sampled ones (weather, noise, ...)."""
    sc = sample_scenario("t", seed, 1280, 720, 20.0, frames)
    sc = replace(
        sc,
        conditions=replace(sc.conditions, **conditions),
        road=replace(sc.road, hill_amplitude_m=0.0),
        traffic=replace(sc.traffic, events=("parked", "cut_in", "lead_brake")),
    )
    rng = np.random.default_rng(seed)
    road = Road(sc.road, 900.0)
    traffic = Traffic(sc, road, rng)
    return sc, traffic, Renderer(sc, road, traffic, rng)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_lane_labels_match_projected_3d_truth(seed: int) -> None:
    sc, _, renderer = _flat_scene(seed)
    h_samples = tusimple_h_samples(720)
    _, lanes, _ = renderer.render(5, h_samples)
    assert lanes, "a road always has the ego lane's boundaries in view"
    for lane in lanes:
        pts = np.array(lane.points)
        assert lane.points_3d is not None
        uv = _cv2_project(sc.calib, np.array(lane.points_3d))
        assert np.abs(uv - pts).max() < 1.0, lane.slot
        assert np.all(np.diff(pts[:, 1]) < 0), "points run bottom to top"
        for x, h in zip(lane.x_at_h, h_samples, strict=True):
            if x >= 0:  # TuSimple x at row h lies on the projected polyline
                assert abs(x - np.interp(h, pts[::-1, 1], pts[::-1, 0])) < 1.0


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_boxes_match_projected_3d_truth(seed: int) -> None:
    sc, traffic, renderer = _flat_scene(seed)
    _, _, obstacles = renderer.render(4, tusimple_h_samples(720))
    checked = 0
    for ob in obstacles:
        actor = next(a for a in traffic.actors if a.track_id == ob.track_id)
        if actor.cls not in ("car", "truck") or ob.truncation > 0:
            continue
        yaw = ob.yaw_rad
        rot = np.array([[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]])
        corners = np.concatenate(
            [np.array(p.centre) + _CORNERS * np.array(p.size) for p in actor.parts]
        )
        uv = _cv2_project(sc.calib, corners @ rot.T + np.array(ob.position_m))
        assert np.abs(np.r_[uv.min(0), uv.max(0)] - np.array(ob.box)).max() < 1.0
        length, width, height = ob.dims_m
        body = (_CORNERS * [length, width, height] + [0, 0, height / 2]) @ rot.T
        assert abs((body + ob.position_m)[:, 0].min() - ob.distance_m) < 0.01
        checked += 1
    assert checked > 0


def test_sensors_in_sync_and_consistent_with_motion(tmp_path: Path) -> None:
    p = replace(SMALL, clips=4, frames=10, seed=5)
    generate(tmp_path, p, progress=False)
    for clip in Dataset(tmp_path).clips():
        sensors = clip.sensors()
        t_frames = np.array([lb.timestamp_ns for lb in clip.labels])
        assert np.all(np.diff(sensors["t_ns"]) > 0)
        assert np.all(np.diff(t_frames) > 0)
        nearest = np.abs(sensors["t_ns"][:, None] - t_frames[None]).min(0)
        assert nearest.max() < 10e6, "a sensor sample within 10 ms of every frame"
        period = np.median(np.diff(t_frames)) / 1e9
        assert abs(period - 1.0 / p.fps) < 2e-3


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_static_objects_move_as_the_can_bus_says(seed: int) -> None:
    """A parked car's relative velocity is what the ego's speed and yaw rate imply:
    for a static point p in the ego frame, dp/dt = (-v + w * y, -w * x)."""
    from perception.sim.generate import _sensor_rows

    _, traffic, renderer = _flat_scene(seed)
    sensors = _sensor_rows(traffic, renderer.road, np.random.default_rng(0), 0)
    checked = 0
    for frame in (2, 5):
        _, _, obstacles = renderer.render(frame, tusimple_h_samples(720))
        step = frame * traffic.steps_per_frame
        v, w = sensors[step, 1], sensors[step, 2]
        for ob in obstacles:
            actor = next(a for a in traffic.actors if a.track_id == ob.track_id)
            if np.ptp(actor.s) > 0 or np.ptp(actor.lat) > 0:
                continue  # not static
            assert ob.position_m is not None and ob.rel_velocity_mps is not None
            x, y = ob.position_m[0], ob.position_m[1]
            expect = np.array([-v + w * y, -w * x])
            tol = 0.2 + 0.012 * abs(x)  # yaw-rate noise and bias (~0.005 rad/s) times range
            assert np.abs(np.array(ob.rel_velocity_mps) - expect).max() < tol
            checked += 1
    assert checked > 0


def test_fog_follows_the_distance_of_what_a_pixel_shows() -> None:
    """A near vehicle's pixels above the horizon keep their contrast in fog: their fog
    comes from the vehicle's distance, not from the sky's (by row, every pixel above the
    horizon was all fog colour, and the top of a near truck vanished while its label
    stayed)."""
    checked = 0
    for seed in (1, 2, 3, 4, 5, 6):
        # in 40 m fog by day, the camera's other effects off: a pixel is its albedo, lit and
        # fogged, and nothing else
        sc, _, renderer = _flat_scene(
            seed, noise_sigma=0.0, blur=1, vignette=0.0, glare=False, chroma_px=0.0,
            shadows=False, exposure_wobble=0.0, weather="fog", fog_visibility_m=40.0,
            time_of_day="day",
        )  # fmt: skip
        img, _, obstacles = renderer.render(3, tusimple_h_samples(720))
        fog = renderer.sensor.fog_bgr * np.float32(sc.conditions.exposure)
        fog = fog * np.array(sc.conditions.white_balance, np.float32)
        horizon = int(sc.calib.horizon_v)
        for ob in obstacles:
            x1, y1, x2, _ = (int(v) for v in ob.box)
            if ob.cls not in ("car", "truck") or ob.distance_m > 20 or y1 > horizon - 12:
                continue
            if ob.truncation > 0.3 or x2 - x1 < 20:
                continue
            top = img[y1 + 3 : horizon - 3, x1 + 4 : x2 - 4].astype(np.float32)
            # at 20 m in 40 m fog the body keeps exp(-0.5) = 61 % of its own shade
            assert np.abs(top - fog).mean(axis=2).max() > 25.0, (seed, ob.track_id)
            checked += 1
    assert checked > 0, "no near vehicle reached above the horizon in these scenes"


def test_the_camera_pass_matches_its_formula_pixel_by_pixel() -> None:
    """apply_camera takes the fog's exponential once per run of equal distance along a row;
    every pixel must still get its own distance's fog: rows of one distance each (a stale
    value from the row above would be off by tens of grey levels), runs broken by objects,
    and a distance repeated after another."""
    rng = np.random.default_rng(3)
    h, w = 24, 40
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    light = rng.integers(40, 256, (h, w), dtype=np.uint8)
    dist = np.repeat(np.linspace(5.0, 400.0, h, dtype=np.float32)[:, None], w, axis=1)
    dist[3:9, 10:18] = 12.0  # an object's face
    dist[5, 30:] = dist[5, 0]  # the row's road distance again after another run
    fog = np.array([200.0, 198.0, 195.0], np.float32)
    gain = np.array([1.1, 1.0, 0.9], np.float32)
    glare_uv = np.array([30.0, 4.0])
    noise = np.zeros((7, 7, 3), np.int8)
    off = np.zeros(2, np.int64)
    out = img.copy()
    apply_camera(out, light, dist, 1 / 60.0, 1.0, fog, gain, 0.3, glare_uv, 50.0, 12.0, noise, off)

    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    f = 1.0 - np.exp(-dist.astype(np.float64) / 60.0)
    lit = light / LIGHT_ONE * (1.0 - f)
    cx, cy = w / 2, h / 2
    vig = 1.0 - 0.3 * ((xx - cx) ** 2 + (yy - cy) ** 2) / (cx * cx + cy * cy)
    gl = 50.0 / (1.0 + ((xx - 30.0) ** 2 + (yy - 4.0) ** 2) / 144.0)
    ref = (img * lit[..., None] + fog * f[..., None] + gl[..., None]) * gain * vig[..., None]
    ref = np.clip(np.floor(ref + 0.5), 0, 255)
    diff = np.abs(out.astype(np.int64) - ref.astype(np.int64))
    assert diff.max() <= 1  # fastmath may round a half the other way, never more
    assert (diff == 0).mean() > 0.99
