"""Scoring of `perception evaluate`: per predictor, over the whole split and each scenario
slice, TuSimple lane accuracy / FP / FN, CULane F1, COCO AP per class and the distance
error, all from perception.metrics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from perception.dataset.coco import obstacle_to_coco_bbox
from perception.evaluate.frames import Frame, FrameResult, Run
from perception.metrics import culane, distance, tusimple
from perception.metrics.detection import CocoEvaluator
from perception.params import EvaluateParams
from serving.contract import CLASS_NAMES

# slice name -> (meta tag, values that put a clip in it)
SLICES: dict[str, tuple[str, tuple[str, ...]]] = {
    "day": ("time_of_day", ("day",)),
    "dusk": ("time_of_day", ("dusk",)),
    "night": ("time_of_day", ("night",)),
    "rain": ("weather", ("rain",)),
    "fog": ("weather", ("fog",)),
    "curves": ("road", ("curve", "sharp_curve", "s_bend")),
    "highway": ("kind", ("highway",)),  # divided highways: the real test set's kind of road
}
VEHICLES = ("car", "truck")


def slice_indices(frames: Sequence[Frame]) -> dict[str, list[int]]:
    """Slice name -> indices of the frames whose clip tags put them in it."""
    return {
        name: [i for i, f in enumerate(frames) if f.tags.get(tag) in values]
        for name, (tag, values) in SLICES.items()
    }


class _Scorer:
    """Per-frame lane and distance figures of one run, computed once; summaries over any
    subset of frames (the whole split or a slice)."""

    def __init__(self, frames: Sequence[Frame], run: Run, gt: dict, p: EvaluateParams):
        self.frames, self.run = frames, run
        gts = [f.gt_lanes() for f in frames]
        self.bench = [
            tusimple.bench(r.lanes, g, f.h_samples)
            for f, r, g in zip(frames, run.results, gts, strict=True)
        ]
        self.f1 = [
            culane.match_image(r.lanes, g, f.h_samples, f.size, p.culane_scale, p.culane_width)
            for f, r, g in zip(frames, run.results, gts, strict=True)
        ]
        self.coco: CocoEvaluator | None = None
        self.dist: list[list[float]] = []
        if run.detects:
            self.coco = CocoEvaluator(gt, coco_detections(frames, run.results))
            self.dist = [
                _distance_errors(f, r, p.distance_max_m)
                for f, r in zip(frames, run.results, strict=True)
            ]

    def lanes(self, idx: Sequence[int]) -> dict[str, float | None]:
        if not idx:
            return {"accuracy": None, "fp": None, "fn": None, "f1": None}
        acc, fp, fn = (float(np.mean(c)) for c in zip(*(self.bench[i] for i in idx), strict=True))
        counter = culane.F1Counter()
        for i in idx:
            counter.add(*self.f1[i])
        return {"accuracy": acc, "fp": fp, "fn": fn, "f1": counter.result()["f1"]}

    def detection(self, idx: Sequence[int] | None) -> tuple[dict | None, list[dict]]:
        """({ap50, ap} per class and mean, PR points) over frames idx; over all frames (idx
        None) also each class's best-F1 operating point at IoU 0.5 and its recall at IoU 0.5
        by box height (how far the small far objects are found)."""
        if self.coco is None:
            return None, []
        ids = None if idx is None else [self.frames[i].image_id for i in idx]
        r = self.coco.evaluate(ids)
        det = {"ap50": r["ap50"], "ap": r["ap"]}
        if idx is None:
            det["operating"] = r["operating"]
            det["recall50_by_height_px"] = self.coco.recall_by_height()
        return det, r["pr"]

    def distance(self, idx: Sequence[int]) -> dict | None:
        if self.coco is None:
            return None
        return distance.summarize([e for i in idx for e in self.dist[i]])


def coco_detections(frames: Sequence[Frame], results: Sequence[FrameResult]) -> list[dict]:
    """Detections as a COCO result list: image_id, category_id, bbox [x, y, w, h], score."""
    out = []
    for f, r in zip(frames, results, strict=True):
        for box, score, cls in zip(r.boxes, r.scores, r.classes, strict=True):
            bbox = [round(v, 2) for v in obstacle_to_coco_bbox(box.tolist())]
            out.append(
                {
                    "image_id": f.image_id,
                    "category_id": int(cls) + 1,
                    "bbox": bbox,
                    "score": round(float(score), 5),
                }
            )
    return out


def _distance_errors(frame: Frame, r: FrameResult, max_m: float) -> list[float]:
    obs = frame.label.obstacles
    gt_boxes = np.array([o.box for o in obs], np.float64).reshape(-1, 4)
    gt_cls = np.array([CLASS_NAMES.index(o.cls) for o in obs], np.int64)
    return distance.frame_errors(
        frame.calib,
        r.boxes,
        r.scores,
        r.classes,
        gt_boxes,
        gt_cls,
        [o.distance_m for o in obs],
        max_m,
    )


def score_runs(
    frames: Sequence[Frame], runs: Sequence[Run], gt: dict, p: EvaluateParams
) -> tuple[dict[str, Any], list[dict]]:
    """metrics.json's dict (predictor name -> figures) and the last run's PR points."""
    metrics: dict[str, Any] = {}
    slices = slice_indices(frames)
    everything = list(range(len(frames)))
    pr: list[dict] = []
    for run in runs:
        s = _Scorer(frames, run, gt, p)
        det, pr = s.detection(None)
        m: dict[str, Any] = {
            "frames": len(frames),
            "lanes": s.lanes(everything),
            "detection": det,
            "distance": s.distance(everything),
            "slices": {},
        }
        for name, idx in slices.items():
            m["slices"][name] = {
                "frames": len(idx),
                "lanes": s.lanes(idx),
                "detection": s.detection(idx)[0],
                "distance": s.distance(idx),
            }
        metrics[run.name] = m
    return metrics, pr
