"""The training profile the monitor compares against, and the monitor's thresholds.

The profile is a JSON file that travels next to the model (models/perception.monitor.json for
models/perception.onnx; `perception monitor-profile` writes it from the training split, and
dvc.yaml declares it), so that serving needs nothing from perception/. It holds, per
property of serving.monitor_props, fixed bin edges and the share of the training frames in
each bin, and it carries the thresholds (MonitorConfig, from params.yaml `monitor`) and the
contract's preprocessing it was measured through:

    {"schema": "perception-monitor-profile/1",
     "config": {MonitorConfig fields},
     "contract": {"input_width", "input_height", "mean", "std"},
     "model": {"file", "sha256"},  "source": {...},
     "properties": {name: {"unit", "kind", "edges": [e0..ek], "ref": [k + 2 shares],
                           "n", "mean", "std", "quantiles": {"p01": ..}, "sketch": [..]}},
     "classes": {"names": [..], "ref": [shares], "n"}}

Bins of a property are (-inf, e0), [e0, e1), ..., [ek, inf): for a continuous property e0
and ek bound the training range (its 0.5 and 99.5 % quantiles widened by a margin), and its
two outer bins are outside it. A count property (and the class mix) has no range: its
outside bins are the values the profile holds less than rare_mass of (outside_bins).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from serving.contract import ModelContract
from serving.files import MAX_TEXT_BYTES, loads_finite, read_regular
from serving.monitor_props import NAMES

SCHEMA = "perception-monitor-profile/1"
MAX_BINS = 24  # bins of one property, outer bins included


class ProfileError(ValueError):
    """A profile or a threshold the monitor cannot use; one line naming the file and key."""


@dataclass(frozen=True)
class MonitorConfig:
    """Run-time thresholds of serving.monitor.Monitor (params.yaml `monitor`). Frames are
    camera frames; shares are fractions of a window."""

    window: int = 60  # frames in the rolling window (3 s at 20 FPS)
    min_frames: int = 5  # frames a property needs in its window before it is scored
    rare_mass: float = 0.01  # count bins the profile holds less than this share of: out of range
    out_warn: float = 0.25  # share of the window out of range that warns
    out_alert: float = 0.5  # ... that alerts
    release_frames: int = 20  # a state falls only after this many frames below it
    frozen_motion: float = 0.2  # grey levels: a frame this close to the last is a repeat
    frozen_frames: int = 5  # consecutive repeats that alert "frozen"
    blocked_brightness: float = 12.0  # grey level: darker frames are near-black
    blocked_contrast: float = 4.0  # grey levels: flatter frames are blank (covered, white-out)
    blocked_frames: int = 5  # consecutive near-black or blank frames that alert "blocked"
    pitch_window: int = 40  # lane pitch estimates in the reference and in the current median
    pitch_warn_deg: float = 1.5  # camera pitch moved this far from the run's start: warn
    pitch_alert_deg: float = 2.0  # ... alert

    def __post_init__(self) -> None:
        for f in fields(MonitorConfig):  # a subclass checks its own fields
            v = getattr(self, f.name)
            if isinstance(f.default, int) and not (isinstance(v, int) and v >= 1):
                raise ProfileError(f"monitor.{f.name}: {v!r}, must be a whole number >= 1")
            if isinstance(f.default, float) and not (
                isinstance(v, int | float) and math.isfinite(v) and v >= 0
            ):
                raise ProfileError(f"monitor.{f.name}: {v!r}, must be a number >= 0")
        if self.min_frames > self.window:
            raise ProfileError("monitor.min_frames must not exceed window")
        if not self.out_warn <= self.out_alert <= 1.0:
            raise ProfileError("monitor: need out_warn <= out_alert <= 1")
        if self.pitch_warn_deg > self.pitch_alert_deg:
            raise ProfileError("monitor: need pitch_warn_deg <= pitch_alert_deg")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MonitorConfig:
        """The known keys of d (others ignored: a profile may carry profile-building ones)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass(frozen=True)
class MonitorProfile:
    """A loaded profile as arrays, one row per scored property (props, then "classes" when
    the profile has a class mix): edges float64[P, MAX_BINS - 1] (+inf padded), ref
    float64[P, MAX_BINS] (0 padded), outside bool[P, MAX_BINS] (bins outside the training
    range), bins int64[P] (bins in use)."""

    path: str
    config: MonitorConfig
    props: tuple[str, ...]
    edges: np.ndarray
    ref: np.ndarray
    outside: np.ndarray
    bins: np.ndarray
    classes: tuple[str, ...]
    raw: dict[str, Any]

    @property
    def rows(self) -> tuple[str, ...]:
        """Names of the scored rows: props, then "classes" when there is a class mix."""
        return (*self.props, "classes") if self.classes else self.props

    def check_contract(self, c: ModelContract) -> None:
        """The image properties were measured through the contract's preprocessing: refuse a
        profile made for another input size or normalisation."""
        want = self.raw["contract"]
        have = {
            "input_width": c.input_width,
            "input_height": c.input_height,
            "mean": list(c.mean),
            "std": list(c.std),
        }
        for k, v in have.items():
            if want.get(k) != v:
                raise ProfileError(
                    f"{self.path}: contract.{k} {want.get(k)!r}, the model has {v!r}: "
                    "profile made for another model input"
                )


