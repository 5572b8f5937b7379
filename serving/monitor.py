"""Model monitoring in the loop: input drift, prediction drift and data quality.

Each frame, `Monitor.observe` measures the properties of serving.monitor_props on the model
input and the decoded prediction (in two halves when the loop needs them apart: `measure`
while the model input is still the frame's, `update` beside the loop), then:

* windows: the last `window` frames of each property are binned on the profile's edges
  (serving.monitor_profile) and scored against the profile's shares (serving.drift): out,
  the share of the window outside the training range; psi and ks. Once a property has
  min_frames values in its window it is at level warn when out >= out_warn and alert when
  out >= out_alert. The class mix is scored the same way, over the window's detections.
* checks that need no profile: frozen (frozen_frames repeats in a row: motion below
  frozen_motion), blocked (blocked_frames near-black or blank frames in a row) and
  camera_moved (the median lane pitch of the last pitch_window estimates against the median
  of the first pitch_window of the run: a camera that moved shows as a step; the training
  profile cannot catch it, its rigs span -4 to 5 degrees).
* state: the highest level of the properties and checks; `cause` names the one behind it.
  Hysteresis: a state rises at once and falls only after release_frames frames below it,
  so a score hovering at a threshold does not make it flicker.

Why the out-of-range share sets the state and not PSI or KS: a window of a few seconds
shows one scene and the profile thousands, so any one-scene window, a day clip the model
knows as much as a night clip it never saw, sits in a few of the profile's bins and has a
large PSI and KS. The share outside the range the model was trained on separates them.
PSI and KS are reported with every window, and `perception monitor` scores whole runs
with them, where the sample spans many scenes.

Cost: ~0.1 ms per frame on one core (one Numba pass over a quarter of the model input, a
Numba bin update, a few vectorised numpy calls). `status()` builds the JSON object and is
only called when a record is written.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit

from serving import drift
from serving.contract import ModelContract
from serving.geometry import Calib
from serving.monitor_profile import MonitorConfig, MonitorProfile, ProfileError
from serving.monitor_props import IMAGE, INDEX, NAMES, ImageProps, prediction_props
from serving.postprocess import FramePrediction

LEVELS = ("ok", "warn", "alert")
CHECKS = ("blocked", "frozen", "camera_moved")  # before the properties when levels tie


@njit(cache=True, nogil=True)
def _push(ring: np.ndarray, pos: int, counts: np.ndarray, vals: np.ndarray, edges: np.ndarray,
          bins: np.ndarray) -> None:  # fmt: skip
    """Replace the frame at ring row pos: ring int16[W, P] bin per frame (-1: no value),
    counts float64[P, B] window histogram, vals float64[P] (NaN: no value), edges
    float64[P, B - 1] ascending, bins int64[P] bins in use. A value equal to an edge goes
    to the bin above it."""
    for p in range(len(vals)):
        old = ring[pos, p]
        if old >= 0:
            counts[p, old] -= 1.0
        v = vals[p]
        if v != v:
            ring[pos, p] = -1
            continue
        k = 0
        while k < bins[p] - 1 and v >= edges[p, k]:
            k += 1
        ring[pos, p] = k
        counts[p, k] += 1.0


@njit(cache=True, nogil=True)
def _median(a: np.ndarray) -> float:
    return float(np.median(a))


class Monitor:
    """The monitor of one camera stream. profile: None runs the checks only (frozen,
    blocked, camera_moved). calib: the stream's calibration (pitch needs its cy and fy)."""

    def __init__(
        self,
        contract: ModelContract,
        calib: Calib,
        profile: MonitorProfile | None = None,
        config: MonitorConfig | None = None,
    ):
        self.profile = profile
        self.cfg = config or (profile.config if profile is not None else MonitorConfig())
        self.image = ImageProps(
            contract.mean, contract.std, contract.input_height, contract.input_width
        )
        slots = contract.lane_slots
        self.ego = (
            (slots.index("ego_left"), slots.index("ego_right"))
            if {"ego_left", "ego_right"} <= set(slots)
            else None
        )
        self.values = np.full(len(NAMES), np.nan)
        self.class_counts = np.zeros(len(contract.class_names), np.int64)
        self.rows: tuple[str, ...] = ()
        if profile is not None:
            profile.check_contract(contract)
            if profile.classes and profile.classes != tuple(contract.class_names):
                raise ProfileError(f"{profile.path}: classes differ from the model's")
            self.rows = profile.rows
            self._idx = np.array([INDEX[n] for n in profile.props], np.int64)
        self.set_calib(calib)
        self.reset()

    def set_calib(self, calib: Calib) -> None:
        """A new calibration (the source's size changed): pitch reads its cy and fy."""
        self.cy, self.fy = float(calib.cy), float(calib.fy)

    def reset(self) -> None:
        """Forget everything seen: a new run, or a camera put back after a move."""
        w, p = self.cfg.window, len(self.rows)
        self.frames = 0
        self._pos = 0
        self._ring = np.full((w, max(p, 1)), -1, np.int16)
        self._ring_cls = np.zeros((w, len(self.class_counts)), np.int64)
        self._counts = np.zeros((max(p, 1), drift_bins(self.profile)))
        self.scores = np.zeros((4, p))  # per row: out share, psi, ks, values in the window
        self._levels = np.zeros(p, np.int64)
        self.state, self.cause, self._below = 0, "", 0
        self.new_source()

    def new_source(self, calib: Calib | None = None) -> None:
        """The next frames come from another camera (a dataset's next clip): forget the
        previous frame, the frame checks' runs and the pitch reference; the windows and the
        state go on."""
        if calib is not None:
            self.set_calib(calib)
        self.image.reset()
        self.motion = math.nan
        self.frozen_run = self.blocked_run = 0
        self._pitch = np.zeros(self.cfg.pitch_window)  # the last estimates (a ring)
        self._n_pitch, self._anchor = 0, math.nan
        self.pitch_shift = math.nan

    def measure(self, x: np.ndarray) -> np.ndarray:
        """The image half of a frame, to run where the model input is still this frame's
        (the loop's thread, right after preprocessing): x float32[1, 3, h, w] the model
        input (the contract's normalisation) -> float64[len(IMAGE) + 1], the IMAGE properties
        then the motion. Keeps the frame's grey rows for the next frame's motion."""
        out = np.empty(len(IMAGE) + 1)
        out[-1] = self.image(x, out)
        return out

    def update(self, image: np.ndarray | None, pred: FramePrediction | None) -> int:
        """The rest of a frame (any thread, frames in order): image from measure() (None:
        no image properties), pred its decoded prediction in source pixels (None: none).
        Returns the state (0 ok, 1 warn, 2 alert)."""
        self.frames += 1
        n = len(IMAGE)
        if image is None:
            self.values[:n], self.motion = np.nan, math.nan
        else:
            self.values[:n], self.motion = image[:n], float(image[n])
        if pred is not None:
            prediction_props(pred, self.ego, self.cy, self.fy, self.values, self.class_counts)
        else:
            self.values[n:] = np.nan
            self.class_counts[:] = 0
        self._checks()
        if self.profile is not None:
            self._window(self.profile)
        self._step(*self._raw())
        return self.state

    def observe(self, x: np.ndarray, pred: FramePrediction | None) -> int:
        """measure() and update() in one: one frame, in one thread."""
        return self.update(self.measure(x), pred)

    def _checks(self) -> None:
        c, v = self.cfg, self.values
        still = self.motion < c.frozen_motion  # NaN (first frame) is not a repeat
        self.frozen_run = self.frozen_run + 1 if still else 0
        blank = v[INDEX["brightness"]] < c.blocked_brightness
        blank |= v[INDEX["contrast"]] < c.blocked_contrast
        self.blocked_run = self.blocked_run + 1 if blank else 0
        pitch = v[INDEX["pitch"]]
        if math.isfinite(pitch):  # the first pitch_window estimates are the reference
            self._pitch[self._n_pitch % c.pitch_window] = pitch
            self._n_pitch += 1
            if self._n_pitch == c.pitch_window:
                self._anchor = _median(self._pitch)
            if self._n_pitch >= c.pitch_window:
                self.pitch_shift = _median(self._pitch) - self._anchor

    def _window(self, prof: MonitorProfile) -> None:
        """Slide the window by this frame and score every row."""
        c, pos = self.cfg, self._pos
        _push(self._ring, pos, self._counts, self.values[self._idx], prof.edges, prof.bins)
        if prof.classes:
            n = len(self.class_counts)
            self._counts[-1, :n] += self.class_counts - self._ring_cls[pos]
            self._ring_cls[pos] = self.class_counts
        self._pos = (pos + 1) % c.window
        s = self.scores
        drift.score(self._counts, prof.ref, prof.outside, s)
        scored = s[3] >= c.min_frames
        self._levels = scored * ((s[0] >= c.out_warn).astype(np.int64) + (s[0] >= c.out_alert))

    def check_levels(self) -> dict[str, int]:
        c = self.cfg
        shift = abs(self.pitch_shift) if math.isfinite(self.pitch_shift) else 0.0
        return {
            "frozen": 2 * (self.frozen_run >= c.frozen_frames),
            "blocked": 2 * (self.blocked_run >= c.blocked_frames),
            "camera_moved": (shift >= c.pitch_warn_deg) + (shift >= c.pitch_alert_deg),
        }

    def _raw(self) -> tuple[int, str]:
        """This frame's level and its cause: checks first, then the row with the largest
        out-of-range share among those at the highest level."""
        checks = self.check_levels()
        top = max(max(checks.values()), int(self._levels.max(initial=0)))
        if top == 0:
            return 0, ""
        for name in CHECKS:
            if checks[name] == top:
                return top, name
        at_top = np.where(self._levels == top, self.scores[0], -1.0)
        return top, self.rows[int(np.argmax(at_top))]

    def _step(self, raw: int, cause: str) -> None:
        """Hysteresis: rise at once; fall only after release_frames frames below."""
        if raw >= self.state:
            self.state, self._below = raw, 0
            if raw:
                self.cause = cause
            return
        self._below += 1
        if self._below >= self.cfg.release_frames:
            self.state, self.cause, self._below = raw, cause, 0

    @property
    def state_name(self) -> str:
        return LEVELS[self.state]

    def reason(self) -> str:
        """The state in one line a person reads ("" when ok)."""
        if not self.state:
            return ""
        c = self.cause
        if c == "frozen":
            return f"frozen: {self.frozen_run} frames in a row repeat the one before"
        if c == "blocked":
            return f"blocked: {self.blocked_run} frames in a row near-black or blank"
        if c == "camera_moved":
            return f"camera pitch moved {self.pitch_shift:+.1f} deg since the start (lanes)"
        i = self.rows.index(c)
        out, n = self.scores[0, i], int(self.scores[3, i])
        what = "detections in classes" if c == "classes" else "frames"
        return f"{c}: {100 * out:.0f} % of the last {n} {what} outside the training range"

    def status(self) -> dict[str, Any]:
        """The `monitor` object of a JSON record: state, cause, reason, this frame's
        property values and each row's window scores and level."""
        s = self.scores
        scores = {
            name: {
                "out": round(float(s[0, i]), 3),
                "psi": round(float(s[1, i]), 3),
                "ks": round(float(s[2, i]), 3),
                "n": int(s[3, i]),
                "level": LEVELS[int(self._levels[i])],
            }
            for i, name in enumerate(self.rows)
        }
        shift = self.pitch_shift
        return {
            "state": self.state_name,
            "cause": self.cause or None,
            "reason": self.reason(),
            "frames": self.frames,
            "values": {n: _num(v) for n, v in zip(NAMES, self.values, strict=True)},
            "motion": _num(self.motion),
            "scores": scores,
            "checks": {
                "frozen_frames": self.frozen_run,
                "blocked_frames": self.blocked_run,
                "pitch_shift_deg": round(shift, 2) if math.isfinite(shift) else None,
            },
            "profile": self.profile is not None,
        }

    def hud(self) -> str:
        """The HUD line: "ok", or the state and its cause ("ALERT dark")."""
        return self.state_name if not self.state else f"{self.state_name.upper()} {self.cause}"


def drift_bins(profile: MonitorProfile | None) -> int:
    return profile.ref.shape[1] if profile is not None else 1


def _num(v: float) -> float | None:
    return round(float(v), 4) if math.isfinite(v) else None
