"""One frame through everything the car runs: preprocess -> infer -> decode -> track.

`Runtime` owns the engine, the preprocessing buffer (bound to the engine's input, so the
Numba kernel writes straight into what ONNX Runtime reads), the decoder, the lane smoother and
the tracker. Thread pools are set once, here, for the whole process: ONNX Runtime's intra-op
pool, Numba's and OpenCV's share the same cores and must not fight over them.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from serving.alerts import Warnings
from serving.engine import Engine
from serving.geometry import Calib, LaneGeometry
from serving.postprocess import FramePrediction, Postprocessor
from serving.preprocess import Preprocessor
from serving.tracking import LaneSmoother, Track, Tracker, read_scene
from serving.undistort import UndistortingPreprocessor, distort_prediction


def configure_threads(ort_threads: int, numba_threads: int = 1, cv2_threads: int = 1) -> None:
    """Call once at start-up, before the first frame. OMP_WAIT_POLICY=PASSIVE stops idle
    OpenMP workers spinning on a core the next stage needs (it only takes effect when set
    before the pools start: the CLI entry points set it too)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    cv2.setNumThreads(cv2_threads)
    try:
        import numba

        most = int(getattr(numba.config, "NUMBA_NUM_THREADS", 1))
        numba.set_num_threads(max(1, min(numba_threads, most)))
    except (ImportError, ValueError):
        pass
    _ = ort_threads  # ONNX Runtime's threads are a session option: see Engine


@dataclass
class Result:
    """What one frame produced, in source pixels and ego-frame metres."""

    pred: FramePrediction
    lane: LaneGeometry
    tracks: list[Track]
    warnings: Warnings


class Runtime:
    """undistort: with a calibration that has lens distortion, the preprocessing pass
    undistorts (serving.undistort) and the decoded lanes and boxes are mapped back onto the
    recorded image, so that everything after decode stays in source pixels; without
    distortion it changes nothing."""

    def __init__(
        self,
        model: str,
        calib: Calib,
        device: str = "cpu",
        threads: int = 2,
        undistort: bool = False,
    ):
        t0 = time.perf_counter()
        self.engine = Engine(model, device, threads)
        self.contract = self.engine.contract
        self.calib = calib
        self.undistort = undistort and calib.has_distortion
        self.pre = (
            UndistortingPreprocessor(self.contract, calib)
            if self.undistort
            else Preprocessor(self.contract)
        )
        self.pre.out = self.engine.input  # zero copy into the bound input buffer
        self.post = Postprocessor(self.contract, calib.image_width, calib.image_height)
        self.smoother = LaneSmoother()
        self.tracker = Tracker(calib)
        self.cold: dict[str, float] = {"session_s": self.engine.session_seconds}
        t1 = time.perf_counter()
        self.pre.warmup()
        self.post.warmup()
        self.cold["numba_s"] = time.perf_counter() - t1
        self.cold["first_inference_s"] = self.engine.warmup(3)
        self.cold["total_s"] = time.perf_counter() - t0

    def for_size(self, width: int, height: int) -> None:
        """Adapt to the source's frame size (decode scales to it)."""
        if (width, height) != (self.post.width, self.post.height):
            self.calib = self.calib.scaled(width, height)
            if isinstance(self.pre, UndistortingPreprocessor):
                self.pre.calib = self.calib
            self.post = Postprocessor(self.contract, width, height)
            self.tracker = Tracker(self.calib)

    def __call__(
        self, image: np.ndarray, t_s: float, speed_mps: float | None, stage_ns: dict[str, int]
    ) -> Result:
        """image: uint8 HxW, HxWx3 BGR or HxWx4; t_s capture time (s). Adds pre, infer,
        post and track times (ns) to stage_ns."""
        clock = time.perf_counter_ns
        t0 = clock()
        self.pre(image)
        t1 = clock()
        out = self.engine.run()
        t2 = clock()
        pred = self.post(out.image(0))
        if self.undistort:
            pred = distort_prediction(pred, self.calib)
        pred.lanes = self.smoother(pred.lanes)
        t3 = clock()
        lane, tracks, warn = read_scene(pred, self.calib, self.tracker, t_s, speed_mps)
        t4 = clock()
        stage_ns.update(pre=t1 - t0, infer=t2 - t1, post=t3 - t2, track=t4 - t3)
        return Result(pred, lane, tracks, warn)


def to_record(
    index: int,
    t_ns: int,
    r: Result,
    slots: tuple[str, ...],
    names: tuple[str, ...],
    timings_ms: dict[str, float],
    latency_ms: float,
) -> dict[str, Any]:
    """One JSON-lines record: lanes, obstacles with distance and TTC, warnings, timings."""
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
            "ttc_s": None if not np.isfinite(t.ttc_s) else round(t.ttc_s, 2),
            "in_ego_lane": bool(t.in_ego_lane),
        }
        for t in r.tracks
        if t.missed == 0
    ]
    w = r.warnings
    lane = r.lane
    return {
        "frame": index,
        "t_ns": int(t_ns),
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
            "fcw_ttc_s": w.fcw_ttc_s,
            "ldw": w.ldw,
        },
        "timings_ms": {k: round(v, 3) for k, v in timings_ms.items()},
        "latency_ms": round(latency_ms, 3),
    }