def outside_bins(kind: str, ref: np.ndarray, rare_mass: float) -> np.ndarray:
    """bool[len(ref)]: the bins outside the training range. Continuous: the two outer ones,
    whatever share of the training frames they hold (a few outliers beyond the widened
    range must not make it "inside"); counts and classes: the values the profile holds
    less than rare_mass of."""
    if kind == "continuous":
        out = np.zeros(len(ref), bool)
        out[[0, -1]] = True
        return out
    return np.asarray(ref) < rare_mass


def _need(ok: bool, path: str, key: str, what: str) -> None:
    if not ok:
        raise ProfileError(f"{path}: {key}: {what}")


def _bins(path: str, name: str, d: Any) -> tuple[np.ndarray, np.ndarray]:
    """A property's (edges, ref) after checking them."""
    key = f"properties.{name}"
    _need(isinstance(d, dict), path, key, "must be an object")
    _need(d.get("kind") in ("continuous", "count"), path, key, 'kind: "continuous" or "count"')
    edges = np.asarray(d.get("edges", []), np.float64)
    ref = np.asarray(d.get("ref", []), np.float64)
    _need(edges.ndim == 1 and 1 <= len(edges) < MAX_BINS, path, key, "edges: 1 to 22 numbers")
    _need(bool(np.all(np.diff(edges) > 0)), path, key, "edges must increase")
    _need(ref.shape == (len(edges) + 1,), path, key, "ref needs one share per bin")
    _need(bool(np.all(ref >= 0)) and abs(ref.sum() - 1) < 1e-6, path, key, "ref must sum to 1")
    return edges, ref


def _classes(path: str, c: Any) -> tuple[tuple[str, ...], np.ndarray]:
    """The class mix's names and shares after checking them."""
    names = c.get("names") if isinstance(c, dict) else None
    if not (isinstance(names, list) and 0 < len(names) <= MAX_BINS):
        names = [None]  # refused just below
    _need(all(isinstance(x, str) for x in names), path, "classes.names", "a list of names")
    ref = np.asarray(c.get("ref", []), np.float64)
    ok = ref.shape == (len(names),) and bool(np.all(ref >= 0)) and abs(ref.sum() - 1) < 1e-6
    _need(ok, path, "classes.ref", "one share per class, summing to 1")
    return tuple(names), ref


def load_profile(path: str | Path) -> MonitorProfile:
    """Read and check a profile; ProfileError (or FileNotFoundError) naming the file."""
    p = str(path)
    try:
        raw = loads_finite(read_regular(path, MAX_TEXT_BYTES))
    except ValueError as err:
        raise ProfileError(f"{p}: not a monitor profile ({err})") from None
    _need(isinstance(raw, dict) and raw.get("schema") == SCHEMA, p, "schema", f"not {SCHEMA}")
    for key in ("config", "contract", "properties"):
        _need(isinstance(raw.get(key), dict), p, key, "must be an object")
    try:
        config = MonitorConfig.from_dict(raw["config"])
    except (ProfileError, TypeError) as err:
        raise ProfileError(f"{p}: config: {err}") from None
    unknown = sorted(set(raw["properties"]) - set(NAMES))
    why = "a profile of another version? rebuild it with `perception monitor-profile`"
    _need(not unknown, p, "properties", f"unknown {', '.join(unknown)} ({why})")
    props = tuple(n for n in NAMES if n in raw["properties"])
    rows = [_bins(p, n, raw["properties"][n]) for n in props]
    kinds = [raw["properties"][n]["kind"] for n in props]
    classes: tuple[str, ...] = ()
    if raw.get("classes") is not None:
        classes, ref = _classes(p, raw["classes"])
        rows.append((np.arange(len(classes) - 1) + 0.5, ref))
        kinds.append("count")
    _need(bool(rows), p, "properties", "none")
    edges = np.full((len(rows), MAX_BINS - 1), np.inf)
    refs = np.zeros((len(rows), MAX_BINS))
    outside = np.zeros((len(rows), MAX_BINS), bool)
    for i, ((e, r), kind) in enumerate(zip(rows, kinds, strict=True)):
        edges[i, : len(e)], refs[i, : len(r)] = e, r
        outside[i, : len(r)] = outside_bins(kind, r, config.rare_mass)
    bins = np.array([len(r) for _, r in rows], np.int64)
    return MonitorProfile(p, config, props, edges, refs, outside, bins, classes, raw)


def model_profile_path(model: str | Path) -> Path:
    """Where the profile of a model lives: next to it, named after the model's first name
    part (models/perception.int8.onnx -> models/perception.monitor.json), so the quantised
    variants share the FP32 model's profile."""
    m = Path(model)
    return m.with_name(m.name.split(".")[0] + ".monitor.json")
