"""The real-time loop: capture thread -> inference -> output, with per-frame timing.

Two modes:

* offline: every frame, in order, as fast as possible (a bounded queue: capture waits for
  inference, nothing is dropped). For files and benchmarks.
* paced: the source is consumed at its frame rate (a camera, or a file paced as if it were
  one). The queue holds only the newest frame: when inference is slower than the camera the
  oldest frame is dropped and counted, so the loop never falls behind; a frame whose result
  comes out more than one frame period after capture is a deadline miss.

Three threads at most. The capture thread reads and decodes. The loop's own thread runs
`process` (preprocess, infer, decode, track: the critical path, what the car waits for).
`emit` (record, drawing, video, log: what a person or a recorder waits for) runs either in
the loop's thread after `process`, or, with ``output_thread=True``, in an output thread
that handles frame N while the loop's thread runs frame N + 1; when it falls behind, the
one-slot hand-over makes the loop wait rather than queue frames without bound.

The output thread has one of two priorities, because on 2 cores a 1280x720 frame's drawing
and mp4v encoding cost about as much CPU as its inference, so no arrangement gives both the
lowest latency and the highest frame rate (measured in the README, issue 13):

* latency (``output_idle=True``, the default: a camera, the car): the output thread runs
  under SCHED_IDLE on Linux and takes only CPU time the critical path leaves idle, so
  drawing and encoding never delay a result (ONNX Runtime's intra-op pool keeps both
  cores). Frames come out at about 1 / (inference + output) per second.
* throughput (``output_idle=False``: a file rendered to video, nobody waiting on a frame):
  the output thread runs at normal priority and shares the cores with inference, whose
  threads should then park between operators (serving.engine, spinning=False) rather than
  spin on the core the encoder needs. More frames per second, each result later.

Every stage of every frame is timed with time.perf_counter_ns: decode (capture thread),
pre, infer, post, track, monitor (the loop's thread; monitor: serving.app's input probes),
draw, write (output). Latency is measured on the monotonic clock from capture:
``latency_ms`` to the result (warnings available), ``output_latency_ms`` to the outputs
written. In offline mode the time a frame waits in the capture queue is not latency (a file
does not age): its latency starts when its decode started.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from serving.stats import describe

STAGES = ("decode", "pre", "infer", "post", "track", "monitor", "draw", "write")
# the stages between a frame and its result (monitor: serving.app's input probes)
CRITICAL = ("pre", "infer", "post", "track", "monitor")


@dataclass
class Captured:
    frame: Any  # the source's Frame
    t_capture_ns: int  # time.monotonic_ns() when the frame was available
    decode_ns: int  # time spent reading/decoding it
    t_result_ns: int = 0  # time.monotonic_ns() when process() returned


def _series() -> array[float]:
    return array("f")


@dataclass
class Timings:
    """Per-frame stage times (ms) and latencies, appended as the loop runs. Kept as float32
    arrays (4 bytes a value, 40 a frame), not lists of float objects (32 bytes a value):
    the history of a long drive grows by 1.4 MB an hour at 10 Hz, not 12."""

    stages: dict[str, array[float]] = field(default_factory=lambda: {s: _series() for s in STAGES})
    latency_ms: array[float] = field(default_factory=_series)  # capture -> result
    output_latency_ms: array[float] = field(default_factory=_series)  # capture -> outputs
    frames: int = 0
    dropped: int = 0
    deadline_misses: int = 0
    wall_s: float = 0.0

    def add(self, stage_ns: dict[str, int], latency_ns: int, output_latency_ns: int) -> None:
        for s in STAGES:
            self.stages[s].append(stage_ns.get(s, 0) / 1e6)
        self.latency_ms.append(latency_ns / 1e6)
        self.output_latency_ms.append(output_latency_ns / 1e6)
        self.frames += 1

    def summary(self) -> dict[str, Any]:
        """Counts, throughput (frames / wall s) and serving.stats.describe of each series."""
        return {
            "frames": self.frames,
            "dropped": self.dropped,
            "deadline_misses": self.deadline_misses,
            "fps": self.frames / self.wall_s if self.wall_s > 0 else 0.0,
            "latency_ms": describe(self.latency_ms),
            "output_latency_ms": describe(self.output_latency_ms),
            "stages_ms": {s: describe(v) for s, v in self.stages.items()},
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
    failed: list[BaseException],
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


def idle_priority() -> None:
    """Lower the calling thread to SCHED_IDLE (Linux): it runs only on otherwise idle CPU
    time. Elsewhere, or when refused, the thread keeps its priority."""
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


class Processor(Protocol):
    """Everything done to one frame after capture; fills stage_ns as it goes."""

    def __call__(self, frame: Any, stage_ns: dict[str, int]) -> Any: ...


Emit = Callable[[Captured, Any, dict[str, int]], None]


class _Output:
    """Runs emit for each processed frame and records its timings: inline, or in an output
    thread fed through a one-slot queue (the loop waits when the output is behind)."""

    def __init__(self, emit: Emit, t: Timings, on_frame: Callable[[Timings], None] | None,
                 threaded: bool, idle: bool = True) -> None:  # fmt: skip
        self.emit, self.t, self.on_frame, self.idle = emit, t, on_frame, idle
        self.failed: list[BaseException] = []
        self._q: queue.Queue[tuple[Captured, Any, dict[str, int]] | None] = queue.Queue(1)
        self._thread: threading.Thread | None = None
        if threaded:
            self._thread = threading.Thread(target=self._run, name="output", daemon=True)
            self._thread.start()

    def _one(self, item: Captured, result: Any, stage_ns: dict[str, int]) -> None:
        self.emit(item, result, stage_ns)
        now = time.monotonic_ns()
        self.t.add(stage_ns, item.t_result_ns - item.t_capture_ns, now - item.t_capture_ns)
        if self.on_frame is not None:
            self.on_frame(self.t)

    def _run(self) -> None:
        if self.idle:
            idle_priority()
        while (job := self._q.get()) is not None:
            if not self.failed:  # after a failure, drain so that the loop never blocks
                try:
                    self._one(*job)
                except BaseException as e:
                    self.failed.append(e)

    def __call__(self, item: Captured, result: Any, stage_ns: dict[str, int]) -> None:
        if self._thread is None:
            self._one(item, result, stage_ns)
        else:
            self._q.put((item, result, stage_ns))
        if self.failed:
            raise self.failed[0]

    def close(self) -> None:
        """Wait for the frames handed over; raise what the output thread failed with."""
        self.stop()
        if self.failed:
            raise self.failed[0]

    def stop(self) -> None:
        """End the output thread once it has emitted what it holds (idempotent)."""
        if self._thread is not None:
            self._q.put(None)
            self._thread.join()
            self._thread = None


class _Capture:
    """The capture thread and its hand-over: a bounded queue (offline) or the newest-frame
    mailbox (paced). get() returns the next Captured, None at the end of the source."""

    def __init__(self, frames: Iterable[Any], paced: bool, pace_fps: float) -> None:
        self.paced = paced
        self.failed: list[BaseException] = []
        self.box = _NewestOnly()
        self.q: queue.Queue[Captured | None] = queue.Queue(maxsize=4)
        put = self.box.put if paced else self.q.put
        self.get = self.box.get if paced else self.q.get
        self.stop = threading.Event()
        self.thread = threading.Thread(
            target=_capture, args=(frames, put, pace_fps, self.stop, self.failed),
            name="capture", daemon=True,
        )  # fmt: skip
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        while not self.paced and self.thread.is_alive():  # unblock a put on a full queue
            try:
                self.q.get_nowait()
            except queue.Empty:
                self.thread.join(0.01)
        self.thread.join(timeout=2.0)


def run(
    frames: Iterable[Any],
    process: Processor,
    emit: Emit,
    *,
    paced_fps: float = 0.0,
    live: bool = False,
    max_frames: int | None = None,
    on_frame: Callable[[Timings], None] | None = None,
    output_thread: bool = False,
    output_idle: bool = True,
) -> Timings:
    """Run the loop until the source ends (or max_frames).

    process(frame, stage_ns) -> result runs the model side; emit(captured, result, stage_ns)
    draws and writes, adding its own stage times (captured.t_capture_ns and t_result_ns
    give the latencies so far), inline or in the output thread, at idle priority or not
    (output_idle; see the module doc).
    paced_fps > 0: a file played at that rate as if it were a camera; live: a real camera
    (paced by its own clock). Either selects the paced mode: newest frame only, drops and
    deadline misses (a result later than one frame period after capture) counted.
    on_frame(timings) is called after each frame's outputs, in the thread that emits.

    An exception raised by the source mid-stream is raised here once the frames read before
    it have been processed (unless max_frames was reached first)."""
    t = Timings()
    paced = paced_fps > 0 or live
    period_ns = int(1e9 / paced_fps) if paced_fps > 0 else 0
    output = _Output(emit, t, on_frame, output_thread, output_idle)
    start = time.perf_counter()
    capture = _Capture(frames, paced, paced_fps)
    done = 0
    try:
        while (max_frames is None or done < max_frames) and (item := capture.get()) is not None:
            if not paced:  # a file does not age in the queue: latency starts at its decode
                item.t_capture_ns = time.monotonic_ns() - item.decode_ns
            stage_ns = {"decode": item.decode_ns}
            result = process(item.frame, stage_ns)
            item.t_result_ns = time.monotonic_ns()
            if period_ns and item.t_result_ns - item.t_capture_ns > period_ns:
                t.deadline_misses += 1
            output(item, result, stage_ns)
            done += 1
        output.close()
    finally:
        output.stop()  # on an error too: no emit may run after this returns
        capture.close()
        t.wall_s = time.perf_counter() - start
        t.dropped = capture.box.dropped
    if capture.failed and (max_frames is None or done < max_frames):
        raise capture.failed[0]
    return t
