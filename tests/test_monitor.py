"""serving/monitor*: the per-frame properties on hand-made inputs, the profile file and its
refusals, and the monitor's states (levels, cause, hysteresis, frame checks)."""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import numpy as np
import pytest

from perception.monitor.profile import build_profile, pick_clips, range_edges
from perception.params import MonitorParams
from serving.contract import ModelContract
from serving.geometry import Calib
from serving.monitor import Monitor
from serving.monitor_profile import (
    MonitorConfig,
    ProfileError,
    load_profile,
    model_profile_path,
)
from serving.monitor_props import IMAGE, INDEX, NAMES, PROPERTIES, ImageProps, prediction_props
from serving.postprocess import NO_POINT, Detections, FramePrediction, Lanes
from serving.preprocess import normalise_u8

C = ModelContract()
H, W = C.input_height, C.input_width


def model_input(rgb: np.ndarray) -> np.ndarray:
    """uint8[H, W, 3] RGB -> float32[1, 3, H, W] as the preprocessing writes it."""
    return np.ascontiguousarray(normalise_u8(rgb, C)[None])


def props_of(rgb: np.ndarray) -> np.ndarray:
    out = np.full(len(NAMES), np.nan)
    ImageProps(C.mean, C.std, H, W)(model_input(rgb), out)
    return out


def test_uniform_grey_image() -> None:
    v = props_of(np.full((H, W, 3), 100, np.uint8))
    assert v[INDEX["brightness"]] == pytest.approx(100.0, abs=0.01)
    assert v[INDEX["contrast"]] == pytest.approx(0.0, abs=0.05)
    assert v[INDEX["sharpness"]] == pytest.approx(0.0, abs=0.01)  # log10(1 + 0)
    assert v[INDEX["saturation"]] == pytest.approx(0.0, abs=1e-4)
    assert v[INDEX["far_saturation"]] == pytest.approx(-3.0)  # log10 of the floor
    assert v[INDEX["far_chroma"]] == pytest.approx(0.0, abs=1e-3)
    assert v[INDEX["dark"]] == 0.0


