"""The NAIVE stages `perception bench` compares the project's loop against: the same FP32
ONNX model run the way typical demo scripts do it.

Preprocessing is cv2.resize + cv2.cvtColor + astype(float32) + numpy normalisation +
transpose (five passes over memory); inference is a plain session.run (no IO binding: ORT
allocates the outputs every frame); decoding is numpy: 3x3 max-pool peak finding with a
threshold, a numpy greedy NMS per class and a numpy softmax over the lane cells. They plug
into serving.runtime.Runtime, so tracking and warnings are the project's; the naive variant
also draws and writes its video in its one thread, as a demo script does
(perception.bench.variants), so both loops do the same work and only the way differs.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from serving.config import Settings
from serving.contract import (
    BOX_BOTTOM,
    BOX_LEFT,
    BOX_RIGHT,
    BOX_TOP,
    OUTPUT_NAMES,
    ModelContract,
    ModelOutputs,
)
from serving.engine import read_contract, resolve_providers
from serving.geometry import Calib
from serving.postprocess import NO_POINT, Detections, FramePrediction, Lanes
from serving.runtime import Runtime


def naive_preprocess(frame: np.ndarray, c: ModelContract) -> np.ndarray:
    """uint8[H, W, 3] BGR -> float32[1, 3, h, w] normalised RGB, the demo-script way."""
    img = cv2.resize(frame, (c.input_width, c.input_height), interpolation=cv2.INTER_LINEAR)
    img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    x: np.ndarray = img.astype(np.float32)
    x = (x - np.array(c.mean, np.float32)) / np.array(c.std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def numpy_peaks(
    heat: np.ndarray, threshold: float | np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """heat float32[C, h, w] -> (class, y, x) int arrays of cells >= threshold that are the
    maximum of their 3x3 neighbourhood (a max-pool done with numpy shifts)."""
    c, h, w = heat.shape
    pad = np.full((c, h + 2, w + 2), -np.inf, np.float32)
    pad[:, 1:-1, 1:-1] = heat
    pooled = np.max(
        np.stack([pad[:, dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)]), 0
    )
    k, y, x = np.nonzero((heat >= pooled) & (heat >= threshold))
    return k, y, x


def numpy_nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Greedy NMS (the classic py_cpu_nms). boxes float[N, 4] x1 y1 x2 y2 -> kept indices
    by descending score."""
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = (x2 - x1) * (y2 - y1)
    order = scores.argsort()[::-1]
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(i)
        xx1 = np.maximum(x1[i], x1[order[1:]])
        yy1 = np.maximum(y1[i], y1[order[1:]])
        xx2 = np.minimum(x2[i], x2[order[1:]])
        yy2 = np.minimum(y2[i], y2[order[1:]])
        inter = np.maximum(0.0, xx2 - xx1) * np.maximum(0.0, yy2 - yy1)
        ovr = inter / (areas[i] + areas[order[1:]] - inter)
        order = order[1:][ovr <= iou]
    return np.array(keep, np.int64)


def numpy_nms_per_class(
    boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou: float
) -> np.ndarray:
    """Class-wise numpy NMS: kept indices, by descending score."""
    keep = [
        np.flatnonzero(classes == k)[numpy_nms(boxes[classes == k], scores[classes == k], iou)]
        for k in np.unique(classes)
    ]
    out = np.concatenate(keep) if keep else np.zeros(0, np.int64)
    return out[np.argsort(-scores[out], kind="stable")]


def numpy_decode_boxes(
    heat: np.ndarray, box: np.ndarray, c: ModelContract, width: int, height: int
) -> Detections:
    """heat float32[C, h, w], box float32[4, h, w] -> Detections in source pixels."""
    k, y, x = numpy_peaks(heat, np.asarray(c.thresholds(), np.float32)[:, None, None])
    cx, cy = (x + 0.5) * c.stride, (y + 0.5) * c.stride
    sx, sy = width / c.input_width, height / c.input_height
    boxes = np.stack(
        [
            np.maximum((cx - box[BOX_LEFT, y, x]) * sx, 0.0),
            np.maximum((cy - box[BOX_TOP, y, x]) * sy, 0.0),
            np.minimum((cx + box[BOX_RIGHT, y, x]) * sx, width - 1.0),
            np.minimum((cy + box[BOX_BOTTOM, y, x]) * sy, height - 1.0),
        ],
        1,
    ).astype(np.float32)
    scores = heat[k, y, x].astype(np.float32)
    keep = numpy_nms_per_class(boxes, scores, k, c.nms_iou)[: c.max_detections]
    return Detections(boxes[keep], scores[keep], k[keep].astype(np.int32))


def numpy_decode_lanes(
    logits: np.ndarray, exist: np.ndarray, c: ModelContract, width: int
) -> np.ndarray:
    """logits float32[L, R, G+1] -> xs float32[L, R] pixels (softmax expectation over the G
    cells), NO_POINT where the lane is absent or the 'no lane' class outweighs the cells
    together (serving.postprocess.decode_lanes' rule)."""
    cells = logits.shape[2] - 1
    best = logits[:, :, :cells].max(2, keepdims=True)
    e = np.exp(logits[:, :, :cells] - best)
    total = e.sum(2)
    xs = (e * (np.arange(cells) + 0.5)).sum(2) / total * width / cells
    none = logits[:, :, cells] - best[:, :, 0] > np.log(total)
    absent = none | (exist[:, None] < c.lane_exist_threshold)
    return np.where(absent, NO_POINT, xs).astype(np.float32)


class NaiveDecoder:
    """The numpy decode of one image's outputs for a width x height source (the
    serving.runtime MakeDecoder signature)."""

    def __init__(self, contract: ModelContract, width: int, height: int):
        self.c, self.width, self.height = contract, width, height
        self.rows = (np.asarray(contract.row_anchors, np.float32) * height).astype(np.float32)

    def __call__(self, out: ModelOutputs[np.ndarray]) -> FramePrediction:
        c, w, h = self.c, self.width, self.height
        dets = numpy_decode_boxes(out.heatmap, out.box, c, w, h)
        xs = numpy_decode_lanes(out.lane_logits, out.lane_exist, c, w)
        return FramePrediction(Lanes(xs, self.rows, out.lane_exist.astype(np.float32)), dets)


def naive_runtime(model: Path, calib: Calib, settings: Settings, device: str, threads: int):
    """serving.runtime.Runtime with the naive stages: cv2 + numpy preprocessing, a plain
    session.run (ONNX Runtime allocates the outputs every frame), numpy decode. Tracking,
    lane smoothing and warnings are the runtime's own."""
    import onnxruntime as ort

    c = read_contract(model)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    # spinning off so that its idle threads do not slow the variants measured after it
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(model), opts, providers=resolve_providers(device))

    def infer(x: np.ndarray) -> ModelOutputs[np.ndarray]:
        return ModelOutputs(*session.run(list(OUTPUT_NAMES), {c.input_name: x}))

    def pre(frame: np.ndarray) -> np.ndarray:
        return naive_preprocess(frame, c)

    return Runtime(c, calib, infer, settings, pre=pre, make_decoder=NaiveDecoder)
