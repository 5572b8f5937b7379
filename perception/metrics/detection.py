"""COCO detection AP with pycocotools, from in-memory COCO dicts.

Ground truth is a COCO detection dict (perception.dataset.coco's layout: images,
annotations with bbox [x, y, w, h] pixels, categories with ids CLASS_NAMES index + 1);
detections are a list of {image_id, category_id, bbox [x, y, w, h] pixels, score}. AP per
class is COCOeval's area "all", 100 detections per image; a class without gt boxes in the
evaluated images has AP NaN in COCOeval, reported here as None and left out of the means.
pycocotools' prints are silenced.
"""

from __future__ import annotations

import contextlib
import copy
import io
import itertools
from collections.abc import Sequence

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

IOU_50, IOU_75 = 0, 5  # indices into COCOeval's IoU thresholds .50:.05:.95
AREA_ALL, MAX_DETS_100 = 0, 2
# box-height bins (pixels at the source resolution) of recall_by_height: COCO's own size
# ranges are areas, and a far car and a near pedestrian can share an area but not a height
HEIGHT_BINS_PX = (24.0, 48.0, 96.0)


def _coco(dataset: dict) -> COCO:
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _results(gt: dict, detections: Sequence[dict]) -> dict:
    """A result COCO dataset as COCO.loadRes builds it, but also for an empty list."""
    anns = []
    for i, d in enumerate(detections, 1):
        x, y, w, h = (float(v) for v in d["bbox"])
        anns.append(
            {
                "id": i,
                "image_id": int(d["image_id"]),
                "category_id": int(d["category_id"]),
                "bbox": [x, y, w, h],
                "area": w * h,
                "score": float(d["score"]),
                "iscrowd": 0,
            }
        )
    return {"images": gt["images"], "categories": gt["categories"], "annotations": anns}


def _mean_ap(precision: np.ndarray) -> float | None:
    """Mean over the entries > -1 (COCOeval's "no gt"); None when there are none."""
    valid = precision[precision > -1]
    return float(valid.mean()) if valid.size else None


def _with_mean(per_class: dict[str, float | None]) -> dict[str, float | None]:
    values = [v for v in per_class.values() if v is not None]
    return {**per_class, "mean": float(np.mean(values)) if values else None}


