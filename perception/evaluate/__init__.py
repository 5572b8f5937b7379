"""`perception evaluate` and `perception evaluate-real`: score predictors through one set of
metric code.

`perception evaluate`: every frame of the chosen split goes through the classical baseline
(perception.baseline) and, with --model, through the model's predictor
(perception.model.predict.load_predictor), which runs the serving pre- and post-processing.
Predicted lanes are resampled to the clip's h_samples before scoring. Outputs in --out (all
written atomically):

    metrics.json        per predictor: lanes {accuracy, fp, fn, f1}, detection {ap50, ap}
                        per class and mean, distance {median_rel_error, count}, slices
    pr_curves.json      DVC plots: [{class, recall, precision}] at IoU 0.5, main predictor
    slices.png          lane accuracy and vehicle AP50 per slice and predictor
    tusimple_pred.json  TuSimple json lines of the main predictor (run_time in ms)
    tusimple_gt.json    TuSimple json lines of the ground truth
    coco_gt.json        COCO ground truth; coco_pred.json the main predictor's detections

The main predictor is the model when given, else the baseline. Without --splits every clip
of the dataset is evaluated (a test-only set such as data/real/dataset). With --undistort the
model sees each frame through its clip calibration's lens undistortion (serving.undistort).

`perception evaluate-real`: the model on the real-footage test set as the demo runs it
(perception.evaluate.real).

The steps: frames.py (what is scored), predictors.py (running predictors), scoring.py
(metrics per predictor and slice), report.py (the output files, the table), real.py (the
real set's figures, summary and overlays).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from perception.dataset.schema import Dataset
from perception.dataset.split import load_splits
from perception.errors import UserError
from perception.evaluate.frames import Frame, FrameResult, coco_ground_truth, collect_frames
from perception.evaluate.predictors import (
    FarFieldPredictor,
    Predictor,
    UndistortingPredictor,
    load_model_predictor,
    predict_one,
    resample_lanes,
    run_predictors,
)
from perception.evaluate.report import print_recall_by_height, print_table, write_outputs
from perception.evaluate.scoring import score_runs
from perception.params import EvaluateParams, load_params, section

__all__ = [
    "FarFieldPredictor",
    "Frame",
    "FrameResult",
    "Predictor",
    "UndistortingPredictor",
    "evaluate",
    "load_model_predictor",
    "predict_one",
    "register",
    "resample_lanes",
]


def evaluate(
    data: str | Path,
    splits: str | Path | None,
    out: str | Path,
    predictors: Sequence[Predictor],
    params: EvaluateParams | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Score the predictors on params.split of the dataset (every clip when splits is None)
    and write the outputs into out (see the module doc); the last predictor is the main one.
    Returns metrics.json's dict."""
    params = params or EvaluateParams()
    ds = Dataset(data)
    if splits is None:
        clip_ids = ds.clip_ids()
    else:
        doc = load_splits(splits)
        if params.split not in doc:
            raise UserError(f"unknown split {params.split!r} (known: {', '.join(doc)})")
        clip_ids = doc[params.split]
    if not clip_ids:
        raise UserError(f"{splits or data}: no clips to evaluate")
    if not predictors:
        raise UserError("nothing to evaluate: no predictors")
    frames = collect_frames(ds, clip_ids, params.max_frames)
    gt = coco_ground_truth(frames, ds.root, params)
    runs = run_predictors(frames, predictors, progress)
    metrics, pr = score_runs(frames, runs, gt, params)
    write_outputs(Path(out), frames, runs, gt, metrics, pr)
    return metrics


def _cmd(args: argparse.Namespace) -> int:
    from perception.baseline import HoughBaseline

    if args.splits is not None and not Path(args.splits).is_file():
        raise UserError(f"{args.splits}: missing splits file")
    base = section(load_params(args.params), EvaluateParams)
    overrides = {
        k: v for k, v in (("split", args.split), ("max_frames", args.max_frames)) if v is not None
    }
    params = replace(base, **overrides)
    predictors: list[Predictor] = [] if args.no_baseline else [HoughBaseline()]
    if args.model:
        model = load_model_predictor(args.model)
        # AP ranks detections down to a low score; the loop's operating threshold is the
        # contract's (evaluation decodes with the same code, only the cut-off differs)
        model.score_threshold = params.ap_score_threshold  # type: ignore[attr-defined]
        p = UndistortingPredictor(model) if args.undistort else model
        predictors.append(FarFieldPredictor(p, args.far_field) if args.far_field else p)
    t0 = time.perf_counter()
    metrics = evaluate(args.data, args.splits, args.out, predictors, params, progress=True)
    print_table(metrics)
    print_recall_by_height(metrics)
    print(f"{args.out}: written in {time.perf_counter() - t0:.1f} s")
    return 0


def _cmd_real(args: argparse.Namespace) -> int:
    from perception.evaluate.real import evaluate_real, summary_markdown

    params = section(load_params(args.params), EvaluateParams)
    t0 = time.perf_counter()
    doc = evaluate_real(args.data, args.model, args.out, params, far_field=args.far_field)
    print(summary_markdown(doc))
    print(f"{args.out}: written in {time.perf_counter() - t0:.1f} s")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="score the baseline and a model on a split",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    p.add_argument("--data", required=True, help="dataset root (manifest.json, clips/)")
    p.add_argument("--splits", help="splits file (perception split); default: every clip")
    p.add_argument("--out", required=True, help="output folder, e.g. reports/eval")
    p.add_argument("--model", default=None, help="model file to score besides the baseline")
    p.add_argument(
        "--no-baseline", action="store_true", help="score the model alone (no Canny + Hough)"
    )
    p.add_argument("--split", default=None, help="default: evaluate.split of params")
    p.add_argument(
        "--undistort",
        action="store_true",
        help="undistort frames with their clip's lens calibration before the model",
    )
    p.add_argument("--params", default="params.yaml", help="default: %(default)s")
    _far_field_flag(p)
    p.add_argument(
        "--max-frames",
        type=int,
        default=None,
        help="evaluate at most this many frames, spread over the split "
        "(default: evaluate.max_frames of params; 0 = all)",
    )
    p.set_defaults(func=_cmd)
    r = subparsers.add_parser(
        "evaluate-real", help="score a model on the real-footage test set as the demo runs it"
    )
    r.add_argument("--data", required=True, help="imported real set, e.g. data/real/dataset")
    r.add_argument("--model", required=True, help="model file (.onnx, or .pt)")
    r.add_argument("--out", required=True, help="output folder, e.g. reports/eval-real")
    r.add_argument("--params", default="params.yaml", help="default: %(default)s")
    _far_field_flag(r)
    r.set_defaults(func=_cmd_real)


def _far_field_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--far-field", type=int, default=0, metavar="WIDTH",
        help="also run the model on a crop WIDTH source pixels wide around the horizon, for "
        "small far objects (serving/farfield.py; 0 = off, the default)",
    )  # fmt: skip
