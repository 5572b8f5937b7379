"""Result sinks: an annotated video and a JSON-lines log, both safe against crashes.

Both write into a hidden ``.<stem>.partial<suffix>`` file next to the target and rename it on
a successful close, so a file at the final path is always a finished one; a failed run leaves
its output under the partial name. JsonlSink writes every record as one whole line with a
single os.write, so a killed writer leaves only whole lines. ``check_outputs`` refuses, before
anything is opened, an output that would replace an input or a file nobody asked to replace.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import cv2
import numpy as np

from serving.files import dumps_strict


class SinkError(ValueError):
    """An output that cannot be written; the one-line message names the file."""


def partial_path(path: Path) -> Path:
    """Where an output is written until it is complete: ``.<stem>.partial<suffix>``."""
    return path.with_name(f".{path.stem}.partial{path.suffix}")


def _same_file(a: Path, b: Path) -> bool:
    """Same path once links are resolved, or the same inode (a hard link)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_outputs(
    outputs: Sequence[str | Path], inputs: Sequence[str | Path], overwrite: bool = False
) -> None:
    """Refuse, with a SinkError naming the output, an output that is one of the inputs (same
    path or same inode) or lies inside an input folder, two outputs that are one file, and
    an existing file at an output path unless overwrite (never a folder, FIFO or device)."""
    ins = [Path(p) for p in inputs if Path(p).exists()]
    seen: list[Path] = []
    for out in map(Path, outputs):
        for inp in ins:
            if _same_file(out, inp):
                raise SinkError(f"{out}: is the input {inp}; choose another output")
            if inp.is_dir() and inp.resolve() in out.resolve().parents:
                raise SinkError(f"{out}: inside the input folder {inp}; write elsewhere")
        if any(_same_file(out, other) for other in seen):
            raise SinkError(f"{out}: given for two outputs")
        if out.exists() or out.is_symlink():
            if not out.is_file():
                raise SinkError(f"{out}: exists and is not a regular file")
            if not overwrite:
                raise SinkError(f"{out}: already exists (--overwrite replaces it)")
        seen.append(out)


def _fresh(path: Path) -> None:
    """Remove what a previous run left at a partial path (a file or link, never followed)."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


class VideoSink:
    """Encode BGR frames to a video file (mp4v fourcc; container from the suffix).

    path: final file name. fps: frames per second. size: (width, height) pixels; every frame
    must have it (nothing is resized). Gray and BGRA frames are converted to BGR.
    """

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int]):
        self.path = Path(path)
        self.partial_path = partial_path(self.path)
        self.size = (int(size[0]), int(size[1]))
        self.frames_written = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _fresh(self.partial_path)
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


class JsonlSink:
    """Write JSON objects to `path`, one per line, through the partial file.

    Each line goes to the file in one os.write of its full bytes (no user-space buffer), so a
    process killed at any moment leaves only whole lines. NaN / inf are written as null and
    numpy scalars and arrays as numbers and lists.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.partial_path = partial_path(self.path)
        self.lines_written = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _fresh(self.partial_path)
            self._fd: int | None = os.open(
                self.partial_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644
            )
        except OSError as e:
            raise SinkError(f"{self.path}: cannot open for writing ({e.strerror})") from None

    def write(self, obj: Any) -> None:
        """Write one record (a JSON-serialisable object) as one line."""
        if self._fd is None:
            raise SinkError(f"{self.path}: write after close")
        data = (dumps_strict(obj, separators=(",", ":")) + "\n").encode("utf-8")
        n = os.write(self._fd, data)
        if n != len(data):  # only on a full disk or similar; never leave half a line behind
            os.ftruncate(self._fd, os.lseek(self._fd, 0, os.SEEK_END) - n)
            raise SinkError(f"{self.path}: short write ({n} of {len(data)} bytes)")
        self.lines_written += 1

    def close(self, finalise: bool = True) -> None:
        """finalise=True renames the file to the final path; False leaves it under the
        partial name, for a run that failed."""
        if self._fd is None:
            return
        os.close(self._fd)
        self._fd = None
        if finalise:
            os.replace(self.partial_path, self.path)

    def __enter__(self) -> JsonlSink:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType
    ) -> None:
        self.close(finalise=exc_type is None or issubclass(exc_type, KeyboardInterrupt))
