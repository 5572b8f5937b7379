"""A live camera source: a grab thread keeps the newest frame, a slow consumer drops frames.

cv2.VideoCapture is not thread-safe: only the grab thread touches it until close() has
joined that thread. OpenCV releases the GIL inside grab() and retrieve(), so the thread costs
the Python loop nothing while it waits for the camera.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

from serving.geometry import Calib
from serving.source import Frame, Source, image_size, open_capture


class CameraSource(Source):
    """A camera (cv2.VideoCapture(index)) read by a background thread that keeps only the
    newest frame: iteration yields the freshest frame, ``dropped`` counts the frames that a
    slow consumer never saw (their indices are skipped). Iteration ends, with ended_early,
    when the camera fails or sends nothing for `stall_s` seconds."""

    live = True

    def __init__(self, index: int, calib: Calib | None = None, stall_s: float = 2.0):
        name = f"camera {index}"
        cap, probe, fps = open_capture(
            index, f"{name}: cannot open", f"{name}: opened but sends no frame"
        )
        super().__init__(name, fps, image_size(probe), calib)
        self.dropped = 0
        self._stall_ns = round(stall_s * 1e9)
        self._cap: Any = cap
        self._cond = threading.Condition()
        self._latest: Frame | None = None
        self._done = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._grab_loop, name=name, daemon=True)
        self._thread.start()

    def _grab_loop(self) -> None:
        i = 0
        while not self._stop.is_set():
            ok = self._cap.grab()  # OpenCV releases the GIL while it waits for the camera
            t = time.monotonic_ns()
            img = self._cap.retrieve()[1] if ok else None
            with self._cond:
                if img is None:
                    if not self._stop.is_set():
                        self._end_early(f"read failed after {i} frames")
                    self._done = True
                    self._cond.notify_all()
                    return
                self.dropped += self._latest is not None
                self._latest = Frame(i, img, t)
                self._cond.notify_all()
            i += 1

    def __iter__(self) -> Iterator[Frame]:
        while True:
            with self._cond:
                deadline = time.monotonic_ns() + self._stall_ns
                while self._latest is None and not self._done:
                    left = deadline - time.monotonic_ns()
                    if left <= 0:
                        self._end_early(f"no frame for {self._stall_ns / 1e9:.1f} s")
                        return
                    self._cond.wait(left / 1e9)
                if self._latest is None:
                    return
                frame, self._latest = self._latest, None
            yield frame

    def close(self) -> None:
        """Stop the grab thread, then release the camera (VideoCapture is not thread-safe,
        so it is released only once the thread has left grab())."""
        self._stop.set()
        self._thread.join(timeout=2.0)
        with self._cond:
            self._done = True
            self._latest = None
            self._cond.notify_all()
        if self._cap is not None and not self._thread.is_alive():
            self._cap.release()
            self._cap = None
