"""The real-footage set's figures, per frame and per run (`perception evaluate-real`, see
perception.evaluate.real): what a small real set needs on top of the project's metric code.

* vehicle recall at IoU 0.5 and 0.3: car + truck predictions against the labelled cars,
  class-agnostic among vehicles, matched one to one by descending score; with 28 boxes, 0.3
  shows localisation progress that 0.5 hides
* vehicle recall at IoU 0.5 by the labelled car's size, in COCO's area ranges (small under
  32 x 32 px, large from 96 x 96 px; pycocotools' areaRng): a bar over all cars mixes the
  near cars a 448 x 256 input can find with ones a few input pixels tall
* false vehicle boxes per frame: vehicle predictions matching no labelled car at IoU 0.5
  (and at 0.3); predictions under 12 px tall are not judged, because the labels leave out
  every vehicle under 12 px (the set's own rule), so such a box may be a real, unlabelled car
* person boxes: pedestrian and cyclist predictions in the whole set (there is no person)
* box fit: over the vehicle predictions matched at IoU 0.3, the medians of predicted height
  and width over the labelled ones and of the shift of the top and bottom edges (a fraction
  of the labelled height, + = down): whether real cars are missed at 0.5 because the boxes
  are too large, too small or misplaced, which recall alone does not say
* a 95 % interval for each bar's figure, by resampling the frames (bootstrap): with 8
  frames, a figure a few points past its bar may be a frame's luck (see frame_intervals)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from perception.evaluate.frames import Frame, FrameResult
from perception.metrics import distance, interval, tusimple
from serving.contract import CLASS_NAMES

VEHICLES = tuple(CLASS_NAMES.index(c) for c in ("car", "truck"))
PERSONS = tuple(CLASS_NAMES.index(c) for c in ("pedestrian", "cyclist"))
IOUS = {"iou50": 0.5, "iou30": 0.3}
MIN_JUDGED_HEIGHT_PX = 12.0  # the labels' rule: vehicles at least 12 px tall are labelled
# COCO's size ranges (pycocotools' areaRng), on a labelled box's area in pixels
SIZES = {"small": (0.0, 32.0**2), "medium": (32.0**2, 96.0**2), "large": (96.0**2, math.inf)}


@dataclass
class FrameScore:
    """One frame's figures: lane accuracy / FP / FN (TuSimple, per image), labelled lines and
    vehicles, vehicles found and false vehicle boxes per IoU key of IOUS, person boxes."""

    image: str
    lane_acc: float
    lane_fp: float
    lane_fn: float
    gt_lanes: int
    gt_vehicles: int
    found: dict[str, int]
    false: dict[str, int]
    persons: int
    fit: list[tuple[float, float, float, float]]  # per matched pair: see box_fit
    by_size: dict[str, list[int]]  # SIZES key -> [found at IoU 0.5, labelled]: see by_size


def _vehicle_pairs(
    frame: Frame, r: FrameResult, iou: float
) -> tuple[list[tuple[int, int]], np.ndarray, np.ndarray]:
    """(pairs, vehicle prediction boxes, labelled vehicle boxes): car and truck predictions
    against the labelled vehicles, class-agnostic, one to one by descending score
    (perception.metrics.distance.greedy_match) at IoU >= iou."""
    gt = [o.box for o in frame.label.obstacles if CLASS_NAMES.index(o.cls) in VEHICLES]
    gt_boxes = np.asarray(gt, np.float64).reshape(-1, 4)
    keep = np.isin(r.classes, VEHICLES)
    boxes, scores = r.boxes[keep].astype(np.float64), r.scores[keep]
    zeros_p, zeros_g = np.zeros(len(boxes), np.int64), np.zeros(len(gt_boxes), np.int64)
    pairs = distance.greedy_match(boxes, scores, zeros_p, gt_boxes, zeros_g, iou)
    return pairs, boxes, gt_boxes


def vehicle_matches(frame: Frame, r: FrameResult, iou: float) -> tuple[int, int]:
    """(labelled vehicles found, false vehicle boxes) at IoU >= iou (see _vehicle_pairs).
    Unmatched predictions shorter than MIN_JUDGED_HEIGHT_PX are not counted as false (see
    the module doc)."""
    pairs, boxes, _ = _vehicle_pairs(frame, r, iou)
    matched = np.zeros(len(boxes), bool)
    matched[[i for i, _ in pairs]] = True
    # inclusive pixel rows, as the labels count them: y2 - y1 + 1
    judged = boxes[:, 3] - boxes[:, 1] + 1.0 >= MIN_JUDGED_HEIGHT_PX
    return len(pairs), int((~matched & judged).sum())


def box_fit(frame: Frame, r: FrameResult) -> list[tuple[float, float, float, float]]:
    """Per vehicle prediction matched at IoU 0.3: (predicted / labelled height, predicted /
    labelled width, top edge shift, bottom edge shift), shifts as fractions of the labelled
    height, + = down. Sizes in inclusive pixel rows and columns, as the labels count them."""
    pairs, boxes, gt_boxes = _vehicle_pairs(frame, r, IOUS["iou30"])
    out = []
    for i, j in pairs:
        (px1, py1, px2, py2), (gx1, gy1, gx2, gy2) = boxes[i], gt_boxes[j]
        gh, gw = gy2 - gy1 + 1.0, gx2 - gx1 + 1.0
        h, w = (py2 - py1 + 1.0) / gh, (px2 - px1 + 1.0) / gw
        out.append((_r4(h), _r4(w), _r4((py1 - gy1) / gh), _r4((py2 - gy2) / gh)))
    return out


def by_size(frame: Frame, r: FrameResult) -> dict[str, list[int]]:
    """Per COCO size range (SIZES, on the labelled box's area in inclusive pixels): [labelled
    vehicles found at IoU 0.5, labelled vehicles]."""
    pairs, _, gt_boxes = _vehicle_pairs(frame, r, IOUS["iou50"])
    found = {j for _, j in pairs}
    out = {k: [0, 0] for k in SIZES}
    for j, (x1, y1, x2, y2) in enumerate(gt_boxes):
        area = (x2 - x1 + 1.0) * (y2 - y1 + 1.0)
        size = next(k for k, (lo, hi) in SIZES.items() if lo <= area < hi)
        out[size][0] += j in found
        out[size][1] += 1
    return out


def _r4(v: float) -> float:
    return round(float(v), 4)


def _fit_medians(scores: list[FrameScore]) -> dict[str, Any]:
    """box_fit's four figures as medians over every matched pair of the run."""
    fit = np.array([f for s in scores for f in s.fit], np.float64).reshape(-1, 4)
    keys = ("height_ratio", "width_ratio", "top_shift", "bottom_shift")
    if not len(fit):
        return {"pairs": 0} | dict.fromkeys(keys)
    med = np.median(fit, axis=0)
    return {"pairs": len(fit)} | {k: round(float(v), 3) for k, v in zip(keys, med, strict=True)}


