"""Names shared by the data, the model and the loop.

This module holds the vocabulary that the dataset format and the model contract agree on:
obstacle classes, lane slots, the TuSimple row samples and the sensor log's columns. The
model's tensor layout joins it when the model exists; at run time serving reads all of it
back from the ONNX file.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Generic, NamedTuple, TypeVar

# Obstacle classes, in the order of the detection head's channels and COCO category ids - 1.
CLASS_NAMES: tuple[str, ...] = ("car", "truck", "pedestrian", "cyclist")

# Lane boundary slots relative to the ego vehicle, in the order of the lane head's slots.
LANE_SLOTS: tuple[str, ...] = ("ego_left", "ego_right", "outer_left", "outer_right")

LANE_STYLES: tuple[str, ...] = ("solid", "dashed", "double", "none")
LANE_COLORS: tuple[str, ...] = ("white", "yellow")

# The columns of a clip's sensors.csv, in order: capture time (ns), ego speed (m/s), yaw rate
# (rad/s), longitudinal acceleration (m/s^2), steering angle (rad).
SENSOR_COLUMNS: tuple[str, ...] = (
    "t_ns",
    "speed_mps",
    "yaw_rate_rps",
    "accel_mps2",
    "steering_rad",
)


def tusimple_h_samples(image_height: int = 720) -> list[int]:
    """TuSimple's label rows: 160..710 step 10 on a 720-row image, scaled to other heights."""
    if image_height == 720:
        return list(range(160, 720, 10))
    return [round(r * image_height / 720) for r in range(160, 720, 10)]


# ---------------------------------------------------------------------------------------
# The model contract: input, output layout and decode settings. Training writes it into the
# ONNX file's metadata_props (JSON values); serving reads it back and trusts nothing else.
# ---------------------------------------------------------------------------------------

CONTRACT_VERSION = 1
OPTIONAL_KEYS = ("class_thresholds",)  # added within version 1: absent means the default

Array = TypeVar("Array")  # numpy.ndarray in serving, torch.Tensor in training


class ModelOutputs(NamedTuple, Generic[Array]):
    """The network's outputs by name, in the order the network returns them (and the ONNX
    file lists them). The same tuple comes out of the PyTorch module, serving's Engine and
    every predictor, so that nothing unpacks them by position. Shapes with the batch axis:

    heatmap: float32[B, C, H/s, W/s], per-class centre probability (sigmoid)
    box: float32[B, 4, H/s, W/s], distances from the cell centre to the box edges (BOX_LEFT,
        BOX_TOP, BOX_RIGHT, BOX_BOTTOM), input pixels
    lane_logits: float32[B, L, R, G + 1], per slot and row anchor, logits over G column
        cells + 1 "no lane at this row"
    lane_exist: float32[B, L], probability that the slot's lane exists

    ``image(i)`` gives one image's outputs (batch axis dropped), what the decode takes."""

    heatmap: Array
    box: Array
    lane_logits: Array
    lane_exist: Array

    def image(self, i: int = 0) -> ModelOutputs[Array]:
        """The outputs of image i of the batch, without the batch axis."""
        return ModelOutputs(*(o[i] for o in self))  # type: ignore[index]


# Output tensor names, as in the ONNX file: ModelOutputs' fields.
HEATMAP, BOX, LANE_LOGITS, LANE_EXIST = ModelOutputs._fields
OUTPUT_NAMES: tuple[str, ...] = ModelOutputs._fields
# the four channels of the box output: distances from the cell centre, input pixels
BOX_LEFT, BOX_TOP, BOX_RIGHT, BOX_BOTTOM = range(4)


class ContractError(ValueError):
    """A model file without the contract, or with one this code does not speak."""


