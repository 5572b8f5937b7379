"""Predictors: a model file -> per-frame predictions through the serving pre/post-processing.

`perception evaluate` scores any model file with these, through exactly the preprocessing,
decode and thresholds that the real-time loop uses (serving/preprocess.py,
serving/postprocess.py), so evaluation measures what ships. The PyTorch checkpoint runs in
torch; ONNX files run in ONNX Runtime.
"""

from __future__ import annotations

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


class TorchPredictor(_Base):
    def __init__(self, path: str | Path):
        import torch

        from perception.model.files import load_model

        self.torch = torch
        self.net = load_model(path)
        super().__init__(self.net.contract)

    def infer(self, x: np.ndarray) -> ModelOutputs[np.ndarray]:
        with self.torch.inference_mode():
            out = self.net(self.torch.from_numpy(x))
        return ModelOutputs(*(o.numpy() for o in out))


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


def load_predictor(path: str) -> _Base:
    """A predictor for a model file: .pt (PyTorch, from perception train) or .onnx."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{path}: missing model file")
    if p.suffix == ".pt":
        return TorchPredictor(p)
    if p.suffix == ".onnx":
        return OnnxPredictor(p)
    raise ValueError(f"{path}: unknown model format (expected .pt or .onnx)")
