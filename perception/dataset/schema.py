"""The on-disk dataset format (schema version 1): one folder per clip.

    <root>/manifest.json             schema version, source, generator, seed, clip list, counts
    <root>/clips/<clip_id>/
        calib.json                   serving.geometry.Calib fields + schema_version
        meta.json                    clip id, source, fps, frame count, h_samples, scenario tags
        labels.jsonl                 one FrameLabel per line, in frame order
        sensors.csv                  t_ns,speed_mps,yaw_rate_rps,accel_mps2,steering_rad
        frames/000000.jpg ...        camera frames, named by frame index

Conventions (also in the README): boxes are x1 y1 x2 y2 in pixels, clipped to the image;
lane points are (u, v) pixels ordered bottom to top (v strictly decreasing); ``x_at_h`` is
TuSimple's x per ``h_samples`` row with -2 where the lane has no point; 3D quantities are in
the ego frame of serving.geometry (x forward, y left, z up, metres). Timestamps are
nanoseconds of a monotonic clock shared by the camera and the sensors.

Why one folder per clip: splits happen by clip so that no scene leaks from train to test, a
clip is the unit that generation writes atomically, and a user's own recording maps onto it.

Reading is defensive: every file is read only when it is a regular file within a size cap,
JSON only when strict (no NaN, Infinity or 1e400), and every path named by a file (a clip id
in the manifest, a frame's image) only when it stays inside its folder (serving.files). Each
refusal is a FormatError naming the file and the line or key.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from perception.dataset.json_types import check_types, json_list
from serving.contract import CLASS_NAMES, LANE_SLOTS, SENSOR_COLUMNS
from serving.files import (
    MAX_TEXT_BYTES,
    UnsafeFileError,
    atomic_write_json,
    atomic_write_text,
    loads_finite,
    open_regular_text,
    read_regular,
    resolve_inside,
)
from serving.geometry import Calib
from serving.io import calib_from_dict

SCHEMA_VERSION = 1
TAG_KEYS = ("time_of_day", "weather", "road", "traffic", "kind")


class FormatError(ValueError):
    """A dataset file that does not follow the schema; the message names file and field."""


@dataclass
class Lane:
    slot: str  # one of serving.contract.LANE_SLOTS
    points: list[list[float]]  # (u, v) pixels, bottom to top
    x_at_h: list[float]  # TuSimple x per h_samples row, -2 = no point
    style: str = "solid"  # solid | dashed | double | none (unknown / not painted)
    color: str = "white"
    points_3d: list[list[float]] | None = None  # ego frame metres, one per point (sim only)


@dataclass
class Obstacle:
    track_id: int
    cls: str  # one of serving.contract.CLASS_NAMES
    box: list[float]  # x1 y1 x2 y2 pixels, clipped to the image
    position_m: list[float] | None = None  # bottom-face centre, ego frame
    dims_m: list[float] | None = None  # length, width, height
    yaw_rad: float = 0.0  # heading relative to ego x, positive to the left
    distance_m: float | None = None  # forward distance to the object's nearest point
    rel_velocity_mps: list[float] | None = None  # (vx, vy) relative to ego, ego frame
    occlusion: float = 0.0  # fraction of the object hidden by nearer objects
    truncation: float = 0.0  # fraction of the object outside the image


def _known(cls: type, d: dict) -> dict:
    """The keys of d that cls has: files from a newer minor version still load; a missing
    required key still fails."""
    names = cls.__dataclass_fields__  # type: ignore[attr-defined]
    return {k: v for k, v in d.items() if k in names}


@dataclass
class FrameLabel:
    frame: int
    image: str  # path relative to the clip folder
    timestamp_ns: int
    lanes: list[Lane] = field(default_factory=list)
    obstacles: list[Obstacle] = field(default_factory=list)

    def to_json(self) -> str:
        # vars() instead of dataclasses.asdict: no deep copy, this runs for every frame
        lanes = [{k: v for k, v in vars(lane).items() if v is not None} for lane in self.lanes]
        d = {
            "frame": self.frame,
            "image": self.image,
            "timestamp_ns": self.timestamp_ns,
            "lanes": lanes,
            "obstacles": [vars(o) for o in self.obstacles],
        }
        return json.dumps(d, separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_dict(cls, d: dict) -> FrameLabel:
        """A label from its JSON object; TypeError / KeyError naming the field when a field is
        missing or of another JSON type than the schema's."""
        check_types(d, cls, "")
        lanes = [check_types(x, Lane, f"lanes[{i}]") for i, x in enumerate(json_list(d, "lanes"))]
        obstacles = [
            check_types(x, Obstacle, f"obstacles[{i}]")
            for i, x in enumerate(json_list(d, "obstacles"))
        ]
        return cls(
            frame=d["frame"],
            image=d["image"],
            timestamp_ns=d["timestamp_ns"],
            lanes=[Lane(**_known(Lane, lane)) for lane in lanes],
            obstacles=[Obstacle(**_known(Obstacle, o)) for o in obstacles],
        )


