"""The frame sources of files, and `open_source`, which picks the source for an input.

Sources yield serving.source.Frame objects from a video file, a folder of images or a dataset
clip folder (calib.json, labels.jsonl, sensors.csv, frames/); a camera index opens
serving.camera.CameraSource. Bad input raises serving.source.SourceError with one line that
names the input, also mid-stream (an image that does not decode, a frame of another size than
the first); a video that dies mid-stream ends iteration and sets ``ended_early`` and
``end_reason``. Files are read only when regular and within a size cap, and a clip's frames
only from inside its folder (serving.files). Frames pass through unchanged: any size, gray
(H x W), BGR (H x W x 3) or BGRA (H x W x 4) uint8, the same size for every frame of a source.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from serving.camera import CameraSource
from serving.contract import SENSOR_COLUMNS
from serving.files import (
    MAX_TEXT_BYTES,
    UnsafeFileError,
    loads_finite,
    open_regular_text,
    read_regular,
    resolve_inside,
)
from serving.geometry import Calib
from serving.source import Frame, Source, SourceError, image_size, open_capture

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
SPEED_EXTRAPOLATE_NS = 100_000_000  # clamp sensor speed this far past the first/last sample


def read_image(path: str | Path, flags: int = cv2.IMREAD_UNCHANGED) -> np.ndarray:
    """Decode an image file: a regular file within serving.files' size cap. flags: OpenCV's
    (IMREAD_UNCHANGED: as stored, gray, BGR or BGRA; IMREAD_COLOR: BGR), 16-bit reduced to
    8. SourceError naming the file when it is missing, not a regular file or not an image."""
    try:
        data = read_regular(path)
    except (OSError, UnsafeFileError) as e:  # their messages name the file
        raise SourceError(str(e)) from None
    img = cv2.imdecode(np.frombuffer(data, np.uint8), flags) if data else None
    if img is None or img.size == 0:
        raise SourceError(f"{path}: not a readable image")
    if img.dtype == np.uint16:
        img = np.right_shift(img, 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise SourceError(f"{path}: unsupported pixel type {img.dtype}")
    return img


def calib_from_dict(d: object, name: str | Path) -> Calib:
    """A Calib from a calib.json object, refusing values that would give NaN or nonsense
    downstream (fx of 0, a negative height): ValueError naming the file and the key."""
    if not isinstance(d, dict):
        raise ValueError(f"{name}: expected a JSON object")
    try:
        calib = Calib.from_dict(d)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name}: {e}") from None
    positive = ("image_width", "image_height", "fx", "fy", "camera_height_m")
    for key in (
        "image_width",
        "image_height",
        "fx",
        "fy",
        "cx",
        "cy",
        "camera_height_m",
        "pitch_rad",
        "yaw_rad",
        "roll_rad",
    ):
        v = getattr(calib, key)
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise ValueError(f"{name}: {key}: {v!r} is not a finite number")
        if key in positive and v <= 0:
            raise ValueError(f"{name}: {key}: {v!r}, must be positive")
        if key in ("image_width", "image_height") and v != int(v):
            raise ValueError(f"{name}: {key}: {v!r}, must be a whole number of pixels")
    return calib


def load_calib(path: str | Path) -> Calib:
    """calib_from_dict of a calib.json file; SourceError naming it."""
    try:
        d = loads_finite(read_regular(path, MAX_TEXT_BYTES))
    except (OSError, UnsafeFileError) as e:
        raise SourceError(str(e)) from None
    except ValueError as e:  # JSON and Unicode errors
        raise SourceError(f"{path}: not valid JSON ({e})") from None
    try:
        return calib_from_dict(d, path)
    except ValueError as e:
        raise SourceError(str(e)) from None


class VideoSource(Source):
    """A video file read with cv2.VideoCapture, in the caller's thread, every frame."""

    def __init__(self, path: Path, calib: Calib | None = None):
        cap, first, fps = open_capture(
            str(path),
            f"{path}: cannot open as video (corrupt, truncated or not a video)",
            f"{path}: video has no decodable frame",
        )
        super().__init__(str(path), fps, image_size(first), calib)
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self.frame_count = n if n > 0 else None
        self._cap: Any = cap
        self._first: np.ndarray | None = first
        self._t_first = self._pos_ns(0, -1)

    def _pos_ns(self, index: int, prev_ns: int) -> int:
        """Timestamp of the frame just read. FFmpeg's CAP_PROP_POS_MSEC is that frame's pts
        after read(), but is 0 for some files and streams: fall back to index / fps and keep
        the timestamps strictly increasing."""
        t = round(self._cap.get(cv2.CAP_PROP_POS_MSEC) * 1e6)
        if t <= prev_ns:
            t = prev_ns + round(1e9 / self.fps) if index > 0 else 0
        return t

    def __iter__(self) -> Iterator[Frame]:
        if self._first is None:
            return
        img, self._first = self._first, None
        t, i = self._t_first, 0
        while True:
            yield Frame(i, img, t)
            if self._cap is None:
                return
            try:
                ok, nxt = self._cap.read()
            except cv2.error as e:  # some backends raise on corrupt packets
                ok, nxt = False, None
                self._end_early(f"read failed after {i + 1} frames ({' '.join(str(e).split())})")
            if not ok or nxt is None:
                break
            i += 1
            img, t = nxt, self._pos_ns(i, t)
        expected = self.frame_count
        if not self.ended_early and expected and i + 1 < expected - max(1, expected // 100):
            self._end_early(f"read failed after {i + 1} of {expected} frames")

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        self._first = None


class ImageFolderSource(Source):
    """Sorted *.jpg / *.jpeg / *.png files of a folder at a nominal `fps`, t_ns = index / fps.
    An image that does not decode raises SourceError naming it, when it is reached."""

    def __init__(self, path: Path, fps: float = 20.0, calib: Calib | None = None):
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise SourceError(f"{path}: folder holds no .jpg or .png images")
        first = read_image(files[0])
        super().__init__(str(path), fps, image_size(first), calib)
        self.frame_count = len(files)
        self._files = files
        self._first: np.ndarray | None = first
        self._closed = False

    def __iter__(self) -> Iterator[Frame]:
        for i, p in enumerate(self._files):
            if self._closed:
                return
            img = self._first if i == 0 and self._first is not None else read_image(p)
            self._first = None
            yield Frame(i, self._same_size(img, p), round(i * 1e9 / self.fps))

    def close(self) -> None:
        self._closed = True
        self._first = None


def _read_sensor_speed(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """sensors.csv -> (t_ns int64[N], speed_mps float64[N]) sorted by time; None if absent."""
    if not path.exists():
        return None
    try:
        with open_regular_text(path) as f:
            rows = list(csv.reader(f))
        if not rows or tuple(c.strip() for c in rows[0]) != SENSOR_COLUMNS:
            raise SourceError(f"{path}: header must be {','.join(SENSOR_COLUMNS)}")
        t = np.array([int(r[0]) for r in rows[1:] if r], np.int64)
        v = np.array([float(r[1]) for r in rows[1:] if r], np.float64)
    except (OSError, UnsafeFileError) as e:
        raise SourceError(str(e)) from None
    except (ValueError, IndexError, UnicodeDecodeError) as e:
        if isinstance(e, SourceError):
            raise
        raise SourceError(f"{path}: malformed row ({e})") from None
    if len(t) == 0:
        return None
    order = np.argsort(t, kind="stable")
    return t[order], v[order]


def _read_clip_labels(path: Path) -> list[tuple[int, Path, int]]:
    """labels.jsonl -> [(frame, image path inside the clip folder, timestamp_ns)]."""
    out, n = [], 0
    try:
        with open_regular_text(path) as f:
            for line in f:
                n += 1
                if line.strip():
                    d = loads_finite(line)
                    image = resolve_inside(path.parent, d["image"])
                    out.append((int(d["frame"]), image, int(d["timestamp_ns"])))
    except (KeyError, TypeError, ValueError, OSError) as e:  # JSON and Unicode errors too
        if n == 0:
            raise SourceError(str(e)) from None
        raise SourceError(f"{path}: line {n}: malformed label ({e})") from None
    if not out:
        raise SourceError(f"{path}: no frames listed")
    return out


class ClipSource(Source):
    """A dataset clip folder: frames from labels.jsonl (image, timestamp_ns), calibration
    from calib.json, speed interpolated from sensors.csv at each frame's timestamp."""

    def __init__(self, path: Path, calib: Calib | None = None):
        self.path = path
        self._items = _read_clip_labels(path / "labels.jsonl")
        if calib is None:
            calib = load_calib(path / "calib.json")
        first = read_image(self._items[0][1])
        super().__init__(str(path), self._clip_fps(), image_size(first), calib)
        self.frame_count = len(self._items)
        self._speed = _read_sensor_speed(path / "sensors.csv")
        self._first: np.ndarray | None = first
        self._closed = False

    def _clip_fps(self) -> float:
        try:
            fps = float(loads_finite(read_regular(self.path / "meta.json", MAX_TEXT_BYTES))["fps"])
            if math.isfinite(fps) and fps > 0:
                return fps
        except (OSError, ValueError, KeyError, TypeError):
            pass
        ts = np.array([t for _, _, t in self._items], np.float64)
        dt = np.diff(ts)
        return float(1e9 / np.median(dt)) if len(dt) and np.median(dt) > 0 else 20.0

    def speed_at(self, t_ns: int) -> float | None:
        """Ego speed in m/s at t_ns, linear between sensor samples; None outside them."""
        if self._speed is None:
            return None
        t, v = self._speed
        if not t[0] - SPEED_EXTRAPOLATE_NS <= t_ns <= t[-1] + SPEED_EXTRAPOLATE_NS:
            return None
        return float(np.interp(float(t_ns), t.astype(np.float64), v))

    def __iter__(self) -> Iterator[Frame]:
        for i, (index, image, t_ns) in enumerate(self._items):
            if self._closed:
                return
            img = self._first if i == 0 and self._first is not None else None
            self._first = None
            if img is None:
                img = read_image(image)
            yield Frame(index, self._same_size(img, image), t_ns, self.speed_at(t_ns))

    def close(self) -> None:
        self._closed = True
        self._first = None


def open_source(spec: str, calib_path: str | None = None, *, fps: float = 20.0) -> Source:
    """Open `spec`: an integer -> camera index; a folder with calib.json and labels.jsonl ->
    dataset clip; another folder -> image folder at `fps` frames/s; a file -> video.

    calib_path: a calib.json that overrides the clip's calibration or sets one for other
    inputs (scaled to the frame size when only the resolution differs). Without either,
    ``source.calib`` is None and the caller picks (e.g. ``source.calib_or_default()``).
    """
    calib = None
    if calib_path is not None:
        calib = load_calib(calib_path)
    if spec.strip().isdigit():
        return CameraSource(int(spec), calib)
    path = Path(spec)
    if path.is_dir():
        if (path / "calib.json").is_file() and (path / "labels.jsonl").is_file():
            return ClipSource(path, calib)
        return ImageFolderSource(path, fps, calib)
    if path.exists():  # a file, or a device node such as /dev/video0 (read as a file: not live)
        return VideoSource(path, calib)
    raise SourceError(f"{spec}: no such file or folder")
