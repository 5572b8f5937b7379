"""Result sinks: an annotated video and a JSON-lines log, both safe against crashes.

VideoSink writes into a hidden ``.<stem>.partial<suffix>`` file next to the target and renames
it on close, so a file at the final path is always a finished one. JsonlSink writes every
record as one whole line with a single os.write, so a killed writer leaves only whole lines.
Re-exported by serving.io.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from pathlib import Path
from types import TracebackType
from typing import Any

import cv2
import numpy as np


class SinkError(ValueError):
    """An output that cannot be written; the one-line message names the file."""


class VideoSink:
    """Encode BGR frames to a video file (mp4v fourcc; container from the suffix).

    path: final file name. fps: frames per second. size: (width, height) pixels; every frame
    must have it (nothing is resized). Gray and BGRA frames are converted to BGR.
    """

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int]):
        self.path = Path(path)
        self.partial_path = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")
        self.size = (int(size[0]), int(size[1]))
        self.frames_written = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise SinkError(f"{self.path}: cannot create its folder ({e})") from None
        fourcc = cv2.VideoWriter.fourcc(*"mp4v")
        writer = cv2.VideoWriter(str(self.partial_path), fourcc, float(fps), self.size)
        if not writer.isOpened():
            writer.release()
            with contextlib.suppress(OSError):
                self.partial_path.unlink()
            raise SinkError(f"{self.path}: cannot open a video writer ({size[0]}x{size[1]})")
        self._writer: Any = writer

    def write(self, img: np.ndarray) -> None:
        """Append one uint8 frame: H x W x 3 BGR, H x W gray or H x W x 4 BGRA."""
        if self._writer is None:
            raise SinkError(f"{self.path}: write after close")
        h, w = img.shape[:2]
        if (w, h) != self.size:
            vw, vh = self.size
            raise SinkError(f"{self.path}: frame is {w}x{h}, the video is {vw}x{vh}")
        if img.ndim == 2:
            img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
        elif img.shape[2] == 4:
            img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
        self._writer.write(img)
        self.frames_written += 1

    def close(self, finalise: bool = True) -> None:
        """Finish the file. finalise=True renames it to the final path; False leaves the
        (playable) partial file where it is, for a run that failed."""
        if self._writer is None:
            return
        self._writer.release()
        self._writer = None
        if finalise:
            os.replace(self.partial_path, self.path)

    def __enter__(self) -> VideoSink:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType
    ) -> None:
        # Ctrl-C is the normal way to stop a demo: its video is kept like a finished one.
        self.close(finalise=exc_type is None or issubclass(exc_type, KeyboardInterrupt))


def _plain(obj: Any) -> Any:
    """obj with numpy values made Python ones and non-finite floats made None (JSON null)."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _plain(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


class JsonlSink:
    """Append JSON objects to `path` (truncated at open), one per line.

    Each line goes to the file in one os.write of its full bytes (no user-space buffer), so a
    process killed at any moment leaves only whole lines. NaN / inf are written as null and
    numpy scalars and arrays as numbers and lists.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.lines_written = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd: int | None = os.open(
                self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644
            )
        except OSError as e:
            raise SinkError(f"{self.path}: cannot open for writing ({e.strerror})") from None

    def write(self, obj: Any) -> None:
        """Write one record (a JSON-serialisable object) as one line."""
        if self._fd is None:
            raise SinkError(f"{self.path}: write after close")
        try:
            text = json.dumps(obj, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError):
            text = json.dumps(_plain(obj), separators=(",", ":"), allow_nan=False)
        data = (text + "\n").encode("utf-8")
        n = os.write(self._fd, data)
        if n != len(data):  # only on a full disk or similar; never leave half a line behind
            os.ftruncate(self._fd, os.lseek(self._fd, 0, os.SEEK_END) - n)
            raise SinkError(f"{self.path}: short write ({n} of {len(data)} bytes)")
        self.lines_written += 1

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> JsonlSink:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType
    ) -> None:
        self.close()
