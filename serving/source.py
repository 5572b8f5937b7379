"""What every frame source is: the Frame it yields, the Source base class and its errors.

The sources themselves are serving.io (video file, image folder, dataset clip, and
``open_source`` which picks one) and serving.camera (a live camera); both build on this
module, which imports neither, so the two never import each other.

Timestamps (``Frame.t_ns``, nanoseconds): files use their own timing (video position, clip
timestamps, index / fps for image folders), cameras use time.monotonic_ns() at grab time.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import cv2
import numpy as np

from serving.geometry import Calib


class SourceError(ValueError):
    """Input that cannot be read as frames; the one-line message names the input."""


@dataclass(slots=True)
class Frame:
    """One camera frame.

    index: source frame number (0-based; gaps mean frames dropped by a live source).
    image: uint8 H x W (gray), H x W x 3 (BGR) or H x W x 4 (BGRA), as the source gave it.
    t_ns: capture time in nanoseconds (file timing for files, time.monotonic_ns() at grab for
    cameras). speed_mps: ego speed in m/s from a clip's sensors at t_ns, None when unknown.
    """

    index: int
    image: np.ndarray
    t_ns: int
    speed_mps: float | None = None


class Source:
    """Base class: iterate for Frames; a context manager that closes the source.

    fps: nominal frames per second. size: (width, height) of the first frame, pixels.
    calib: the camera calibration when known (clip or --calib), else None.
    frame_count: frames expected (None when unknown, e.g. a camera). live: True for cameras
    (frames are dropped when the consumer is slow; files never drop).
    ended_early / end_reason: set when the input died before its expected end.
    """

    live: bool = False

    def __init__(self, name: str, fps: float, size: tuple[int, int], calib: Calib | None):
        self.name = name
        self.fps = fps
        self.size = size
        self.calib = _fit_calib(calib, size, name) if calib is not None else None
        self.frame_count: int | None = None
        self.ended_early = False
        self.end_reason: str | None = None

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

    def close(self) -> None:
        """Release the input; iteration after close yields nothing more."""

    def calib_or_default(self) -> Calib:
        """The calibration, or Calib.default for the frame size when none is known."""
        return self.calib if self.calib is not None else Calib.default(*self.size)

    def _end_early(self, reason: str) -> None:
        self.ended_early = True
        self.end_reason = f"{self.name}: {reason}"

    def _same_size(self, img: np.ndarray, name: str | Path) -> np.ndarray:
        """img, or a SourceError when its size is not the first frame's: everything after
        the source (calibration, decode, video) is set up for that one size."""
        if image_size(img) != self.size:
            (w, h), (w0, h0) = image_size(img), self.size
            raise SourceError(f"{name}: frame is {w}x{h}, the first frame was {w0}x{h0}")
        return img

    def __enter__(self) -> Source:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType
    ) -> None:
        self.close()


def _fit_calib(calib: Calib, size: tuple[int, int], name: str) -> Calib:
    """The calibration for frames of `size` (w, h): scaled if only the resolution differs."""
    w, h = size
    if (calib.image_width, calib.image_height) == (w, h):
        return calib
    if abs(calib.image_width * h - calib.image_height * w) > 0.01 * w * h:
        raise SourceError(
            f"{name}: calibration is for {calib.image_width}x{calib.image_height} images, "
            f"frames are {w}x{h} (another aspect ratio)"
        )
    return calib.scaled(w, h)


def image_size(img: np.ndarray) -> tuple[int, int]:
    """(width, height) of an image array, pixels."""
    return int(img.shape[1]), int(img.shape[0])


def open_capture(
    target: str | int, cannot_open: str, no_frame: str
) -> tuple[Any, np.ndarray, float]:
    """(cv2.VideoCapture, its first frame, its frame rate: 30 when it reports none that is
    plausible). SourceError with the message cannot_open or no_frame, capture released."""
    cap = cv2.VideoCapture(target)
    if not cap.isOpened():
        cap.release()
        raise SourceError(cannot_open)
    ok, first = cap.read()
    if not ok or first is None:
        cap.release()
        raise SourceError(no_frame)
    fps = cap.get(cv2.CAP_PROP_FPS)
    return cap, first, fps if math.isfinite(fps) and 0.0 < fps < 1000.0 else 30.0
