"""Typed access to params.yaml, the file that holds every tunable of the pipeline.

Each top-level section of params.yaml maps onto one frozen dataclass below; the dataclass
defaults are params.yaml's values (tests/test_params.py keeps them equal) so that library
code and tests can run without the file. A command reads the file once with
``load_params`` and takes its section with ``section``:

    params = load_params(args.params)
    vp = section(params, ValidateParams)

To add a section, write a frozen dataclass with a ``SECTION`` class variable naming the
params.yaml key and add it to ``SECTIONS``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml

from perception.errors import UserError
from serving.config import Settings, TrackingConfig, WarningConfig
from serving.monitor_profile import MonitorConfig, ProfileError


@dataclass(frozen=True)
class DataParams:
    """The simulated dataset (params.yaml `data`)."""

    SECTION: ClassVar[str] = "data"
    seed: int = 7
    clips: int = 1400
    frames: int = 5
    width: int = 1280
    height: int = 720
    fps: float = 20.0
    jpeg_quality: int = 90
    workers: int = 2


@dataclass(frozen=True)
class ValidateParams:
    """Thresholds of the data quality gate (perception validate)."""

    SECTION: ClassVar[str] = "validate"
    imbalance_ratio: float = 25.0  # warn when commonest / rarest class count exceeds this
    sync_tolerance_ms: float = 15.0  # a frame needs a sensor sample this close, milliseconds


@dataclass(frozen=True)
class SplitParams:
    """Clip-level train/val/test split (perception split); fractions of the clips."""

    SECTION: ClassVar[str] = "split"
    seed: int = 7
    val: float = 0.15
    test: float = 0.15


SECTIONS: tuple[type, ...] = (DataParams, ValidateParams, SplitParams)

T = TypeVar("T")


def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    """Read params.yaml into a plain dict (section name -> mapping of keys)."""
    p = Path(path)
    try:
        obj = yaml.safe_load(p.read_text())
    except FileNotFoundError:
        raise UserError(f"{p}: missing file") from None
    except yaml.YAMLError as e:
        raise UserError(f"{p}: not valid YAML ({str(e).splitlines()[0]})") from None
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise UserError(f"{p}: expected a mapping of sections")
    return obj


def section(params: Mapping[str, Any], cls: type[T]) -> T:
    """Build the dataclass ``cls`` from ``params[cls.SECTION]``; missing keys keep their
    defaults, unknown keys and values of the wrong type raise UserError."""
    name: str = getattr(cls, "SECTION")  # noqa: B009 - a ClassVar of every section dataclass
    raw = params.get(name) or {}
    if not isinstance(raw, Mapping):
        raise UserError(f"params: section {name!r} must be a mapping")
    known = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise UserError(f"params: section {name!r} has unknown keys {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        default = getattr(cls, key)
        try:
            values[key] = type(default)(value)
        except (TypeError, ValueError):
            raise UserError(
                f"params: {name}.{key} = {value!r} is not a {type(default).__name__}"
            ) from None
    return cls(**values)


@dataclass(frozen=True)
class TrainParams:
    """Training (perception train). epochs and sizes are what fits the 30-minute budget of a
    default `dvc repro` on a 2-core CPU."""

    SECTION: ClassVar[str] = "train"
    seed: int = 7
    epochs: int = 5
    batch_size: int = 16
    lr: float = 0.002
    weight_decay: float = 0.0001
    nproc: int = 1  # processes for torchrun (DistributedDataParallel)
    loader_workers: int = 0
    max_frames: int = 0  # 0 = every training frame
    precision: str = "auto"  # auto | fp32 | bf16 | fp16 (see perception.train.amp_dtype)
    backbone: str = "lite0"  # lite0 (ImageNet EfficientNet-Lite0) | resnet (from scratch)
    freeze_blocks: int = 4  # lite0: stem and this many blocks keep their ImageNet weights
    det_stride: int = 4  # obstacle heads' cell: 4 (small far objects) or 8 (net.NetConfig)
    stream: bool = False  # read frames from disk in the loader's workers (flat memory)
    lane_cells: int = 32  # lane column cells (net.NetConfig): fewer = a smaller last layer
    ema_decay: float = 0.0  # > 0: validate and ship an exponential moving average of the weights

    def __post_init__(self) -> None:
        if self.det_stride not in (4, 8):
            raise UserError(f"params: train.det_stride = {self.det_stride}: 4 or 8")
        if not 2 <= self.lane_cells <= 1000:
            raise UserError(f"params: train.lane_cells = {self.lane_cells}: 2 to 1000")
        if not 0.0 <= self.ema_decay < 1.0:
            raise UserError(f"params: train.ema_decay = {self.ema_decay}: 0 (off) to below 1")


SECTIONS = (*SECTIONS, TrainParams)


@dataclass(frozen=True)
class EvaluateParams:
    """Evaluation (perception evaluate); command-line flags override split and max_frames."""

    SECTION: ClassVar[str] = "evaluate"
    split: str = "test"
    max_frames: int = 0  # 0 = every frame of the split
    culane_scale: float = 0.5  # CULane F1 masks drawn at this fraction of the image size
    culane_width: int = 30  # CULane lane width, pixels at full resolution
    distance_max_m: float = 50.0  # distance error over gt obstacles up to this far, metres
    ap_score_threshold: float = 0.05  # detections ranked for AP down to this score
    min_box_height_px: float = 12.0  # smaller gt boxes (at 720 rows) are "don't care"
    max_occlusion: float = 0.8  # more occluded gt objects are "don't care"


SECTIONS = (*SECTIONS, EvaluateParams)


@dataclass(frozen=True)
class MonitorParams(MonitorConfig):
    """The monitor (params.yaml `monitor`): the run-time thresholds of
    serving.monitor_profile.MonitorConfig, which travel inside the profile, plus what only
    the perception side uses: how `perception monitor-profile` builds the profile and how
    `perception monitor` judges a whole run (FIELD-NOTES' common drift thresholds)."""

    SECTION: ClassVar[str] = "monitor"
    profile_frames: int = 2000  # training frames the profile is built from (0 = all)
    tail: float = 0.005  # the training range spans these quantiles (0.5 % to 99.5 %) ...
    margin: float = 0.15  # ... widened on each side by this share of its width
    bins: int = 10  # quantile bins inside the training range (PSI, KS)
    psi_moderate: float = 0.1  # run-level PSI: 0.1-0.2 moderate drift
    psi_significant: float = 0.2  # ... above: significant
    ks_pvalue: float = 0.05  # run-level KS test against the profile: drift below this p
    # run-level Wasserstein over the profile's std: drift above. Not Evidently's 0.1: that is
    # the sampling noise of a profile of a few hundred scenes (the simulated test split, in
    # distribution, reached 0.19 against 120 training clips)
    wasserstein: float = 0.25

    def __post_init__(self) -> None:
        try:
            super().__post_init__()
        except ProfileError as e:
            raise UserError(f"params: {e}") from None
        if self.profile_frames < 0 or not 0 < self.tail < 0.5 or self.bins < 1:
            raise UserError("params: monitor.profile_frames >= 0, 0 < tail < 0.5, bins >= 1")


SECTIONS = (*SECTIONS, MonitorParams)


# The loop's behaviour (tracking, lane smoothing, warnings): serving owns the dataclasses, so
# that a deployed loop has them without this module; params.yaml holds the values.
SECTIONS = (*SECTIONS, TrackingConfig, WarningConfig)


def loop_settings(path: str | Path | None) -> Settings:
    """The runtime settings of a params file's `tracking` and `warnings` sections. path None:
    ./params.yaml when there is one, else the defaults (which equal the project's file)."""
    if path is None and not Path("params.yaml").is_file():
        return Settings()
    params = load_params(path or "params.yaml")
    return Settings(section(params, TrackingConfig), section(params, WarningConfig))
