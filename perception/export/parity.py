"""PyTorch vs ONNX Runtime on real test frames: raw outputs and decoded results.

The stage fails (non-zero exit) unless raw outputs agree within max abs diff 1e-3 and the
decoded results are the same: lanes within 1 px, boxes matched one to one with IoU >= 0.99
and the same class.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from perception.dataset.schema import Dataset
from perception.model.files import load_model
from serving.contract import OUTPUT_NAMES, ModelOutputs
from serving.engine import Engine
from serving.io import read_image
from serving.postprocess import NO_POINT, FramePrediction, Postprocessor
from serving.preprocess import Preprocessor

RAW_TOL = 1e-3
LANE_TOL_PX = 1.0
BOX_IOU = 0.99


@dataclass
class FrameParity:
    raw_max_abs: dict[str, float]
    lane_max_px: float
    boxes_ok: bool


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 1.0


def compare_decoded(a: FramePrediction, b: FramePrediction) -> tuple[float, bool]:
    """(max lane x difference in px, or inf when lane presence differs; boxes identical)"""
    pa, pb = a.lanes.xs != NO_POINT, b.lanes.xs != NO_POINT
    lane = float(np.abs(a.lanes.xs[pa] - b.lanes.xs[pa]).max(initial=0.0))
    if not np.array_equal(pa, pb):
        lane = float("inf")
    da, db = a.detections, b.detections
    ok = len(da.scores) == len(db.scores)
    if ok:
        used: set[int] = set()
        for box, cls in zip(da.boxes, da.classes, strict=True):
            best = max(
                (
                    (i, _iou(box, db.boxes[i]))
                    for i in range(len(db.scores))
                    if i not in used and db.classes[i] == cls
                ),
                key=lambda t: t[1],
                default=(-1, 0.0),
            )
            if best[1] < BOX_IOU:
                ok = False
                break
            used.add(best[0])
    return lane, ok


def parity_frames(data: str, clip_ids: list[str], n: int) -> list[np.ndarray]:
    ds = Dataset(data)
    items = [(c, lb) for cid in clip_ids for c in [ds.clip(cid)] for lb in c.labels]
    frames = []
    for i in np.linspace(0, len(items) - 1, min(n, len(items))).astype(int):
        clip, lb = items[i]
        frames.append(read_image(clip.frame_path(lb), cv2.IMREAD_COLOR))
    return frames


def check_parity(
    model_pt: str | Path, onnx_path: str | Path, frames: list[np.ndarray]
) -> dict[str, Any]:
    net = load_model(model_pt)
    engine = Engine(onnx_path, "cpu", threads=2)
    pre = Preprocessor(engine.contract)
    results: list[FrameParity] = []
    for frame in frames:
        x = pre(frame).copy()
        with torch.inference_mode():
            ref = ModelOutputs(*(o.numpy() for o in net(torch.from_numpy(x))))
        got = ModelOutputs(*(o.copy() for o in engine.run(x)))
        raw = {
            n: float(np.abs(r - g).max()) for n, r, g in zip(OUTPUT_NAMES, ref, got, strict=True)
        }
        post = Postprocessor(engine.contract, frame.shape[1], frame.shape[0])
        lane, boxes_ok = compare_decoded(post(ref.image(0)), post(got.image(0)))
        results.append(FrameParity(raw, lane, boxes_ok))
    raw_max = {n: max(r.raw_max_abs[n] for r in results) for n in OUTPUT_NAMES}
    lane_max = max(r.lane_max_px for r in results)
    ok = (
        max(raw_max.values()) <= RAW_TOL
        and lane_max <= LANE_TOL_PX
        and all(r.boxes_ok for r in results)
    )
    return {
        "ok": bool(ok),
        "frames": len(results),
        "raw_max_abs_diff": raw_max,
        "raw_tolerance": RAW_TOL,
        "lane_max_diff_px": lane_max if np.isfinite(lane_max) else None,
        "lane_presence_mismatch": bool(not np.isfinite(lane_max)),
        "lane_tolerance_px": LANE_TOL_PX,
        "box_iou_min": BOX_IOU,
        "frames_with_box_mismatch": sum(not r.boxes_ok for r in results),
    }