@dataclass
class ClipMeta:
    clip_id: str
    source: str  # "sim", "tusimple", "bdd100k", ...
    fps: float
    num_frames: int
    h_samples: list[int]
    tags: dict[str, str] = field(default_factory=dict)  # TAG_KEYS -> value
    events: list[str] = field(default_factory=list)  # cut_in, lead_brake, ...
    sensors: str = "can"  # what sensors.csv holds: "can" (recorded), "sim", "none" (zeros)
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def from_dict(cls, d: dict) -> ClipMeta:
        """TypeError naming the field when one is missing or of another JSON type."""
        return cls(**_known(cls, check_types(d, cls, "")))


def read_json(path: Path, max_bytes: int = MAX_TEXT_BYTES) -> Any:
    """A strict JSON file (serving.files.loads_finite) that is a regular file of at most
    max_bytes; FormatError naming it otherwise."""
    try:
        return loads_finite(read_regular(path, max_bytes))
    except (OSError, UnsafeFileError) as e:  # their messages name the file
        raise FormatError(str(e)) from None
    except ValueError as e:  # JSON and Unicode errors, NaN, Infinity
        raise FormatError(f"{path}: not valid JSON ({e})") from None


def _read_json(path: Path) -> dict:
    obj = read_json(path)
    if not isinstance(obj, dict):
        raise FormatError(f"{path}: expected a JSON object")
    return obj


def parse_label(line: str, clip_dir: Path) -> FrameLabel:
    """One line of labels.jsonl; ValueError (KeyError, TypeError) saying what is wrong, for the
    caller to prefix with file and line. The image must lie inside clip_dir."""
    label = FrameLabel.from_dict(loads_finite(line))
    resolve_inside(clip_dir, label.image)
    return label


def open_text(path: Path) -> io.TextIOWrapper:
    """A regular text file of the dataset for line-by-line reading; FormatError naming it."""
    try:
        return open_regular_text(path)
    except (OSError, UnsafeFileError) as e:
        raise FormatError(str(e)) from None


class Clip:
    """Read access to one clip folder. Files are read lazily and cached."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._labels: list[FrameLabel] | None = None

    @property
    def clip_id(self) -> str:
        return self.path.name

    @property
    def calib(self) -> Calib:
        p = self.path / "calib.json"
        try:
            return calib_from_dict(_read_json(p), p)
        except ValueError as e:
            raise FormatError(str(e)) from None

    @property
    def meta(self) -> ClipMeta:
        p = self.path / "meta.json"
        try:
            return ClipMeta.from_dict(_read_json(p))
        except TypeError as e:
            raise FormatError(f"{p}: {e}") from None

    @property
    def labels(self) -> list[FrameLabel]:
        if self._labels is None:
            self._labels = list(self.iter_labels())
        return self._labels

    def iter_labels(self) -> Iterator[FrameLabel]:
        for n, label in self.label_lines():
            if isinstance(label, str):
                raise FormatError(f"{self.path / 'labels.jsonl'}: line {n}: {label}")
            yield label

    def label_lines(self) -> Iterator[tuple[int, FrameLabel | str]]:
        """(line number, label) for each non-empty line of labels.jsonl, the label replaced
        by what is wrong with it ("malformed label (...)") when it does not parse. FormatError
        when the file itself cannot be read (missing, not a regular file, too large)."""
        with open_text(self.path / "labels.jsonl") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    yield n, parse_label(line, self.path)
                except (KeyError, TypeError, ValueError) as e:  # JSON errors are ValueErrors
                    why = f"missing field {e.args[0]!r}" if isinstance(e, KeyError) else str(e)
                    yield n, f"malformed label ({why})"

    def sensors(self) -> np.ndarray:
        """Structured array with SENSOR_COLUMNS; t_ns int64, the rest float64."""
        p = self.path / "sensors.csv"
        dtype = [("t_ns", np.int64)] + [(c, np.float64) for c in SENSOR_COLUMNS[1:]]
        with open_text(p) as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None or tuple(header) != SENSOR_COLUMNS:
                raise FormatError(f"{p}: header must be {','.join(SENSOR_COLUMNS)}")
            rows = []
            for n, row in enumerate(reader, 2):
                try:
                    rows.append((int(row[0]), *map(float, row[1:5])))
                except (ValueError, IndexError):
                    raise FormatError(f"{p}: line {n}: malformed row") from None
                except UnicodeDecodeError:
                    raise FormatError(f"{p}: line {n}: not UTF-8 text") from None
        return np.array(rows, dtype=dtype)

    def frame_path(self, label: FrameLabel) -> Path:
        """The label's image inside the clip folder (checked again here: a link may have
        changed since the labels were read); FormatError naming labels.jsonl otherwise."""
        try:
            return resolve_inside(self.path, label.image)
        except UnsafeFileError as e:
            raise FormatError(
                f"{self.path / 'labels.jsonl'}: frame {label.frame}: image {e}"
            ) from None


class Dataset:
    """A dataset root: manifest.json plus clips/<clip_id>/."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @property
    def manifest(self) -> dict:
        m = _read_json(self.root / "manifest.json")
        if m.get("schema_version") != SCHEMA_VERSION:
            raise FormatError(
                f"{self.root / 'manifest.json'}: schema_version "
                f"{m.get('schema_version')!r}, this reader knows {SCHEMA_VERSION}"
            )
        return m

    def clip_ids(self) -> list[str]:
        path = self.root / "manifest.json"
        entries = self.manifest.get("clips")
        if not isinstance(entries, list) or not all(
            isinstance(c, dict) and isinstance(c.get("clip_id"), str) for c in entries
        ):
            raise FormatError(f"{path}: clips: expected a list of objects with a clip_id string")
        return [c["clip_id"] for c in entries]

    def clip(self, clip_id: str) -> Clip:
        """The clip folder clips/<clip_id>; FormatError naming the manifest when clip_id is not
        a plain folder name inside clips/ ('../x', 'a/b', an absolute path, a link out)."""
        bad = not isinstance(clip_id, str) or clip_id in ("", ".", "..") or "/" in clip_id
        try:
            if bad or "\\" in clip_id:
                raise UnsafeFileError("is not a folder name")
            return Clip(resolve_inside(self.root / "clips", clip_id))
        except UnsafeFileError as e:
            raise FormatError(f"{self.root / 'manifest.json'}: clip_id {clip_id!r}: {e}") from None

    def clips(self) -> list[Clip]:
        return [self.clip(c) for c in self.clip_ids()]