@dataclass(frozen=True)
class ModelContract:
    """Everything that training and serving must agree on, in one place."""

    input_name: str = "image"
    input_width: int = 448
    input_height: int = 256
    input_layout: str = "NCHW"  # float32, RGB channel order
    mean: tuple[float, float, float] = (123.7, 116.3, 103.5)  # RGB, 0..255 units
    std: tuple[float, float, float] = (58.4, 57.1, 57.4)
    class_names: tuple[str, ...] = CLASS_NAMES
    lane_slots: tuple[str, ...] = LANE_SLOTS
    # row anchors as fractions of the source image height (TuSimple's 160..710 of 720)
    row_anchors: tuple[float, ...] = tuple(r / 720.0 for r in range(160, 720, 10))
    lane_cells: int = 100  # G: columns cells over the image width
    stride: int = 8  # heatmap cell size, input pixels
    score_threshold: float = 0.3
    # per class, in class_names order: the operating threshold chosen on the validation split
    # (`perception export --operating-points`, best F1 at IoU 0.5); empty: score_threshold
    # for every class. Optional in the metadata (a file without it uses score_threshold).
    class_thresholds: tuple[float, ...] = ()
    nms_iou: float = 0.6
    lane_exist_threshold: float = 0.5
    max_detections: int = 100
    version: int = CONTRACT_VERSION

    def __post_init__(self) -> None:
        """Refuse a contract that would break the loop later (a ZeroDivisionError, NaN
        inputs, an output read with the wrong layout): ContractError naming the key."""
        for key in ("input_width", "input_height", "lane_cells", "stride", "max_detections"):
            _need(key, getattr(self, key), _whole(getattr(self, key)), "a positive whole number")
        for key in ("input_width", "input_height"):
            v = getattr(self, key)
            _need(key, v, v % self.stride == 0, f"a multiple of the stride {self.stride}")
        _need("input_name", self.input_name, _names(self.input_name, 1), "a name")
        _need("input_layout", self.input_layout, self.input_layout == "NCHW", '"NCHW"')
        _need("mean", self.mean, _numbers(self.mean, 3), "3 finite numbers")
        ok = _numbers(self.std, 3) and min(self.std) > 0
        _need("std", self.std, ok, "3 finite numbers above 0")
        for key in ("class_names", "lane_slots"):
            v = getattr(self, key)
            _need(key, v, _names(v), "a list of distinct names")
        ok = _numbers(self.row_anchors) and all(0.0 <= r <= 1.0 for r in self.row_anchors)
        _need("row_anchors", self.row_anchors, ok, "fractions of the image height, 0 to 1")
        for key in ("score_threshold", "nms_iou", "lane_exist_threshold"):
            v = getattr(self, key)
            _need(key, v, _numbers((v,)) and 0.0 <= v <= 1.0, "a number from 0 to 1")
        v = self.class_thresholds
        ok = v == () or (_numbers(v, len(self.class_names)) and all(0.0 <= x <= 1.0 for x in v))
        _need("class_thresholds", v, ok, "empty, or a number from 0 to 1 per class")

    def thresholds(self) -> tuple[float, ...]:
        """The score each class's detections must reach in the loop: class_thresholds when
        set, else score_threshold for every class."""
        return self.class_thresholds or (self.score_threshold,) * len(self.class_names)

    @property
    def grid(self) -> tuple[int, int]:
        """(rows, cols) of the heatmap."""
        return self.input_height // self.stride, self.input_width // self.stride

    @property
    def output_shapes(self) -> ModelOutputs[tuple[int, ...]]:
        """Each output's shape for one image (no batch axis), as the contract makes it."""
        gh, gw = self.grid
        n_l = len(self.lane_slots)
        return ModelOutputs(
            (len(self.class_names), gh, gw),
            (4, gh, gw),
            (n_l, len(self.row_anchors), self.lane_cells + 1),
            (n_l,),
        )

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict; an optional key (OPTIONAL_KEYS) only when it differs from
        its default, so a contract that does not use it writes the same bytes as before."""
        d = asdict(self)
        for f in fields(self):
            if f.name in OPTIONAL_KEYS and getattr(self, f.name) == f.default:
                del d[f.name]
        return d

    def to_metadata(self) -> dict[str, str]:
        """ONNX metadata_props: one JSON value per key, prefixed "contract."."""
        return {f"contract.{k}": json.dumps(v) for k, v in self.to_dict().items()}

    @classmethod
    def from_metadata(cls, meta: dict[str, str], source: str = "model") -> ModelContract:
        """The contract from ONNX metadata_props; ContractError naming source and the key
        when one is missing, not JSON or not a value the loop can run with."""
        if "contract.version" not in meta:
            raise ContractError(f"{source}: no model contract in its metadata")
        values: dict[str, Any] = {}
        for f in fields(cls):
            key = f"contract.{f.name}"
            if key not in meta and f.name in OPTIONAL_KEYS:
                continue
            if key not in meta:
                raise ContractError(f"{source}: contract lacks {f.name}")
            try:
                v = json.loads(meta[key], parse_constant=_no_constant)
            except ValueError as e:
                raise ContractError(f"{source}: {key}: not JSON ({e})") from None
            values[f.name] = tuple(v) if isinstance(v, list) else v
        if values["version"] != CONTRACT_VERSION:
            raise ContractError(
                f"{source}: contract version {values['version']!r}, this code speaks "
                f"{CONTRACT_VERSION}"
            )
        try:
            return cls(**values)
        except ContractError as e:
            raise ContractError(f"{source}: {e}") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _need(key: str, value: object, ok: bool, what: str) -> None:
    if not ok:
        try:
            text = json.dumps(value)
        except (TypeError, ValueError):
            text = repr(value)
        raise ContractError(f"contract.{key}: {text[:60]}, must be {what}")


def _whole(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def _numbers(v: object, n: int | None = None) -> bool:
    """v is a tuple of finite numbers (of length n when given)."""
    return (
        isinstance(v, tuple)
        and (n is None or len(v) == n)
        and len(v) > 0
        and all(isinstance(x, int | float) and not isinstance(x, bool) for x in v)
        and all(math.isfinite(x) for x in v)
    )


def _names(v: object, n: int | None = None) -> bool:
    """v is a non-empty name, or a tuple of distinct ones (n: a single string)."""
    if n == 1:
        return isinstance(v, str) and bool(v)
    return (
        isinstance(v, tuple)
        and len(v) > 0
        and all(isinstance(x, str) and x for x in v)
        and len(set(v)) == len(v)
    )
