"""Plumbing shared by the importers (TuSimple, BDD100K) and the exporters (TuSimple, COCO).

Importers turn a published dataset into our format (perception.dataset.schema): they read
label files, find each labelled image, and write one clip folder per group of frames with
``write_imported_clip``. Published datasets carry no CAN data, so an imported clip's
sensors.csv has one row per frame at the frame's timestamp with speed, yaw rate,
acceleration and steering all 0.0 (the sensor reader takes no NaN); ``ClipMeta.source``
says where the clip came from, and consumers of sensors must skip sources other than "sim"
and real recordings.
"""

from __future__ import annotations

import os
import re
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from perception.dataset.schema import (
    SENSOR_COLUMNS,
    Clip,
    ClipMeta,
    ClipWriter,
    Dataset,
    FormatError,
    FrameLabel,
)
from serving.files import UnsafeFileError, resolve_inside
from serving.geometry import Calib
from serving.io import read_image
from serving.source import SourceError

FRAME_NAME = "frames/{index:06d}{suffix}"


@dataclass
class ImportReport:
    """What an importer wrote and what it left out (reason -> count)."""

    out: Path
    clips: int = 0
    frames: int = 0
    dropped: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        return f"imported {self.clips} clips, {self.frames} frames into {self.out}"

    def warnings(self) -> list[str]:
        return [f"dropped {n} {reason}" for reason, n in sorted(self.dropped.items()) if n]


@dataclass
class SourceFrame:
    """One labelled frame on its way into a clip: its label (frame index, image path inside
    the clip, timestamp) and the published image it comes from."""

    label: FrameLabel
    source_image: Path


def safe_id(text: str) -> str:
    """A clip id usable as a folder name: runs of characters other than letters, digits, '_',
    '.' and '-' become '-', and leading/trailing '-' and '.' go."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.")


def frame_image_name(index: int, source: Path) -> str:
    """The image path inside a clip folder for frame ``index``, keeping the source suffix."""
    return FRAME_NAME.format(index=index, suffix=source.suffix.lower() or ".jpg")


def inside_root(root: Path, name: str, origin: str) -> Path:
    """root / name, refused with a FormatError naming ``origin`` (label file, line, field)
    when name leaves root: an absolute path, '..' or a link out (serving.files)."""
    try:
        return resolve_inside(root, name)
    except UnsafeFileError as e:
        raise FormatError(f"{origin}: {e}") from None


def read_image_size(path: Path, origin: str) -> tuple[int, int]:
    """(width, height) in pixels of the image at path, decoded with OpenCV: a regular file
    within serving.files' size cap. ``origin`` names the label file (and line) that refers to
    the image, for the error message."""
    if not path.exists():
        raise FormatError(f"{origin}: image {path} not found")
    try:
        img = read_image(path)
    except SourceError as e:
        raise FormatError(f"{origin}: image {e}") from None
    height, width = img.shape[:2]
    return int(width), int(height)


def link_or_copy(src: Path, dst: Path, link: bool = True) -> None:
    """Hard-link src to dst (no extra disk space) or copy when linking is impossible (another
    file system, no link support) or not wanted. Hard-linked images share their bytes with the
    published copy: neither must be edited in place."""
    if link:
        try:
            os.link(src, dst)
            return
        except OSError:
            pass
    shutil.copyfile(src, dst)


def zero_sensors(timestamps_ns: list[int]) -> np.ndarray:
    """float64[N, 5] sensor rows in SENSOR_COLUMNS order: the frame timestamps and zeros (the
    published datasets have no CAN data)."""
    rows = np.zeros((len(timestamps_ns), len(SENSOR_COLUMNS)), dtype=np.float64)
    rows[:, 0] = timestamps_ns
    return rows


def write_imported_clip(
    clips_dir: Path,
    frames: list[SourceFrame],
    calib: Calib,
    meta: ClipMeta,
    link: bool = True,
) -> Path:
    """Write one clip folder atomically: the images (hard-linked or copied to the label's
    image path), labels.jsonl, calib.json, meta.json and a zero sensors.csv."""
    writer = ClipWriter(clips_dir, meta.clip_id)
    try:
        for frame in frames:
            link_or_copy(frame.source_image, writer.tmp / frame.label.image, link)
            writer.write_frame(frame.label)
        sensors = zero_sensors([f.label.timestamp_ns for f in frames])
        return writer.close(calib, meta, sensors)
    except BaseException:
        writer.abort()
        raise


def select_clips(dataset: Dataset, clip_ids: list[str] | None) -> list[Clip]:
    """The dataset's clips in manifest order, or the named ones in the given order; an unknown
    id is a ValueError naming the manifest."""
    if clip_ids is None:
        return dataset.clips()
    known = set(dataset.clip_ids())
    unknown = [c for c in clip_ids if c not in known]
    if unknown:
        raise ValueError(f"{dataset.root / 'manifest.json'}: no clip {', '.join(unknown)}")
    return [dataset.clip(c) for c in clip_ids]
