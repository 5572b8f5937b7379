"""Distance error of the flat-road camera model on matched detections.

A detection is matched to a gt obstacle of the same class at IoU >= 0.5, greedily by
descending score (each gt used once). For matched gt obstacles with a known distance_m up to
``max_distance_m``, the predicted distance is ``serving.geometry.ground_distance`` at the
box's bottom centre ((x1 + x2) / 2, y2), and the error is |d_pred - d_gt| / d_gt. A box whose
bottom lies at or above the horizon has no predicted distance: its error counts as infinite
(it still drags the median up rather than vanishing from the count).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from serving.geometry import Calib, ground_distance

IOU_MATCH = 0.5
MAX_DISTANCE_M = 50.0


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """float[N, M] IoU between boxes a float[N, 4] and b float[M, 4], x1 y1 x2 y2 pixels."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def greedy_match(
    pred_boxes: np.ndarray,
    pred_scores: np.ndarray,
    pred_classes: np.ndarray,
    gt_boxes: np.ndarray,
    gt_classes: np.ndarray,
    iou_min: float = IOU_MATCH,
) -> list[tuple[int, int]]:
    """(pred index, gt index) pairs: predictions by descending score each take the unused gt
    of the same class with the highest IoU, if that IoU >= iou_min."""
    if len(pred_boxes) == 0 or len(gt_boxes) == 0:
        return []
    iou = box_iou(pred_boxes, gt_boxes)
    iou[np.asarray(pred_classes)[:, None] != np.asarray(gt_classes)[None, :]] = -1.0
    used = np.zeros(len(gt_boxes), bool)
    pairs = []
    for i in np.argsort(-np.asarray(pred_scores), kind="stable"):
        row = np.where(used, -1.0, iou[i])
        j = int(np.argmax(row))
        if row[j] >= iou_min:
            used[j] = True
            pairs.append((int(i), j))
    return pairs


def frame_errors(
    calib: Calib,
    pred_boxes: np.ndarray,
    pred_scores: np.ndarray,
    pred_classes: np.ndarray,
    gt_boxes: np.ndarray,
    gt_classes: np.ndarray,
    gt_distances: Sequence[float | None],
    max_distance_m: float = MAX_DISTANCE_M,
) -> list[float]:
    """Relative distance errors of one frame's matched detections (see the module doc).
    Classes are ints, distances metres (None = unknown)."""
    errors = []
    for i, j in greedy_match(pred_boxes, pred_scores, pred_classes, gt_boxes, gt_classes):
        d_gt = gt_distances[j]
        if d_gt is None or not 0 < d_gt <= max_distance_m:
            continue
        x1, _, x2, y2 = (float(v) for v in pred_boxes[i])
        d_pred = ground_distance(calib, (x1 + x2) / 2.0, y2)
        errors.append(abs(d_pred - d_gt) / d_gt if math.isfinite(d_pred) else math.inf)
    return errors


def summarize(errors: Sequence[float]) -> dict[str, float | int | None]:
    """{"median_rel_error": median or None (none, or not finite), "count": n}."""
    if not errors:
        return {"median_rel_error": None, "count": 0}
    med = float(np.median(np.asarray(errors, np.float64)))
    return {"median_rel_error": med if math.isfinite(med) else None, "count": len(errors)}
