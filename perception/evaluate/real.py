"""`perception evaluate-real`: the model on the real-footage test set, as the demo runs it.

The set (data/real/source, imported by the `import-real` stage) is 8 highway frames with 24
labelled lane lines and 28 labelled cars; it is a test set, never trained on. Every frame goes
through the serving pre- and post-processing with the thresholds the demo uses: the
contract's score and lane-existence thresholds, not evaluation's low AP threshold. Scores come
from the project's metric code (perception.metrics via perception.eval_report); on top of
them, the figures a small real set needs:

* lanes: TuSimple accuracy / FP / FN over the labelled lines, per frame and as the mean
* detection: AP50 per class (only car has gt here), from the thresholded detections
* vehicle recall at IoU 0.5 and 0.3: car + truck predictions against the labelled cars,
  class-agnostic among vehicles, matched one to one by descending score; with 28 boxes, 0.3
  shows localisation progress that 0.5 hides
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

Each figure comes twice when the set's calibration has lens distortion: as the demo runs
(frames as recorded) and with the frames undistorted in the preprocessing pass
(serving.undistort). Outputs in --out: metrics.json, summary.md and overlays/<image>.jpg
(labels green, predictions in other colours).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from perception.dataset.schema import Dataset
from perception.evaluate.frames import (
    Frame,
    FrameResult,
    coco_ground_truth,
    collect_frames,
    decoded,
)
from perception.evaluate.predictors import (
    FarFieldPredictor,
    UndistortingPredictor,
    load_model_predictor,
    run_predictors,
)
from perception.evaluate.scoring import score_runs
from perception.metrics import distance, interval, tusimple
from perception.params import EvaluateParams
from serving.contract import CLASS_NAMES
from serving.files import atomic_write_bytes, atomic_write_json, atomic_write_text

VEHICLES = tuple(CLASS_NAMES.index(c) for c in ("car", "truck"))
PERSONS = tuple(CLASS_NAMES.index(c) for c in ("pedestrian", "cyclist"))
IOUS = {"iou50": 0.5, "iou30": 0.3}
MIN_JUDGED_HEIGHT_PX = 12.0  # the labels' rule: vehicles at least 12 px tall are labelled
RUNS = ("demo", "undistorted")  # metrics.json keys: as the demo runs, frames undistorted

# overlay colours (BGR): labels green, predictions magenta (lanes), orange (vehicles), cyan
GT, PRED_LANE = (60, 200, 60), (255, 0, 255)
PRED_VEHICLE, PRED_PERSON = (0, 140, 255), (255, 255, 0)


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


def frame_names(ds: Dataset, frames: list[Frame]) -> list[str]:
    """Each frame's source image name (the manifest's per-clip ``sources``, written by the
    TuSimple importer), else "<clip>/<frame>"."""
    sources = {c["clip_id"]: c.get("sources") or [] for c in ds.manifest["clips"]}
    names = []
    for f in frames:
        src = sources.get(f.clip.clip_id, [])
        k = f.label.frame
        names.append(Path(src[k]).name if k < len(src) else f"{f.clip.clip_id}/{k:06d}")
    return names


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
        int(np.isin(r.classes, PERSONS).sum()), box_fit(frame, r),
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
        "false_vehicle_boxes_per_frame": {k: sum(s.false[k] for s in scores) / n for k in IOUS},
        "person_boxes": sum(s.persons for s in scores),
        "box_fit_iou30": _fit_medians(scores),
        "interval95": frame_intervals(scores),
        "per_frame": [asdict(s) for s in scores],
    }


def evaluate_real(
    data: str | Path, model: str, out: str | Path, params: EvaluateParams, progress: bool = True,
    far_field: int = 0,
) -> dict[str, Any]:  # fmt: skip
    """Score the model on every frame of the dataset at data as the demo runs it (and
    undistorted, when a clip's calibration has distortion); write the outputs into out (see
    the module doc). far_field: the demo's --far-field (serving.farfield). Returns
    metrics.json's dict."""
    ds = Dataset(data)
    frames = collect_frames(ds, ds.clip_ids())
    # the labels apply their own 12-px rule (inclusive rows) and flag occlusion: every
    # labelled box counts, none is "don't care"
    p = replace(params, min_box_height_px=0.0, max_occlusion=1.0)
    gt = coco_ground_truth(frames, ds.root, p)
    predictors: list[Any] = [load_model_predictor(model)]
    c = predictors[0].contract
    if any(f.calib.has_distortion for f in frames):
        predictors.append(UndistortingPredictor(load_model_predictor(model)))
    if far_field:
        predictors = [FarFieldPredictor(p, far_field) for p in predictors]
    runs = run_predictors(frames, predictors, progress)
    metrics, _ = score_runs(frames, runs, gt, p)
    names = frame_names(ds, frames)
    doc: dict[str, Any] = {
        "model": str(model),
        "frames": len(frames),
        "gt_lanes": sum(len(f.gt_lanes()) for f in frames),
        "gt_vehicles": sum(len(f.label.obstacles) for f in frames),
        "score_thresholds": dict(zip(c.class_names, c.thresholds(), strict=True)),
        "lane_exist_threshold": c.lane_exist_threshold,
        "far_field": far_field,
    }
    for key, run in zip(RUNS, runs, strict=False):
        scores = [score_frame(f, r, n) for f, r, n in zip(frames, run.results, names, strict=True)]
        doc[key] = summarize(scores, metrics[run.name])
    out = Path(out)
    atomic_write_json(out / "metrics.json", doc)
    atomic_write_text(out / "summary.md", summary_markdown(doc))
    write_overlays(out / "overlays", frames, runs[0].results, doc["demo"]["per_frame"])
    return doc


