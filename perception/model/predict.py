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

from serving.contract import ModelContract, ModelOutputs
from serving.geometry import Calib
from serving.postprocess import FramePrediction, Postprocessor
from serving.preprocess import Preprocessor


class _Base:
    """Shared: preprocessing buffer, a postprocessor per source size."""

    name = "model"

    def __init__(self, contract: ModelContract):
        self.contract = contract
        self.score_threshold: float | None = None  # None: the contract's
        self.pre = Preprocessor(contract)
        self._post: dict[tuple[int, int], Postprocessor] = {}

    def post(self, width: int, height: int) -> Postprocessor:
        key = (width, height)
        if key not in self._post:
            self._post[key] = Postprocessor(self.contract, width, height)
        return self._post[key]

    def infer(self, x: np.ndarray) -> ModelOutputs[np.ndarray]:
        raise NotImplementedError

    def __call__(
        self,
        frame_bgr: np.ndarray,
        calib: Calib,
        rows: np.ndarray | None = None,
        score_threshold: float | None = None,
    ) -> FramePrediction:
        """frame uint8[H, W, 3] BGR -> FramePrediction in source pixels. Lanes come on the
        contract's row anchors (rows is accepted for the Predictor protocol)."""
        out = self.infer(self.pre(frame_bgr))
        h, w = frame_bgr.shape[:2]
        thr = self.score_threshold if score_threshold is None else score_threshold
        return self.post(w, h)(out.image(0), thr)


class OnnxPredictor(_Base):
    """Any ONNX variant (FP32, INT8, FP16) through serving's Engine: the contract comes from
    the file itself."""

    def __init__(self, path: str | Path, device: str = "cpu", threads: int = 2):
        from serving.engine import Engine

        self.engine = Engine(path, device, threads)
        super().__init__(self.engine.contract)
        self.pre.out = self.engine.input  # preprocess straight into the bound input buffer

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
