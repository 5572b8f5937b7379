"""One frame through everything the car runs: preprocess -> infer -> decode -> read the scene.

`Runtime` is the only place these steps are written. Its stages are parts that can be
swapped: `Runtime.onnx` builds the shipped one (ONNX Runtime through serving.engine, the
Numba pre- and post-processing); `perception bench` builds its PyTorch and naive contenders
by handing other stages to the same class, so that every loop it compares tracks, smooths
and warns with the same code. Thread pools are set once, here, for the whole process: ONNX
Runtime's intra-op pool, Numba's and OpenCV's share the same cores and must not fight.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from serving import farfield
from serving.alerts import Alerts, Warnings
from serving.config import Settings
from serving.contract import ModelContract, ModelOutputs
from serving.engine import Engine
from serving.geometry import Calib
from serving.lanes import LaneGeometry, LaneSmoother, ego_slots, lane_geometry
from serving.postprocess import Detections, FramePrediction, Postprocessor
from serving.preprocess import Preprocessor
from serving.projection import pack
from serving.tracking import Tracker, Tracks
from serving.undistort import UndistortingPreprocessor, distort_prediction

Infer = Callable[[np.ndarray], ModelOutputs[np.ndarray]]  # float32[1, 3, h, w] -> outputs
Decoder = Callable[[ModelOutputs[np.ndarray]], FramePrediction]  # one image's outputs
MakeDecoder = Callable[[ModelContract, int, int], Decoder]  # for a source of width x height
GIL_SWITCH_S = 0.0005  # the interpreter's switch interval in the loop (see configure_threads)


def configure_threads(numba_threads: int = 1, cv2_threads: int = 1) -> None:
    """Call once at start-up, before the first frame. OMP_WAIT_POLICY=PASSIVE stops idle
    OpenMP workers spinning on a core the next stage needs (it only takes effect when set
    before the pools start: the CLI entry points set it too). ONNX Runtime's threads are a
    session option (serving.engine). The interpreter's switch interval goes down to 0.5 ms:
    when the output thread runs Python (the record, the overlay's text) just as the loop's
    thread needs the GIL back, the loop waits at most that long, not the default 5 ms."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    sys.setswitchinterval(min(sys.getswitchinterval(), GIL_SWITCH_S))
    cv2.setNumThreads(cv2_threads)
    try:
        import numba

        most = int(getattr(numba.config, "NUMBA_NUM_THREADS", 1))
        numba.set_num_threads(max(1, min(numba_threads, most)))
    except (ImportError, ValueError):
        pass


@dataclass
class Result:
    """What one frame produced, in source pixels and ego-frame metres."""

    pred: FramePrediction
    lane: LaneGeometry
    tracks: Tracks
    warnings: Warnings


class Runtime:
    """contract: the model's; calib: the source camera; infer: the model; pre: frame ->
    model input (default: serving.preprocess); make_decoder: the decode for a source size
    (default: serving.postprocess). undistort: with a calibration that has lens distortion,
    the preprocessing pass undistorts (serving.undistort) and the decoded lanes and boxes
    are mapped back onto the recorded image, so that everything after decode stays in
    source pixels; without distortion it changes nothing. far_field: the width (source
    pixels) of a crop around the horizon that the model sees too, for small far objects
    (serving.farfield: one more inference a frame); 0 = off."""

    def __init__(
        self,
        contract: ModelContract,
        calib: Calib,
        infer: Infer,
        settings: Settings,
        *,
        pre: Callable[[np.ndarray], np.ndarray] | None = None,
        make_decoder: MakeDecoder = Postprocessor,
        undistort: bool = False,
        far_field: int = 0,
    ):
        self.contract, self.infer, self.settings = contract, infer, settings
        self.far_field = far_field
        self.far_pre = Preprocessor(contract)  # the crop is read as recorded
        self.undistort = undistort and calib.has_distortion
        self.pre = pre or (
            UndistortingPreprocessor(contract, calib) if self.undistort else Preprocessor(contract)
        )
        self.make_decoder = make_decoder
        self.ego = ego_slots(contract.lane_slots)
        self.alerts = Alerts(settings.warnings, contract.class_names)
        self.cold: dict[str, float] = {}
        self.engine: Engine | None = None  # set by Runtime.onnx
        self.throughput = False  # set by Runtime.onnx: frames per second before latency
        self.last_input = np.zeros(0, np.float32)  # the latest frame's model input
        self._set_camera(calib)

    @classmethod
    def onnx(
        cls,
        model: str,
        calib: Calib,
        settings: Settings,
        device: str = "cpu",
        threads: int = 2,
        undistort: bool = False,
        throughput: bool = False,
        far_field: int = 0,
    ) -> Runtime:
        """The shipped runtime: an ONNX model through serving.engine (IO binding: the
        preprocessing writes straight into the bound input), warmed up; cold-start seconds
        in .cold (session, Numba compile or cache load, first inference, total).
        throughput: for a file rendered to video (serving.loop's module doc): the engine's
        threads park between operators and an App on this runtime draws at normal priority."""
        t0 = time.perf_counter()
        engine = Engine(model, device, threads, spinning=not throughput)
        rt = cls(
            engine.contract, calib, engine.run_bound, settings, undistort=undistort,
            far_field=far_field,
        )  # fmt: skip
        rt.engine, rt.throughput = engine, throughput
        rt.pre.out = rt.far_pre.out = engine.input  # type: ignore[attr-defined]
        rt.cold["session_s"] = engine.session_seconds
        t1 = time.perf_counter()
        rt.warmup()
        rt.cold["numba_s"] = time.perf_counter() - t1
        rt.cold["first_inference_s"] = engine.warmup(3)
        rt.cold["total_s"] = time.perf_counter() - t0
        return rt

    def _set_camera(self, calib: Calib) -> None:
        self.calib, self._cam = calib, pack(calib)
        if isinstance(self.pre, UndistortingPreprocessor):
            self.pre.calib = calib
        self.decode = self.make_decoder(self.contract, calib.image_width, calib.image_height)
        self.far = farfield.far_window(calib, self.far_field, self.contract)
        if self.far is not None:
            self.far_decode = self.make_decoder(self.contract, self.far.width, self.far.height)
        self.reset()

    def reset(self) -> None:
        """Forget the previous frames (tracks, smoothed lanes): a new clip starts."""
        self.tracker = Tracker(self.calib, self.settings.tracking)
        self.smoother = LaneSmoother(self.settings.tracking)

    def for_size(self, width: int, height: int) -> None:
        """Adapt to the source's frame size (decode scales to it); resets the tracks."""
        if (width, height) != (self.calib.image_width, self.calib.image_height):
            self._set_camera(self.calib.scaled(width, height))

    def warmup(self) -> None:
        """Compile (or load from Numba's cache) the kernels before the first frame."""
        for part in (self.pre, self.decode, self.far_pre):
            if hasattr(part, "warmup"):
                part.warmup()

    def __call__(
        self, image: np.ndarray, t_s: float, speed_mps: float | None, stage_ns: dict[str, int]
    ) -> Result:
        """image: uint8 HxW, HxWx3 BGR or HxWx4; t_s capture time (s); speed_mps: ego speed
        (None: unknown). Adds pre, infer, post and track times (ns) to stage_ns."""
        clock = time.perf_counter_ns
        far_ns = [0, 0, 0]  # the far-field pass's pre, infer, post
        # the far field first, so that the bound input holds the frame's own input after
        far = self._far_pass(image, far_ns) if self.far is not None else None
        t0 = clock()
        x = self.last_input = self.pre(image)
        t1 = clock()
        out = self.infer(x)
        t2 = clock()
        pred = self.decode(out.image(0))
        if self.undistort:
            pred = distort_prediction(pred, self.calib)
        if far is not None and self.far is not None:
            c, cal = self.contract, self.calib
            pred.detections = farfield.merge(
                pred.detections, far, self.far, cal.image_width, cal.image_height,
                c.nms_iou, c.max_detections,
            )  # fmt: skip
        pred.lanes = self.smoother(pred.lanes)
        t3 = clock()
        result = self.read_scene(pred, t_s, speed_mps)
        t4 = clock()
        pre, infer, post = t1 - t0 + far_ns[0], t2 - t1 + far_ns[1], t3 - t2 + far_ns[2]
        stage_ns.update(pre=pre, infer=infer, post=post, track=t4 - t3)
        return result

    def _far_pass(self, image: np.ndarray, spent: list[int]) -> Detections:
        """The model's detections on the far-field window (window pixels); its pre, infer
        and post times (ns) into spent."""
        assert self.far is not None
        clock = time.perf_counter_ns
        t0 = clock()
        x = self.far_pre(farfield.crop(image, self.far))
        t1 = clock()
        out = self.infer(x)
        t2 = clock()
        det = self.far_decode(out.image(0)).detections
        spent[:] = [t1 - t0, t2 - t1, clock() - t2]
        return det

    def read_scene(self, pred: FramePrediction, t_s: float, speed_mps: float | None) -> Result:
        """The 'track' stage: what one frame's decoded prediction (source pixels) tells the
        driver: the ego lane's geometry, the tracks (advanced to t_s seconds), warnings."""
        cfg = self.settings.tracking
        lane = lane_geometry(pred.lanes, self.calib, self.ego, cfg.lane_fit_range_m, self._cam)
        tracks = self.tracker.update(t_s, pred.detections, lane)
        return Result(pred, lane, tracks, self.alerts(tracks, lane, speed_mps))