# ---------------------------------------------------------------- pictures and summary


def _polyline(img: np.ndarray, xs: np.ndarray, rows: list[int], colour: tuple, width: int):
    """A lane through its valid rows (x >= 0), left open across gaps, a dot per point."""
    run: list[tuple[int, int]] = []
    for x, r in [*zip(xs, rows, strict=True), (-1.0, 0)]:  # the sentinel ends the last run
        if x >= 0:
            run.append((round(float(x)), int(r)))
            cv2.circle(img, run[-1], width + 1, colour, -1, cv2.LINE_AA)
            continue
        if len(run) >= 2:
            cv2.polylines(img, [np.array(run, np.int32)], False, colour, width, cv2.LINE_AA)
        run = []


def draw_frame(img: np.ndarray, frame: Frame, r: FrameResult, s: dict) -> np.ndarray:
    """Labels (green) and predictions over one BGR frame, with its figures on top."""
    for xs in frame.gt_lanes():
        _polyline(img, xs, frame.h_samples, GT, 3)
    for xs in r.lanes:
        _polyline(img, xs, frame.h_samples, PRED_LANE, 2)
    for o in frame.label.obstacles:
        x1, y1, x2, y2 = (round(float(v)) for v in o.box)
        cv2.rectangle(img, (x1, y1), (x2, y2), GT, 2)
    for box, score, cls in zip(r.boxes, r.scores, r.classes, strict=True):
        colour = PRED_PERSON if int(cls) in PERSONS else PRED_VEHICLE
        x1, y1, x2, y2 = (round(float(v)) for v in box)
        cv2.rectangle(img, (x1, y1), (x2, y2), colour, 1, cv2.LINE_AA)
        text = f"{CLASS_NAMES[int(cls)]} {score:.2f}"
        cv2.putText(img, text, (x1, max(y1 - 4, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1)
    lines = [
        f"{s['image']}  lanes acc {s['lane_acc']:.2f} FP {s['lane_fp']:.2f} FN "
        f"{s['lane_fn']:.2f}  vehicles found {s['found']['iou50']}/{s['gt_vehicles']} @0.5, "
        f"{s['found']['iou30']} @0.3  false {s['false']['iou50']}  persons {s['persons']}",
        "green: labels   magenta: predicted lanes   orange: predicted vehicles   "
        "cyan: predicted persons",
    ]
    cv2.rectangle(img, (0, 0), (img.shape[1], 48), (0, 0, 0), -1)
    for k, line in enumerate(lines):
        cv2.putText(img, line, (8, 18 + 22 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                    (255, 255, 255), 1, cv2.LINE_AA)  # fmt: skip
    return img


def write_overlays(
    folder: Path, frames: list[Frame], results: list[FrameResult], per_frame: list[dict]
) -> None:
    """overlays/<image stem>.jpg for each frame (the demo run's predictions)."""
    for img, f, r, s in zip(decoded(frames), frames, results, per_frame, strict=True):
        ok, jpg = cv2.imencode(".jpg", draw_frame(img, f, r, s), [cv2.IMWRITE_JPEG_QUALITY, 90])
        assert ok
        atomic_write_bytes(folder / f"{Path(s['image']).stem}.jpg", jpg.tobytes())


def _fit_text(m: dict[str, Any]) -> str:
    f = m["box_fit_iou30"]
    if not f["pairs"]:
        return "-"
    return f"{f['height_ratio']:.2f} x {f['width_ratio']:.2f} ({f['pairs']})"


def _shift_text(m: dict[str, Any]) -> str:
    f = m["box_fit_iou30"]
    return f"{f['top_shift']:+.2f} / {f['bottom_shift']:+.2f}" if f["pairs"] else "-"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f} %"


def _interval_text(m: dict[str, Any], key: str | None, name: str) -> str:
    ci = m.get("interval95", {}).get(key) if key else None
    if not ci:
        return "-"
    if "/ frame" in name:
        return f"{ci[0]:.2f} - {ci[1]:.2f}"
    return f"{100 * ci[0]:.1f} - {100 * ci[1]:.1f} %"


def summary_markdown(doc: dict[str, Any]) -> str:
    """The headline figures of each run and the demo run's per-frame table, in Markdown."""
    runs = [k for k in RUNS if k in doc]
    thr = ", ".join(f"{name} {t:g}" for name, t in doc["score_thresholds"].items())
    rows = [  # (figure, its text for a run, its interval's key)
        ("lane accuracy (bar >= 88 %)", lambda m: _pct(m["lanes"]["accuracy"]), "lane_acc"),
        ("lane FP (bar <= 15 %)", lambda m: _pct(m["lanes"]["fp"]), "lane_fp"),
        ("lane FN (bar <= 20 %)", lambda m: _pct(m["lanes"]["fn"]), "lane_fn"),
        ("AP50 car", lambda m: _pct(m["ap50"]["car"]), None),
        ("vehicle recall @ IoU 0.5 (bar >= 70 %)", lambda m: _pct(m["vehicle_recall"]["iou50"]),
         "vehicle_recall_iou50"),
        ("vehicle recall @ IoU 0.3", lambda m: _pct(m["vehicle_recall"]["iou30"]),
         "vehicle_recall_iou30"),
        ("false vehicle boxes / frame @ 0.5 (bar <= 1)",
         lambda m: f"{m['false_vehicle_boxes_per_frame']['iou50']:.2f}",
         "false_vehicle_boxes_per_frame_iou50"),
        ("pedestrian + cyclist boxes, whole set (bar <= 1)", lambda m: str(m["person_boxes"]),
         None),
        ("vehicle box / label, height x width (median, pairs @ 0.3)", _fit_text, None),
        ("box edge shift, top / bottom (x label height, + = down)", _shift_text, None),
    ]  # fmt: skip
    out = [
        f"# Real footage: {doc['model']}",
        "",
        f"{doc['frames']} frames, {doc['gt_lanes']} labelled lane lines, {doc['gt_vehicles']} "
        f"labelled vehicles; the demo's thresholds: score {thr}, lane existence "
        f"{doc['lane_exist_threshold']}.",
        "",
        "| figure | " + " | ".join(runs) + " | demo, 95 % interval over frames |",
        "|---|" + "---|" * (len(runs) + 1),
        *(
            f"| {name} | "
            + " | ".join(get(doc[k]) for k in runs)
            + f" | {_interval_text(doc['demo'], key, name)} |"
            for name, get, key in rows
        ),
        "",
        "The interval: the frames drawn with replacement 10,000 times (percentile bootstrap);"
        " how far a figure could move on other frames like these, not across training runs.",
        "",
        "Per frame (as the demo runs):",
        "",
        "| image | lane acc | FP | FN | vehicles @0.5 | @0.3 | false @0.5 | persons |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in doc["demo"]["per_frame"]:
        n = s["gt_vehicles"]
        out.append(
            f"| {s['image']} | {_pct(s['lane_acc'])} | {_pct(s['lane_fp'])} | "
            f"{_pct(s['lane_fn'])} | {s['found']['iou50']}/{n} | {s['found']['iou30']}/{n} | "
            f"{s['false']['iou50']} | {s['persons']} |"
        )
    return "\n".join(out) + "\n"
