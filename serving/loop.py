"""The real-time loop: capture thread -> inference -> output, with per-frame timing.

Two modes:

* offline: every frame, in order, as fast as possible (a bounded queue: capture waits for
  inference, nothing is dropped). For files and benchmarks.
* paced: the source is consumed at its frame rate (a camera, or a file paced as if it were
  one). The queue holds only the newest frame: when inference is slower than the camera the
  oldest frame is dropped and counted, so the loop never falls behind; a frame whose result
  comes out more than one frame period after capture is a deadline miss.

Every stage of every frame is timed with time.perf_counter_ns: decode (in the capture
thread), pre, infer, post, track, draw, write; latency is output time minus capture time on
the same monotonic clock. In offline mode the time a frame waits in the queue is not latency
(a file does not age): its latency starts when its decode started.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

STAGES = ("decode", "pre", "infer", "post", "track", "draw", "write")


class FrameLike(Protocol):
    index: int
    image: np.ndarray
    t_ns: int


@dataclass
class Captured:
    frame: Any  # the source's Frame
    t_capture_ns: int  # time.monotonic_ns() when the frame was available
    decode_ns: int  # time spent reading/decoding it


@dataclass
class Timings:
    """Per-frame stage times (ms) and latencies, appended as the loop runs."""

    stages: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})
    latency_ms: list[float] = field(default_factory=list)
    frames: int = 0
    dropped: int = 0
    deadline_misses: int = 0
    wall_s: float = 0.0

    def add(self, stage_ns: dict[str, int], latency_ns: int) -> None:
        for s in STAGES:
            self.stages[s].append(stage_ns.get(s, 0) / 1e6)
        self.latency_ms.append(latency_ns / 1e6)
        self.frames += 1

    def summary(self) -> dict[str, Any]:
        def pct(v: list[float]) -> dict[str, float]:
            a = np.asarray(v) if v else np.zeros(1)
            return {
                "p50": float(np.percentile(a, 50)),
                "p99": float(np.percentile(a, 99)),
                "mean": float(a.mean()),
                "max": float(a.max()),
            }

        return {
            "frames": self.frames,
            "dropped": self.dropped,
            "deadline_misses": self.deadline_misses,
            "fps": self.frames / self.wall_s if self.wall_s > 0 else 0.0,
            "latency_ms": pct(self.latency_ms),
            "stages_ms": {s: pct(v) for s, v in self.stages.items()},
        }


class _NewestOnly:
    """A one-slot mailbox: put() replaces an unread frame (counting the drop)."""

    def __init__(self) -> None:
        self._item: Captured | None = None
        self._cv = threading.Condition()
        self.dropped = 0
        self.closed = False

    def put(self, item: Captured | None) -> None:
        with self._cv:
            if self._item is not None and item is not None:
                self.dropped += 1
            if item is None:
                self.closed = True
            else:
                self._item = item
            self._cv.notify()

    def get(self) -> Captured | None:
        with self._cv:
            while self._item is None and not self.closed:
                self._cv.wait()
            item, self._item = self._item, None
            return item


def _capture(
    frames: Iterable[Any],
    out: Callable[[Captured | None], None],
    pace_fps: float,
    stop: threading.Event,
    failed: list[Exception],
) -> None:
    """Reads frames (timing the read) and hands them on; paces at pace_fps when > 0. An
    error from the source ends the capture and is left in `failed` for the loop to raise."""
    it: Iterator[Any] = iter(frames)
    start = time.monotonic_ns()
    n = 0
    try:
        while not stop.is_set():
            t0 = time.perf_counter_ns()
            try:
                frame = next(it, None)
            except Exception as e:  # raised again in the loop's thread, after the frames before
                failed.append(e)
                break
            decode = time.perf_counter_ns() - t0
            if frame is None:
                break
            if pace_fps > 0:  # a file played as a camera: frame n is available at n / fps
                due = start + int(n * 1e9 / pace_fps)
                delay = due - time.monotonic_ns()
                if delay > 0:
                    time.sleep(delay / 1e9)
            n += 1
            out(Captured(frame, time.monotonic_ns(), decode))
    finally:
        out(None)


class Processor(Protocol):
    """Everything done to one frame after capture; fills stage_ns as it goes."""

    def __call__(self, frame: Any, stage_ns: dict[str, int]) -> Any: ...


def run(
    frames: Iterable[Any],
    process: Processor,
    emit: Callable[[Captured, Any, dict[str, int]], None],
    *,
    paced_fps: float = 0.0,
    live: bool = False,
    max_frames: int | None = None,
    on_frame: Callable[[Timings], None] | None = None,
) -> Timings:
    """Run the loop until the source ends (or max_frames).

    process(frame, stage_ns) -> result runs the model side; emit(captured, result, stage_ns)
    draws and writes, adding its own stage times (captured.t_capture_ns gives the latency so
    far). paced_fps > 0: a file played at that rate as if it were a camera; live: a real
    camera (paced by its own clock). Either selects the paced mode: newest frame only, drops
    and deadline misses (a result later than one frame period after capture) counted.

    An exception raised by the source mid-stream is raised here once the frames read before
    it have been processed (unless max_frames was reached first)."""
    t = Timings()
    stop = threading.Event()
    failed: list[Exception] = []
    paced = paced_fps > 0 or live
    box = _NewestOnly()
    q: queue.Queue[Captured | None] = queue.Queue(maxsize=4)
    put, get = (box.put, box.get) if paced else (q.put, q.get)
    period_ns = int(1e9 / paced_fps) if paced_fps > 0 else 0
    thread = threading.Thread(
        target=_capture, args=(frames, put, paced_fps, stop, failed), name="capture", daemon=True
    )
    start = time.perf_counter()
    thread.start()
    try:
        while max_frames is None or t.frames < max_frames:
            item = get()
            if item is None:
                break
            if not paced:  # a file does not age in the queue: latency starts at its decode
                item.t_capture_ns = time.monotonic_ns() - item.decode_ns
            stage_ns = {"decode": item.decode_ns}
            result = process(item.frame, stage_ns)
            emit(item, result, stage_ns)
            latency = time.monotonic_ns() - item.t_capture_ns
            t.add(stage_ns, latency)
            if period_ns and latency > period_ns:
                t.deadline_misses += 1
            if on_frame is not None:
                on_frame(t)
    finally:
        stop.set()
        while not paced and thread.is_alive():  # unblock a capture waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(0.01)
        thread.join(timeout=2.0)
        t.wall_s = time.perf_counter() - start
        t.dropped = box.dropped
    if failed and (max_frames is None or t.frames < max_frames):
        raise failed[0]
    return t
