"""Predictors: a model file -> per-frame predictions through the serving pre/post-processing.

`perception evaluate` scores any model file with these, through exactly the preprocessing,
decode and thresholds that the real-time loop uses (serving/preprocess.py,
serving/postprocess.py), so evaluation measures what ships. Every model runs in ONNX Runtime:
a PyTorch checkpoint through its ONNX export (exported_predictor).
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np

from serving import farfield
from serving.contract import ModelContract, ModelOutputs
from serving.farfield import Window
from serving.geometry import Calib
from serving.postprocess import Detections, FramePrediction, Postprocessor
from serving.preprocess import Preprocessor


class _Base:
    """Shared: preprocessing buffers, a postprocessor per source size, the far-field pass
    (serving.farfield; far_field = the crop's width in source pixels, 0 = off)."""

    name = "model"

    def __init__(self, contract: ModelContract):
        self.contract = contract
        self.score_threshold: float | None = None  # None: the contract's
        self.far_field = 0
        self.pre = Preprocessor(contract)
        self.far_pre = Preprocessor(contract)  # the crop never goes through undistortion
        self._post: dict[tuple[int, int], Postprocessor] = {}

    def post(self, width: int, height: int) -> Postprocessor:
        key = (width, height)
        if key not in self._post:
            self._post[key] = Postprocessor(self.contract, width, height)
        return self._post[key]

    def infer(self, x: np.ndarray) -> ModelOutputs[np.ndarray]:
        raise NotImplementedError

    def _threshold(self, score_threshold: float | None) -> float | None:
        return self.score_threshold if score_threshold is None else score_threshold

    def far_detections(
        self, frame_bgr: np.ndarray, calib: Calib, score_threshold: float | None = None
    ) -> tuple[Detections, Window] | None:
        """The far-field pass's detections (window pixels) and its window, or None when the
        pass is off or has no window for this frame size. Run it before the full pass: both
        write into the same bound input buffer."""
        h, w = frame_bgr.shape[:2]
        cal = calib if (calib.image_width, calib.image_height) == (w, h) else calib.scaled(w, h)
        win = farfield.far_window(cal, self.far_field, self.contract)
        if win is None:
            return None
        out = self.infer(self.far_pre(farfield.crop(frame_bgr, win)))
        post = self.post(win.width, win.height)
        return post(out.image(0), self._threshold(score_threshold)).detections, win

    def full(self, frame_bgr: np.ndarray, score_threshold: float | None = None) -> FramePrediction:
        """The model on the whole frame (the one pass when the far field is off)."""
        out = self.infer(self.pre(frame_bgr))
        h, w = frame_bgr.shape[:2]
        return self.post(w, h)(out.image(0), self._threshold(score_threshold))

    def with_far(
        self, pred: FramePrediction, far: tuple[Detections, Window] | None, width: int,
        height: int,
    ) -> FramePrediction:  # fmt: skip
        """pred with the far-field detections merged in (serving.farfield.merge)."""
        if far is not None:
            c = self.contract
            pred.detections = farfield.merge(
                pred.detections, far[0], far[1], width, height, c.nms_iou, c.max_detections
            )
        return pred

    def __call__(
        self,
        frame_bgr: np.ndarray,
        calib: Calib,
        rows: np.ndarray | None = None,
        score_threshold: float | None = None,
    ) -> FramePrediction:
        """frame uint8[H, W, 3] BGR -> FramePrediction in source pixels. Lanes come on the
        contract's row anchors (rows is accepted for the Predictor protocol)."""
        far = self.far_detections(frame_bgr, calib, score_threshold) if self.far_field else None
        h, w = frame_bgr.shape[:2]
        return self.with_far(self.full(frame_bgr, score_threshold), far, w, h)


class OnnxPredictor(_Base):
    """Any ONNX variant (FP32, INT8, FP16) through serving's Engine: the contract comes from
    the file itself."""

    def __init__(self, path: str | Path, device: str = "cpu", threads: int = 2):
        from serving.engine import Engine

        self.engine = Engine(path, device, threads)
        super().__init__(self.engine.contract)
        self.pre.out = self.engine.input  # preprocess straight into the bound input buffer
        self.far_pre.out = self.engine.input

    def infer(self, x: np.ndarray) -> ModelOutputs[np.ndarray]:
        return self.engine.run(None if x is self.engine.input else x)


def exported_predictor(path: str | Path) -> OnnxPredictor:
    """A PyTorch checkpoint scored through its ONNX export (perception.export, without
    operating points: the contract's one threshold) in ONNX Runtime: the graph that ships,
    and 2x faster on a CPU than eager PyTorch at batch 1 (evaluate on the test split: 125 s
    in torch, 54 s in ONNX Runtime). `perception parity` checks that the two agree."""
    from perception.export.onnx_export import export_onnx

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on Lite0's padding (fold_pads.py)
        onnx_path = export_onnx(path, Path(tmp) / "model.onnx", {})
        return OnnxPredictor(onnx_path)  # the session holds the graph: the file can go


def load_predictor(path: str) -> _Base:
    """A predictor for a model file: .pt (PyTorch, from perception train; scored through its
    ONNX export) or .onnx."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{path}: missing model file")
    if p.suffix == ".pt":
        return exported_predictor(p)
    if p.suffix == ".onnx":
        return OnnxPredictor(p)
    raise ValueError(f"{path}: unknown model format (expected .pt or .onnx)")