def sensors_to_csv(rows: np.ndarray) -> str:
    """rows: float64[N, 5] in SENSOR_COLUMNS order (t_ns as a whole number)."""
    buf = io.StringIO()
    buf.write(",".join(SENSOR_COLUMNS) + "\n")
    for r in rows:
        buf.write(f"{int(r[0])},{r[1]:.4f},{r[2]:.5f},{r[3]:.4f},{r[4]:.5f}\n")
    return buf.getvalue()


class ClipWriter:
    """Writes a clip into a hidden temporary folder and renames it into place on close(), so a
    crash never leaves a clip that looks complete."""

    def __init__(self, clips_dir: str | Path, clip_id: str):
        self.final = Path(clips_dir) / clip_id
        self.tmp = Path(clips_dir) / f".{clip_id}.tmp-{os.getpid()}"
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        (self.tmp / "frames").mkdir(parents=True)
        self._labels = (self.tmp / "labels.jsonl").open("w")

    def write_frame(self, label: FrameLabel, encoded_image: bytes | None = None) -> None:
        try:
            line = label.to_json()
        except ValueError:  # NaN or Infinity: strict JSON readers refuse the file
            raise FormatError(
                f"{self.final / 'labels.jsonl'}: frame {label.frame}: a label holds NaN or Infinity"
            ) from None
        if encoded_image is not None:
            (self.tmp / label.image).write_bytes(encoded_image)
        self._labels.write(line + "\n")

    def close(self, calib: Calib, meta: ClipMeta, sensors: np.ndarray) -> Path:
        self._labels.close()
        atomic_write_json(
            self.tmp / "calib.json", {"schema_version": SCHEMA_VERSION, **calib.to_dict()}
        )
        atomic_write_json(self.tmp / "meta.json", asdict(meta))
        atomic_write_text(self.tmp / "sensors.csv", sensors_to_csv(sensors))
        if self.final.exists():
            shutil.rmtree(self.final)
        os.replace(self.tmp, self.final)
        return self.final

    def abort(self) -> None:
        self._labels.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def write_manifest(root: str | Path, source: str, clips: list[dict], **extra: object) -> None:
    """clips: one dict per clip with at least clip_id and num_frames, in a stable order."""
    atomic_write_json(
        Path(root) / "manifest.json",
        {
            "schema_version": SCHEMA_VERSION,
            "source": source,
            **extra,
            "num_clips": len(clips),
            "num_frames": int(sum(c["num_frames"] for c in clips)),
            "classes": list(CLASS_NAMES),
            "lane_slots": list(LANE_SLOTS),
            "clips": clips,
        },
    )
