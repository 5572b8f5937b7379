"""The per-frame application: a frame -> Result (serving.runtime) -> its record, the overlay
and the sinks. `perception demo`, `perception bench`, scripts/soak.py and the drift monitor
all run this one class, so what they measure and record is what ships.

Per frame, in the loop's thread (serving.loop, the critical path): preprocess, infer,
decode, track. Then the output side: the JSON record, the hooks, the overlay, the video and
the log. When the app draws, the output side runs in an output thread, while the next frame
is inferred. Headless (no video, no window) nothing is drawn and the output side (record,
hooks, log: about 0.3 ms of Python) runs in the loop's thread after the result is out: an
output thread would run that Python exactly while the loop's thread preprocesses the next
frame, and the two would take turns at the interpreter lock (measured side by side, bench
style, in two runs: preprocessing 1.42 and 1.47 ms with the thread, 1.05 and 1.02 without).

Hooks plug per-frame work into the output side without touching the loop: a hook is
called as ``hook(frame, result, record)`` for every frame, on the output side, after the
record is built and before it is written; it may add keys to the record (a monitor adds
``record["monitor"]``) and must not keep the frame's image past the call (the source may
reuse it). Hooks run off the critical path, so their cost shows in the output latency, not
in the result's. Work that needs the frame's model input (the monitor's image properties)
is an input probe instead: ``probe(x)`` right after the runtime, in the loop's thread, the
only place where x is still that frame's (the next preprocessing overwrites it); its time is
the loop's "monitor" stage, on the critical path. A hook may also add a HUD line
(``app.hud.extra[name] = callable returning the text``).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from serving import loop, overlay
from serving.runtime import Result, Runtime
from serving.sinks import JsonlSink, VideoSink
from serving.source import Frame
from serving.stats import percentiles


class InputProbe(Protocol):
    """Per-frame work on the model input (see the module doc)."""

    def __call__(self, x: np.ndarray) -> None: ...


class FrameHook(Protocol):
    """Per-frame work on the output side (see the module doc)."""

    def __call__(self, frame: Frame, result: Result, record: dict[str, Any]) -> None: ...


def _r(v: float, nd: int) -> float | None:
    """v rounded to nd decimals; None when it is not finite (JSON has no inf)."""
    return round(float(v), nd) if np.isfinite(v) else None


def to_record(frame: Frame, r: Result, slots: Sequence[str], names: Sequence[str]) -> dict:
    """One JSON-lines record: lanes (source pixels), the obstacles seen this frame with
    distance (m), lateral position (m), relative speed (m/s) and TTC (s), the ego lane's
    offset (m) and curvature (1/m), the warnings. Numbers rounded to what they mean: 0.1 px,
    1 cm, 0.01 s."""
    lanes = []
    for k, slot in enumerate(slots):
        ok = r.pred.lanes.xs[k] >= 0
        if ok.sum() >= 2:
            pts = np.stack([r.pred.lanes.xs[k][ok], r.pred.lanes.rows[ok]], 1).astype(np.float64)
            lanes.append({"slot": slot, "points": np.round(pts, 1).tolist()})
    obstacles = [
        {
            "track_id": t.track_id,
            "cls": names[t.cls],
            "score": round(float(t.score), 3),
            "box": [round(float(v), 1) for v in t.box],
            "distance_m": round(t.distance_m, 2),
            "lateral_m": round(t.y_m, 2),
            "rel_speed_mps": round(t.vx_mps, 2),
            "ttc_s": _r(t.ttc_s, 2),
            "in_ego_lane": bool(t.in_ego_lane),
        }
        for t in r.tracks
        if t.missed == 0
    ]
    w, lane = r.warnings, r.lane
    return {
        "frame": frame.index,
        "t_ns": int(frame.t_ns),
        "lanes": lanes,
        "obstacles": obstacles,
        "ego_lane": {
            "valid": bool(lane.valid),
            "offset_m": round(lane.offset_m, 3) if lane.valid else None,
            "curvature_1pm": round(lane.curvature_1pm, 5) if lane.valid else None,
        },
        "warnings": {
            "fcw": bool(w.fcw),
            "fcw_track_id": w.fcw_track_id,
            "fcw_ttc_s": _r(w.fcw_ttc_s, 2),
            "ldw": w.ldw,
        },
    }


def bgr(img: np.ndarray) -> np.ndarray:
    """A BGR copy of a gray, BGR or BGRA frame, to draw on (the source's stays as it is)."""
    if img.ndim == 2 or img.shape[2] == 1:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    return img.copy()


class Outputs:
    """The video and JSON-lines sinks of a run, closed together: renamed into place when the
    run ended well, left under their partial names when it did not."""

    def __init__(self, video: VideoSink | None = None, jsonl: JsonlSink | None = None):
        self.video, self.jsonl = video, jsonl

    @classmethod
    def open(cls, video: str | Path | None, jsonl: str | Path | None, fps: float,
             size: tuple[int, int]) -> Outputs:  # fmt: skip
        """Sinks for the paths given (None: no such output); size (width, height)."""
        return cls(
            VideoSink(video, fps, size) if video else None, JsonlSink(jsonl) if jsonl else None
        )

    def close(self, ok: bool) -> None:
        for sink in (self.video, self.jsonl):
            if sink is not None:
                sink.close(finalise=ok)

    def partial_paths(self) -> list[str]:
        return [str(s.partial_path) for s in (self.video, self.jsonl) if s is not None]


class Hud:
    """The overlay's heads-up lines: FPS over the recent frames, result latency p50 / p99,
    drops and the device. Fed by the loop's on_frame (output thread)."""

    def __init__(self, device: str, window: int = 200):
        self.device = device
        self.latency: deque[float] = deque(maxlen=window)
        self.stamps: deque[float] = deque(maxlen=60)
        self.dropped = 0
        self.extra: dict[str, Callable[[], str]] = {}  # more lines, e.g. the monitor's state

    def update(self, t: loop.Timings) -> None:
        self.latency.append(t.latency_ms[-1])
        self.stamps.append(time.perf_counter())
        self.dropped = t.dropped

    def lines(self) -> dict[str, str]:
        hud = {"device": self.device} | {k: line() for k, line in self.extra.items()}
        if len(self.stamps) < 2:
            return hud
        hud["FPS"] = f"{(len(self.stamps) - 1) / (self.stamps[-1] - self.stamps[0]):.1f}"
        p50, p99 = percentiles(self.latency, [50, 99])
        hud["latency p50"], hud["latency p99"] = f"{p50:.1f} ms", f"{p99:.1f} ms"
        hud["drops"] = str(self.dropped)
        return hud


class App:
    """runtime: frame -> Result; outputs: where records and the annotated video go (None:
    headless, nothing written); show: a window (drawn in the loop's thread: GUI toolkits
    want one thread); draw: draw the overlay (default: when there is a video or a window);
    hooks, probes: see the module doc; output_thread: emit beside the loop rather than after
    each frame in its thread (default: when the app draws; forced off with show), at idle
    priority unless the runtime was built for throughput (serving.loop's module doc)."""

    def __init__(
        self,
        runtime: Runtime,
        outputs: Outputs | None = None,
        *,
        show: bool = False,
        draw: bool | None = None,
        hooks: Sequence[FrameHook] = (),
        probes: Sequence[InputProbe] = (),
        output_thread: bool | None = None,
    ):
        self.runtime, self.outputs = runtime, outputs or Outputs()
        self.show, self.hooks, self.probes = show, list(hooks), list(probes)
        self.draws = show or self.outputs.video is not None if draw is None else draw
        threaded = self.draws if output_thread is None else output_thread
        self.output_thread = threaded and not show
        device = runtime.engine.device if runtime.engine is not None else "model"
        self.hud = Hud(device)
        self.slots = runtime.contract.lane_slots
        self.names = runtime.contract.class_names

    def process(self, frame: Frame, stage_ns: dict[str, int]) -> Result:
        """The critical path (the loop's thread): the runtime on the frame, then the probes
        on its model input (the "monitor" stage)."""
        r = self.runtime(frame.image, frame.t_ns / 1e9, frame.speed_mps, stage_ns)
        if self.probes:
            t0 = time.perf_counter_ns()
            for probe in self.probes:
                probe(self.runtime.last_input)
            stage_ns["monitor"] = time.perf_counter_ns() - t0
        return r

    def emit(self, item: loop.Captured, r: Result, stage_ns: dict[str, int]) -> None:
        """The output side of one frame: record, hooks, overlay, video, window, log. Stage
        times: draw (the overlay), write (record, hooks, video, window, log)."""
        clock = time.perf_counter_ns
        frame: Frame = item.frame
        t0 = clock()
        record = to_record(frame, r, self.slots, self.names)
        for hook in self.hooks:
            hook(frame, r, record)
        t1 = clock()
        img = bgr(frame.image) if self.draws else None
        if img is not None:
            overlay.draw(img, r.pred, r.tracks, r.lane, r.warnings, self.hud.lines(),
                         lane_slots=self.slots, class_names=self.names)  # fmt: skip
        t2 = clock()
        if img is not None and self.outputs.video is not None:
            self.outputs.video.write(img)
        if img is not None and self.show:
            cv2.imshow("perception", img)
            cv2.waitKey(1)
        t3 = clock()
        stage_ns["draw"], stage_ns["write"] = t2 - t1, (t1 - t0) + (t3 - t2)
        if self.outputs.jsonl is not None:
            record["timings_ms"] = {k: round(v / 1e6, 3) for k, v in stage_ns.items()}
            record["latency_ms"] = round((item.t_result_ns - item.t_capture_ns) / 1e6, 3)
            self.outputs.jsonl.write(record)
            stage_ns["write"] += clock() - t3

    def run(
        self,
        frames: Iterable[Frame],
        *,
        paced_fps: float = 0.0,
        live: bool = False,
        max_frames: int | None = None,
        on_frame: Callable[[loop.Timings], None] | None = None,
    ) -> loop.Timings:
        """serving.loop.run with this application (see there for the modes)."""

        def frame_done(t: loop.Timings) -> None:
            self.hud.update(t)
            if on_frame is not None:
                on_frame(t)

        return loop.run(
            frames, self.process, self.emit, paced_fps=paced_fps, live=live,
            max_frames=max_frames, on_frame=frame_done, output_thread=self.output_thread,
            output_idle=not self.runtime.throughput,
        )  # fmt: skip
