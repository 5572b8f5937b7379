"""Predictors and running them: anything that turns a frame into a FramePrediction, the
model's (perception.model.predict, through the serving pre- and post-processing), the
undistorting and far-field wrappers, and every predictor over every frame with lanes
resampled to the clip's h_samples."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

from perception.errors import UserError
from perception.evaluate.frames import Frame, FrameResult, Run, decoded
from serving import farfield
from serving.geometry import Calib
from serving.postprocess import FramePrediction, Lanes
from serving.preprocess import Preprocessor
from serving.undistort import UndistortingPreprocessor, distort_prediction


class Predictor(Protocol):
    """Anything that turns a frame into a FramePrediction. rows float32[R] are the clip's
    h_samples (source-image rows); a predictor may answer on its own rows (Lanes.rows).
    An optional attribute ``detects = False`` marks a lanes-only predictor."""

    name: str

    def __call__(
        self, frame_bgr: np.ndarray, calib: Calib, rows: np.ndarray
    ) -> FramePrediction: ...


def resample_lanes(lanes: Lanes, h_samples: Sequence[float]) -> list[np.ndarray]:
    """Predicted lanes (xs on lanes.rows, source pixels) -> x per h_samples row by linear
    interpolation between neighbouring anchor rows that both have a point (x >= 0); -2
    elsewhere (outside the lane, or across a gap in it). Lanes left with fewer than two
    points are dropped; the order (slot order) is kept."""
    h = np.asarray(h_samples, np.float64)
    rows = np.asarray(lanes.rows, np.float64)
    order = np.argsort(rows)
    rows = rows[order]
    out = []
    for xs in np.asarray(lanes.xs, np.float64)[:, order]:
        valid = xs >= 0
        if valid.sum() < 2:
            continue
        x = np.interp(h, rows[valid], xs[valid])
        # 1.0 only where both neighbouring anchors are valid (or h hits a valid anchor)
        ok = np.interp(h, rows, valid.astype(np.float64), left=0.0, right=0.0) > 1.0 - 1e-9
        if ok.sum() >= 2:
            out.append(np.where(ok, x, -2.0))
    return out


def predict_one(predictor: Predictor, img: np.ndarray, frame: Frame) -> FrameResult:
    """Run a predictor on one frame; lanes resampled to the frame's h_samples."""
    rows = np.asarray(frame.h_samples, np.float32)
    t0 = time.perf_counter()
    pred = predictor(img, frame.calib, rows)
    ms = (time.perf_counter() - t0) * 1000.0
    d = pred.detections
    boxes = np.asarray(d.boxes, np.float32).reshape(-1, 4)
    scores = np.asarray(d.scores, np.float32)
    finite = np.isfinite(boxes).all(axis=1) & np.isfinite(scores)  # a broken model's NaN
    lanes = [
        np.where(np.isfinite(xs), xs, -2.0) for xs in resample_lanes(pred.lanes, frame.h_samples)
    ]
    return FrameResult(
        lanes,
        boxes[finite],
        scores[finite],
        np.asarray(d.classes, np.int64)[finite],
        ms,
    )


def run_predictors(
    frames: Sequence[Frame], predictors: Sequence[Predictor], progress: bool = True
) -> list[Run]:
    """Every predictor on every frame (each frame decoded once)."""
    runs = [Run(p.name, bool(getattr(p, "detects", True))) for p in predictors]
    bar = tqdm(
        decoded(frames), total=len(frames), unit="frame", desc="evaluate", disable=not progress
    )
    for img, frame in zip(bar, frames, strict=True):
        for run, p in zip(runs, predictors, strict=True):
            run.results.append(predict_one(p, img, frame))
    return runs


class UndistortingPredictor:
    """A model predictor that sees each frame through its calibration's undistortion, fused
    into the preprocessing pass (serving.undistort), and answers in the distorted source
    image's pixels like any predictor. Frames whose calibration has no distortion go the
    plain way. inner: a perception.model.predict predictor (with .pre, .contract)."""

    detects = True

    def __init__(self, inner: Any):
        self.inner = inner
        self.name = f"{inner.name}+undistort"
        pre = UndistortingPreprocessor(inner.contract, Calib.default())
        pre.out = inner.pre.out  # keep writing into the engine's bound input buffer
        inner.pre = self.pre = pre

    def __call__(self, frame_bgr: np.ndarray, calib: Calib, rows: np.ndarray) -> FramePrediction:
        h, w = frame_bgr.shape[:2]
        same = (calib.image_width, calib.image_height) == (w, h)
        cal = calib if same else calib.scaled(w, h)
        self.pre.calib = cal
        return distort_prediction(self.inner(frame_bgr, cal, rows), cal)


class FarFieldPredictor:
    """A model predictor (or an UndistortingPredictor around one) with the far-field pass,
    as serving.runtime.Runtime runs it (serving.farfield): the model on a crop_width-wide
    crop around the horizon, read as recorded, then on the frame; the crop's boxes merged
    into the frame's. The crop goes first: both passes write into the same bound input."""

    detects = True

    def __init__(self, inner: Any, crop_width: int):
        self.inner, self.crop_width, self.name = inner, crop_width, inner.name
        self.model = getattr(inner, "inner", inner)  # the one that infers and decodes
        self.pre = Preprocessor(self.model.contract)
        self.pre.out = self.model.pre.out  # the engine's bound input buffer

    def __call__(self, frame_bgr: np.ndarray, calib: Calib, rows: np.ndarray) -> FramePrediction:
        m, (h, w) = self.model, frame_bgr.shape[:2]
        cal = calib if (calib.image_width, calib.image_height) == (w, h) else calib.scaled(w, h)
        win = farfield.far_window(cal, self.crop_width, m.contract)
        if win is None:
            return self.inner(frame_bgr, calib, rows)
        out = m.infer(self.pre(farfield.crop(frame_bgr, win)))
        far = m.post(win.width, win.height)(out.image(0), m.score_threshold).detections
        pred: FramePrediction = self.inner(frame_bgr, calib, rows)
        c = m.contract
        pred.detections = farfield.merge(
            pred.detections, far, win, w, h, c.nms_iou, c.max_detections
        )
        return pred


def load_model_predictor(path: str) -> Predictor:
    """perception.model.predict.load_predictor, imported only when a model is asked for."""
    p = Path(path)
    if not p.is_file():
        raise UserError(
            f"{path}: " + ("not a regular file" if p.exists() else "missing model file")
        )
    try:
        from perception.model.predict import load_predictor
    except ImportError as e:
        raise UserError(f"cannot load models here ({e})") from None
    return load_predictor(path)  # a bad file: one line (train.load_model, serving.engine)
