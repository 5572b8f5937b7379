"""The loop's behaviour settings: tracking, lane smoothing and driver warnings.

Each class is one section of params.yaml (``SECTION``): `perception demo` and `perception
bench` read them from there (perception.params), a deployed loop may build them itself.
The defaults here are params.yaml's values (a test keeps the two equal), so library code
and tests run without the file. Units are in the field names: metres, seconds, pixels of
the source image, m/s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True)
class TrackingConfig:
    """Obstacle tracks (serving.tracking.Tracker), lane smoothing (LaneSmoother) and the ego
    lane fit (serving.geometry.lane_geometry); see those classes for what each one does."""

    SECTION: ClassVar[str] = "tracking"
    max_missed: int = 5  # frames a track may go undetected before it is deleted
    max_coast_s: float = 1.0  # ... or seconds since its last detection
    iou_gate: float = 0.3  # minimum IoU of a predicted box and a detection to associate
    accel_long_mps2: float = 3.0  # 1-sigma white-noise acceleration, longitudinal
    accel_lat_mps2: float = 1.0  # ... and lateral
    sigma_u_px: float = 2.0  # box-edge noise, horizontal
    sigma_v_px: float = 2.0  # box-edge noise, vertical
    range_rel_err: float = 0.02  # road slope / pitch error as a fraction of range
    init_speed_std_mps: float = 15.0  # velocity prior of a new track (at rest relative to ego)
    lane_alpha: float = 0.5  # weight of the new frame in lane smoothing, (0, 1]
    lane_hold_frames: int = 3  # a lane missing this many frames keeps its last shape
    lane_jump_px: float = 40.0  # a lane that moved more than this on average is taken as is
    lane_fit_range_m: float = 40.0  # lane points up to this far ahead enter the ego lane fit


@dataclass(frozen=True)
class WarningConfig:
    """Forward collision (FCW) and lane departure (LDW) warnings (serving.alerts)."""

    SECTION: ClassVar[str] = "warnings"
    fcw_ttc_s: float = 2.7  # warn below this time to collision
    fcw_min_hits: int = 3  # consecutive detections that confirm a track
    fcw_closing_sigma: float = 1.0  # closing faster than this many sigma of its speed
    fcw_min_speed_mps: float = 2.0  # FCW off below this ego speed (when known)
    # the classes FCW reacts to, by name (the model contract's class_names)
    fcw_classes: tuple[str, ...] = ("car", "truck", "pedestrian", "cyclist")
    ldw_margin_m: float = 0.3  # warn when the nearer ego-lane line is closer than this
    ldw_min_speed_mps: float = 12.5  # LDW off below this ego speed (when known)
    ldw_return_mps: float = 0.1  # no LDW when moving back to the centre faster than this


@dataclass(frozen=True)
class Settings:
    """Everything a runtime's behaviour depends on besides the model and the camera."""

    tracking: TrackingConfig = TrackingConfig()
    warnings: WarningConfig = WarningConfig()