def test_far_colour_properties_by_hand() -> None:
    # top two thirds: columns alternate pure red and pure blue (saturation 1; rg 255 and 0,
    # yb 127.5 and -255: standard deviations 127.5 and 191.25), the rest grey
    rgb = np.full((H, W, 3), 100, np.uint8)
    top = rgb[: 2 * H // 3]
    top[:, 0::2] = (255, 0, 0)
    top[:, 1::2] = (0, 0, 255)
    v = props_of(rgb)
    assert v[INDEX["far_saturation"]] == pytest.approx(0.0, abs=1e-3)
    spread = math.hypot(127.5, 191.25)
    assert v[INDEX["far_chroma"]] == pytest.approx(math.log10(1 + spread), abs=1e-3)
    # one tint over the far field (a tinted fog, a colour cast): saturated, but no spread
    tinted = np.full((H, W, 3), (200, 170, 210), np.uint8)
    v = props_of(tinted)
    assert v[INDEX["far_saturation"]] == pytest.approx(math.log10(40 / 210), abs=2e-3)
    assert v[INDEX["far_chroma"]] == pytest.approx(0.0, abs=1e-2)


def test_stripes_give_the_hand_computed_laplacian_variance() -> None:
    # columns alternate grey 100 and 110: each interior Laplacian is +-2 * 10 (rows equal),
    # variance 400; half the points at 100, half at 110: contrast 5, brightness 105
    rgb = np.full((H, W, 3), 100, np.uint8)
    rgb[:, 1::2] = 110
    v = props_of(rgb)
    assert v[INDEX["brightness"]] == pytest.approx(105.0, abs=0.01)
    assert v[INDEX["contrast"]] == pytest.approx(5.0, abs=0.01)
    assert v[INDEX["sharpness"]] == pytest.approx(math.log10(401.0), abs=0.01)


def test_colour_and_black() -> None:
    red = np.zeros((H, W, 3), np.uint8)
    red[..., 0] = 255
    v = props_of(red)
    assert v[INDEX["saturation"]] == pytest.approx(1.0, abs=1e-3)
    assert v[INDEX["brightness"]] == pytest.approx(0.299 * 255, abs=0.05)
    black = props_of(np.zeros((H, W, 3), np.uint8))
    assert black[INDEX["dark"]] == 1.0
    assert black[INDEX["saturation"]] == pytest.approx(0.0, abs=1e-3)


def test_motion_is_nan_first_then_zero_for_a_repeat() -> None:
    ip = ImageProps(C.mean, C.std, H, W)
    x = model_input(np.random.default_rng(0).integers(0, 255, (H, W, 3), dtype=np.uint8))
    out = np.zeros(len(NAMES))
    assert math.isnan(ip(x, out))
    assert ip(x, out) == pytest.approx(0.0, abs=1e-6)
    y = model_input(np.full((H, W, 3), 30, np.uint8))
    assert ip(y, out) > 40.0


def lanes_meeting_at(v0: float, rows: np.ndarray, h: int = 720) -> np.ndarray:
    """xs float32[4, R]: ego lanes through (640 -+ 300, 700) meeting at row v0."""
    xs = np.full((4, len(rows)), NO_POINT, np.float32)
    for k, x_bottom in ((0, 340.0), (1, 940.0)):
        xs[k] = 640.0 + (x_bottom - 640.0) * (rows - v0) / (700.0 - v0)
    xs[:, rows < v0 + 10] = NO_POINT
    return xs


def test_pitch_from_the_vanishing_point() -> None:
    calib = Calib.default(1280, 720)
    rows = np.arange(160, 720, 10, dtype=np.float32)
    v0 = 330.0
    exist = np.array([0.9, 0.8, 0.1, 0.1], np.float32)
    det = Detections(
        np.zeros((3, 4), np.float32), np.array([0.5, 0.7, 0.9], np.float32), np.array([0, 0, 2])
    )
    pred = FramePrediction(Lanes(lanes_meeting_at(v0, rows), rows, exist), det)
    out, counts = np.zeros(len(NAMES)), np.zeros(4, np.int64)
    prediction_props(pred, (0, 1), calib.cy, calib.fy, out, counts)
    want = math.degrees(math.atan((calib.cy - v0) / calib.fy))
    assert out[INDEX["pitch"]] == pytest.approx(want, abs=1e-3)
    assert out[INDEX["lanes"]] == 2 and out[INDEX["obstacles"]] == 3
    assert out[INDEX["lane_conf"]] == pytest.approx(0.475)
    assert out[INDEX["det_score"]] == pytest.approx(0.7)
    assert counts.tolist() == [2, 0, 1, 0]
    # one ego lane missing: no pitch
    pred.lanes.xs[1] = NO_POINT
    prediction_props(pred, (0, 1), calib.cy, calib.fy, out, counts)
    assert math.isnan(out[INDEX["pitch"]])


def grey_input(level: float, seed: int) -> np.ndarray:
    """A noisy grey model input of mean level `level` (grey std ~27 after the luma mix);
    8 noise patterns per level, so that successive seeds never repeat a frame."""
    return _grey_input(level, seed % 8)


@functools.lru_cache(maxsize=64)
def _grey_input(level: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rgb = np.clip(rng.normal(level, 40.0, (H, W, 3)), 0, 255).astype(np.uint8)
    return model_input(rgb)


@functools.lru_cache(maxsize=1)
def _profile_text() -> str:
    ip = ImageProps(C.mean, C.std, H, W)
    values = np.full((80, len(NAMES)), np.nan)
    for i, level in enumerate(np.linspace(90, 130, 80)):
        rng = np.random.default_rng(1000 + i)
        rgb = np.clip(rng.normal(level, 40.0, (H, W, 3)), 0, 255).astype(np.uint8)
        ip(model_input(rgb), values[i])
    prof = build_profile(values, None, C, MonitorParams(), None, {"data": "synthetic"})
    return json.dumps(prof)


def brightness_profile(tmp_path: Path) -> Path:
    """A profile of image properties only, measured on noisy grey frames of levels 90..130."""
    path = tmp_path / "perception.monitor.json"
    path.write_text(_profile_text())
    return path


def test_profile_round_trip_and_bins(tmp_path: Path) -> None:
    prof = load_profile(brightness_profile(tmp_path))
    assert prof.props == IMAGE and not prof.classes
    e = prof.raw["properties"]["brightness"]["edges"]
    # training range: the 0.5 / 99.5 % quantiles (~90.3, ~129.7) widened by 15 % of the width
    assert e[0] == pytest.approx(90.3 - 0.15 * 39.4, abs=1.0)
    assert e[-1] == pytest.approx(129.7 + 0.15 * 39.4, abs=1.0)
    assert len(e) == 11  # range ends + 9 decile edges inside
    assert model_profile_path("models/perception.int8.onnx") == Path(
        "models/perception.monitor.json"
    )


def test_range_edges_of_a_constant_keep_the_resolution() -> None:
    prop = PROPERTIES[INDEX["lane_conf"]]
    e = range_edges(np.full(50, 0.5), prop, MonitorParams())
    assert e[0] == pytest.approx(0.5 - prop.resolution)
    assert e[-1] == pytest.approx(0.5 + prop.resolution)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(schema="x"), "schema"),
        (lambda d: d["properties"]["brightness"].update(edges=[3.0, 2.0]), "edges must increase"),
        (lambda d: d["properties"]["brightness"].update(ref=[0.5, 0.2]), "ref"),
        (lambda d: d["properties"].update(colour={}), "unknown colour"),
        (lambda d: d["config"].update(window=0), "monitor.window"),
    ],
)
def test_bad_profiles_are_one_line_naming_the_file(tmp_path: Path, edit, message) -> None:
    path = brightness_profile(tmp_path)
    d = json.loads(path.read_text())
    edit(d)
    path.write_text(json.dumps(d))
    with pytest.raises(ProfileError, match=message) as e:
        load_profile(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_profile_of_another_input_size_is_refused(tmp_path: Path) -> None:
    prof = load_profile(brightness_profile(tmp_path))
    other = ModelContract(input_width=512, input_height=288)
    with pytest.raises(ProfileError, match="input_width"):
        Monitor(other, Calib.default(1280, 720), prof)


def test_dark_frames_alert_then_release_after_the_hold(tmp_path: Path) -> None:
    cfg = MonitorConfig(window=20, min_frames=5, release_frames=10)
    m = Monitor(C, Calib.default(1280, 720), load_profile(brightness_profile(tmp_path)), cfg)
    states = [m.observe(grey_input(110, i), None) for i in range(20)]
    assert max(states) == 0 and m.status()["scores"]["brightness"]["n"] == 20
    dark = [m.observe(grey_input(40, 100 + i), None) for i in range(20)]
    # out of range in 5 of 20 frames: warn; in 10: alert
    assert dark.index(1) == 4 and dark.index(2) == 9 and m.cause == "brightness"
    assert "outside the training range" in m.reason()
    back = [m.observe(grey_input(110, 200 + i), None) for i in range(40)]
    # the window clears after 11 frames (out < 0.5: alert no longer raw) ... then holds 10
    assert back[:15] == [2] * 15 and back[-1] == 0
    assert set(back) <= {0, 1, 2} and back == sorted(back, reverse=True)


def test_states_do_not_flicker_on_a_score_at_the_threshold(tmp_path: Path) -> None:
    cfg = MonitorConfig(window=10, min_frames=5, release_frames=10)
    m = Monitor(C, Calib.default(1280, 720), load_profile(brightness_profile(tmp_path)), cfg)
    states = []
    for i in range(80):  # every other frame dark: out share around 0.5, on and off
        states.append(m.observe(grey_input(40 if i % 2 else 110, i), None))
    after = states[15:]
    assert len(set(after)) == 1 and after[0] == 2


def test_frozen_camera_is_flagged_within_ten_frames() -> None:
    m = Monitor(C, Calib.default(1280, 720))  # no profile: the checks still run
    x = grey_input(110, 0)
    states = [m.observe(grey_input(110, i), None) for i in range(5)]
    states += [m.observe(x, None) for _ in range(10)]
    first = states.index(2)
    assert 5 < first <= 5 + 10 and m.cause == "frozen"
    assert m.status()["checks"]["frozen_frames"] >= 5


def test_black_frames_are_blocked() -> None:
    m = Monitor(C, Calib.default(1280, 720))
    black = model_input(np.zeros((H, W, 3), np.uint8))
    for i in range(6):
        m.observe(black + np.float32(i * 1e-3), None)  # not identical: not frozen
    assert m.state_name == "alert" and m.cause == "blocked"
    assert m.hud() == "ALERT blocked"


def test_status_is_json_and_names_every_scored_row(tmp_path: Path) -> None:
    m = Monitor(C, Calib.default(1280, 720), load_profile(brightness_profile(tmp_path)))
    m.observe(grey_input(110, 0), None)
    s = json.loads(json.dumps(m.status(), allow_nan=False))
    assert s["state"] == "ok" and s["cause"] is None and s["profile"] is True
    assert set(s["scores"]) == set(IMAGE) and s["values"]["pitch"] is None


def test_pick_clips_spreads_and_caps() -> None:
    assert pick_clips([5] * 10, 0) == list(range(10))
    got = pick_clips([5] * 100, 50)
    assert len(got) == 10 and got[0] == 0 and got[-1] == 99
    assert pick_clips([30, 5], 10) == [0]  # one clip at least


def test_hook_attaches_probe_hook_and_hud_line(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from serving.app import Hud
    from serving.monitor_hook import MonitorHook

    app = SimpleNamespace(probes=[], hooks=[], hud=Hud("cpu"))
    hook = MonitorHook(Monitor(C, Calib.default(1280, 720))).attach(app)
    assert app.probes == [hook.probe] and app.hooks == [hook]
    black = model_input(np.zeros((H, W, 3), np.uint8))
    pred = FramePrediction(Lanes(np.full((4, 3), NO_POINT, np.float32), np.zeros(3, np.float32),
                                 np.zeros(4, np.float32)), Detections())  # fmt: skip
    for i in range(6):  # the probe on the loop's side, the hook on the output side
        hook.probe(black + np.float32(i * 1e-3))
        record: dict = {}
        hook(SimpleNamespace(index=i), SimpleNamespace(pred=pred), record)
    assert record["monitor"]["state"] == "alert" and record["monitor"]["cause"] == "blocked"
    assert app.hud.lines()["monitor"] == "ALERT blocked"
    reason = "blocked: 5 frames in a row near-black or blank"  # when the alert began
    assert hook.summary()["alerts"] == [{"frame": 4, "reason": reason}]
    assert "1 alert(s), the first at frame 4: blocked" in hook.summary_line()
