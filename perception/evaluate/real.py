"""`perception evaluate-real`: the model on the real-footage test set, as the demo runs it.

The set (data/real/source, imported by the `import-real` stage) is 8 highway frames with 24
labelled lane lines and 28 labelled cars; it is a test set, never trained on. Every frame goes
through the serving pre- and post-processing with the thresholds the demo uses: the
contract's score and lane-existence thresholds, not evaluation's low AP threshold. Scores come
from the project's metric code (perception.metrics via perception.eval_report); on top of
them, the figures a small real set needs:

* lanes: TuSimple accuracy / FP / FN over the labelled lines, per frame and as the mean
* detection: AP50 per class (only car has gt here), from the thresholded detections
* vehicles: recall at IoU 0.5 and 0.3 (and at 0.5 by the labelled car's size), false
  vehicle boxes per frame, person boxes, how boxes fit real cars, and a 95 % interval over
  frames for each bar's figure: perception.evaluate.real_scoring

Each figure comes twice when the set's calibration has lens distortion: as the demo runs
(frames as recorded) and with the frames undistorted in the preprocessing pass
(serving.undistort). Outputs in --out: metrics.json, summary.md and overlays/<image>.jpg
(labels green, predictions in other colours).
"""

from __future__ import annotations

from dataclasses import replace
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
from perception.evaluate.real_scoring import PERSONS, score_frame, summarize
from perception.evaluate.scoring import score_runs
from perception.params import EvaluateParams
from serving.contract import CLASS_NAMES
from serving.files import atomic_write_bytes, atomic_write_json, atomic_write_text

SIZE_NOTE = "COCO areas: small < 32x32 px, large >= 96x96"
RUNS = ("demo", "undistorted")  # metrics.json keys: as the demo runs, frames undistorted

# overlay colours (BGR): labels green, predictions magenta (lanes), orange (vehicles), cyan
GT, PRED_LANE = (60, 200, 60), (255, 0, 255)
PRED_VEHICLE, PRED_PERSON = (0, 140, 255), (255, 255, 0)


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


def _sizes_text(m: dict[str, Any]) -> str:
    return ", ".join(f"{k} {f}/{n}" for k, (f, n) in m["vehicles_by_size_iou50"].items())


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f} %"


def _interval_text(m: dict[str, Any], key: str | None) -> str:
    """The 95 % interval of the figure under key: a count per frame, else a share."""
    if not key or not (ci := m.get("interval95", {}).get(key)):
        return "-"
    if "per_frame" in key:
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
        (f"vehicles found @ IoU 0.5 by size ({SIZE_NOTE})", _sizes_text, None),
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
            + f" | {_interval_text(doc['demo'], key)} |"
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
