"""The official TuSimple lane metric (tusimple-benchmark evaluate/lane.py), re-implemented.

Lanes are x pixels per ``h_samples`` row, negative (-2) where the lane has no point. Per gt
lane the point threshold is 20 px / cos(theta), theta the angle of a least-squares fit of x on
y over the lane's valid points (the threshold widens on slanted lanes, whose x changes fast
from row to row). Missing points become -100 on both sides, so a row where neither lane has a
point counts as matched, as in the official code. A gt lane's score is its best prediction's
line accuracy (matched rows / all rows); it is matched when that reaches 0.85. Predictions
are not assigned one-to-one (one prediction may match two gt lanes, as in the official code).

Per image: accuracy = sum of gt scores / max(min(4, n_gt), 1), where with more than 4 gt
lanes the lowest score is dropped and one FN forgiven; FP = (n_pred - matched) / n_pred
(0 without predictions); FN = unmatched / max(min(n_gt, 4), 1); an image with more than
n_gt + 2 predictions scores (0, 0, 1). The dataset figures are means over images.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

PIXEL_THRESH = 20.0  # px, on a 720-row image
PT_THRESH = 0.85  # line accuracy needed for a gt lane to count as matched
MISSING = -100.0  # what the official code puts in for a missing point, on both sides


def lane_angle(xs: np.ndarray, ys: np.ndarray) -> float:
    """Angle (radians) of the least-squares line x = k * y + c over the valid points
    (x >= 0); 0 with fewer than two points."""
    valid = xs >= 0
    if valid.sum() < 2:
        return 0.0
    k = np.polyfit(ys[valid].astype(np.float64), xs[valid].astype(np.float64), 1)[0]
    return math.atan(k)


def line_accuracy(pred: np.ndarray, gt: np.ndarray, thresh: float) -> float:
    """Fraction of rows where |x_pred - x_gt| < thresh, missing points set to -100."""
    p = np.where(pred >= 0, pred, MISSING)
    g = np.where(gt >= 0, gt, MISSING)
    return float(np.mean(np.abs(p - g) < thresh))


def bench(
    pred_lanes: Sequence[np.ndarray], gt_lanes: Sequence[np.ndarray], h_samples: Sequence[float]
) -> tuple[float, float, float]:
    """One image: (accuracy, fp, fn) as the official ``LaneEval.bench`` (run time not
    judged). Every lane is float[len(h_samples)] x pixels, negative = no point."""
    ys = np.asarray(h_samples, np.float64)
    preds = [np.asarray(p, np.float64) for p in pred_lanes]
    gts = [np.asarray(g, np.float64) for g in gt_lanes]
    for lane in (*preds, *gts):
        if lane.shape != ys.shape:
            raise ValueError(f"a lane has {lane.shape[0]} xs for {len(ys)} h_samples")
    if len(preds) > len(gts) + 2:
        return 0.0, 0.0, 1.0
    scores: list[float] = []
    matched = fn = 0
    for g in gts:
        thresh = PIXEL_THRESH / math.cos(lane_angle(g, ys))
        best = max((line_accuracy(p, g, thresh) for p in preds), default=0.0)
        if best < PT_THRESH:
            fn += 1
        else:
            matched += 1
        scores.append(best)
    total = sum(scores)
    if len(gts) > 4:
        total -= min(scores)
        fn = max(fn - 1, 0)
    denom = max(min(4, len(gts)), 1)
    fp = (len(preds) - matched) / len(preds) if preds else 0.0
    return total / denom, fp, fn / denom


def evaluate(
    records: Iterable[tuple[Sequence[np.ndarray], Sequence[np.ndarray], Sequence[float]]],
) -> dict[str, float | None]:
    """Means of ``bench`` over images; records yield (pred_lanes, gt_lanes, h_samples).
    Returns {"accuracy", "fp", "fn", "images"}; the rates are None without images."""
    results = [bench(p, g, h) for p, g, h in records]
    if not results:
        return {"accuracy": None, "fp": None, "fn": None, "images": 0}
    acc, fp, fn = (float(np.mean(col)) for col in zip(*results, strict=True))
    return {"accuracy": acc, "fp": fp, "fn": fn, "images": len(results)}