def score_frame(frame: Frame, r: FrameResult, name: str) -> FrameScore:
    """The per-frame figures of one prediction (see FrameScore)."""
    gt_lanes = frame.gt_lanes()
    acc, fp, fn = tusimple.bench(r.lanes, gt_lanes, frame.h_samples)
    matches = {key: vehicle_matches(frame, r, iou) for key, iou in IOUS.items()}
    n_vehicles = sum(CLASS_NAMES.index(o.cls) in VEHICLES for o in frame.label.obstacles)
    return FrameScore(
        name, acc, fp, fn, len(gt_lanes), n_vehicles,
        {k: m[0] for k, m in matches.items()}, {k: m[1] for k, m in matches.items()},
        int(np.isin(r.classes, PERSONS).sum()), box_fit(frame, r), by_size(frame, r),
    )  # fmt: skip


def frame_intervals(scores: list[FrameScore]) -> dict[str, list[float] | None]:
    """95 % intervals of the bars' figures over the frames (perception.metrics.interval):
    lane figures are means over frames (TuSimple averages per image); vehicle recall is found
    over labelled, a frame's cars drawn together. How far a figure could move on other frames
    like these; not training noise (another seed)."""
    out = {
        f"lane_{k}": interval.mean_interval([getattr(s, f"lane_{k}") for s in scores])
        for k in ("acc", "fp", "fn")
    }
    out["false_vehicle_boxes_per_frame_iou50"] = interval.mean_interval(
        [s.false["iou50"] for s in scores]
    )
    gt = [s.gt_vehicles for s in scores]
    for k in IOUS:
        out[f"vehicle_recall_{k}"] = interval.ratio_interval([s.found[k] for s in scores], gt)
    return out


def summarize(scores: list[FrameScore], m: dict[str, Any]) -> dict[str, Any]:
    """One run's figures: lanes and AP50 from eval_report's metrics m, the vehicle and person
    counts summed over frames, the bars' 95 % intervals over frames, and the per-frame
    table."""
    n = max(len(scores), 1)
    gt = sum(s.gt_vehicles for s in scores)
    det = m["detection"] or {"ap50": {}}
    return {
        "lanes": m["lanes"],
        "ap50": {c: det["ap50"].get(c) for c in CLASS_NAMES},
        "vehicle_recall": {k: sum(s.found[k] for s in scores) / max(gt, 1) for k in IOUS},
        "vehicles_by_size_iou50": {  # [found, labelled] per COCO size range
            k: [sum(s.by_size[k][i] for s in scores) for i in (0, 1)] for k in SIZES
        },
        "false_vehicle_boxes_per_frame": {k: sum(s.false[k] for s in scores) / n for k in IOUS},
        "person_boxes": sum(s.persons for s in scores),
        "box_fit_iou30": _fit_medians(scores),
        "interval95": frame_intervals(scores),
        "per_frame": [asdict(s) for s in scores],
    }