class CocoEvaluator:
    """COCOeval over one gt dict and one detection list; ``evaluate`` can restrict it to a
    subset of the images (slices).

    The per-image matching (COCOeval.evaluate, most of the cost) runs once over every image;
    a subset is scored by accumulating its own images' matches. A COCOeval asked for fewer
    images than it evaluated would read the wrong ones (accumulate indexes its matches by the
    position in the new image list), so the subset gets a view of the matches laid out as a
    COCOeval of those images alone would lay them out: the result is the same, image for
    image and tie for tie (images in ascending id order either way)."""

    def __init__(self, gt: dict, detections: Sequence[dict]):
        self.names = {c["id"]: c["name"] for c in gt["categories"]}
        self.gt = _coco(gt)
        self.dt = _coco(_results(gt, detections))
        self._full: COCOeval | None = None

    def _matched(self) -> COCOeval:
        if self._full is None:
            ev = COCOeval(self.gt, self.dt, iouType="bbox")
            with contextlib.redirect_stdout(io.StringIO()):
                ev.evaluate()
            self._full = ev
        return self._full

    def _subset(self, image_ids: Sequence[int]) -> COCOeval:
        full = self._matched()
        ids = sorted({int(i) for i in image_ids})
        at = {img: n for n, img in enumerate(full._paramsEval.imgIds)}
        missing = [i for i in ids if i not in at]
        if missing:
            raise ValueError(f"image ids {missing[:5]} are not in the ground truth")
        n_img, n_area = len(at), len(full._paramsEval.areaRng)
        ev = copy.copy(full)
        ev.params, ev._paramsEval = copy.copy(full.params), copy.copy(full._paramsEval)
        ev.params.imgIds = ev._paramsEval.imgIds = ids
        ev.evalImgs = [
            full.evalImgs[(k * n_area + a) * n_img + at[i]]
            for k in range(len(full._paramsEval.catIds))
            for a in range(n_area)
            for i in ids
        ]
        return ev

    def evaluate(self, image_ids: Sequence[int] | None = None) -> dict:
        """{"ap50", "ap75", "ap": {class: AP or None, ..., "mean"}, "pr": [{class, recall,
        precision}, ...] at IoU 0.5 (101 recall points per class with gt)}; every value is
        None when image_ids is empty."""
        if image_ids is not None and len(image_ids) == 0:
            empty = _with_mean(dict.fromkeys(self.names.values()))
            none = {"ap50": empty, "ap75": dict(empty), "ap": dict(empty)}
            return {**none, "pr": [], "operating": {}}
        ev = self._matched() if image_ids is None else self._subset(image_ids)
        with contextlib.redirect_stdout(io.StringIO()):
            ev.accumulate()
        prec = ev.eval["precision"][:, :, :, AREA_ALL, MAX_DETS_100]  # [T, R, K]
        score = ev.eval["scores"][:, :, :, AREA_ALL, MAX_DETS_100]  # [T, R, K]
        out: dict = {"ap50": {}, "ap75": {}, "ap": {}, "pr": [], "operating": {}}
        recall = ev.params.recThrs
        for k, cat in enumerate(ev.params.catIds):
            name = self.names[cat]
            out["ap50"][name] = _mean_ap(prec[IOU_50, :, k])
            out["ap75"][name] = _mean_ap(prec[IOU_75, :, k])
            out["ap"][name] = _mean_ap(prec[:, :, k])
            if out["ap50"][name] is not None:
                out["pr"] += [
                    {"class": name, "recall": round(float(r), 4), "precision": round(float(p), 4)}
                    for r, p in zip(recall, prec[IOU_50, :, k], strict=True)
                ]
                out["operating"][name] = best_f1(recall, prec[IOU_50, :, k], score[IOU_50, :, k])
        for key in ("ap50", "ap75", "ap"):
            out[key] = _with_mean(out[key])
        return out

    def recall_by_height(self, bins: Sequence[float] = HEIGHT_BINS_PX) -> dict[str, dict]:
        """Per class, the share of ground-truth boxes matched at IoU 0.5 by any detection of
        the evaluation (COCO's matching: down to its lowest score, 100 a frame), by box height:
        {class: {"<24": {"recall", "boxes"}, "24-48": ..., ">=96": ...}}; recall None for a
        bin without boxes. Read from the matches COCOeval made for AP (no second matching)."""
        ev = self._matched()
        edges = [0.0, *bins, float("inf")]
        labels = [f"<{bins[0]:g}"] + [f"{a:g}-{b:g}" for a, b in itertools.pairwise(bins)]
        labels.append(f">={bins[-1]:g}")
        n_img, n_area = len(ev._paramsEval.imgIds), len(ev._paramsEval.areaRng)
        out: dict[str, dict] = {}
        for k, cat in enumerate(ev._paramsEval.catIds):
            found, total = np.zeros(len(labels), int), np.zeros(len(labels), int)
            first = (k * n_area + AREA_ALL) * n_img
            for e in ev.evalImgs[first : first + n_img]:
                if e is None:
                    continue
                for g, gid in enumerate(e["gtIds"]):
                    if e["gtIgnore"][g]:
                        continue
                    b = int(np.searchsorted(edges, self.gt.anns[gid]["bbox"][3], "right")) - 1
                    total[b] += 1
                    found[b] += int(e["gtMatches"][IOU_50, g] > 0)
            out[self.names[cat]] = {
                lab: {"recall": float(f / t) if t else None, "boxes": int(t)}
                for lab, f, t in zip(labels, found, total, strict=True)
            }
        return out


def best_f1(recall: np.ndarray, precision: np.ndarray, score: np.ndarray) -> dict[str, float]:
    """The point of a COCOeval PR curve (101 recall points, their interpolated precision and
    the score of the detection at which the recall is reached) with the highest F1:
    {score, precision, recall, f1}. The score is the operating threshold that gives it: keep
    detections scoring at least that much. Recall points the detections never reach
    (precision 0) are skipped; all-zero curves give score 1.0 (keep nothing)."""
    f1 = np.where(precision > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0)
    i = int(np.argmax(f1))
    if f1[i] <= 0:
        return {"score": 1.0, "precision": 0.0, "recall": 0.0, "f1": 0.0}
    return {
        "score": round(float(score[i]), 4),
        "precision": round(float(precision[i]), 4),
        "recall": round(float(recall[i]), 4),
        "f1": round(float(f1[i]), 4),
    }


def coco_ap(gt: dict, detections: Sequence[dict]) -> dict:
    """One-shot ``CocoEvaluator(gt, detections).evaluate()``."""
    return CocoEvaluator(gt, detections).evaluate()
