"""`perception evaluate`: score predictors on a split through one set of metric code.

Every frame of the chosen split goes through the classical baseline (perception.baseline)
and, with --model, through the model's predictor (perception.model.predict.load_predictor),
which runs the serving pre- and post-processing. Predicted lanes are resampled to the clip's
h_samples before scoring. Outputs in --out (all written atomically):

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
"""

from __future__ import annotations

import argparse
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
from tqdm import tqdm

from perception.dataset.coco import coco_categories, coco_image, obstacle_to_coco_annotation
from perception.dataset.schema import Clip, Dataset, FormatError, FrameLabel
from perception.dataset.split import load_splits
from perception.dataset.tusimple import lanes_to_tusimple_xs
from perception.errors import UserError
from perception.eval_report import print_table, score_runs, write_outputs
from perception.params import EvaluateParams, load_params, section
from serving.geometry import Calib
from serving.io import read_image
from serving.postprocess import FramePrediction, Lanes
from serving.undistort import UndistortingPreprocessor, distort_prediction


class Predictor(Protocol):
    """Anything that turns a frame into a FramePrediction. rows float32[R] are the clip's
    h_samples (source-image rows); a predictor may answer on its own rows (Lanes.rows).
    An optional attribute ``detects = False`` marks a lanes-only predictor."""

    name: str

    def __call__(
        self, frame_bgr: np.ndarray, calib: Calib, rows: np.ndarray
    ) -> FramePrediction: ...


@dataclass
class Frame:
    """One evaluated frame: where it is, its labels and camera, its COCO image id."""

    clip: Clip
    label: FrameLabel
    calib: Calib
    h_samples: list[int]
    tags: dict[str, str]
    image_id: int
    raw_file: str  # image path relative to the dataset root

    @property
    def size(self) -> tuple[int, int]:
        return self.calib.image_width, self.calib.image_height

    def gt_lanes(self) -> list[np.ndarray]:
        """TuSimple xs (float[len(h_samples)], -2 = no point) of lanes with >= 2 points."""
        return [np.asarray(xs, np.float64) for xs in lanes_to_tusimple_xs(self.label.lanes)]


@dataclass
class FrameResult:
    """One predictor's output on one frame, ready for scoring."""

    lanes: list[np.ndarray]  # float[len(h_samples)] x pixels, -2 = no point, >= 2 points
    boxes: np.ndarray  # float32[N, 4] x1 y1 x2 y2 pixels
    scores: np.ndarray  # float32[N]
    classes: np.ndarray  # int[N], index into CLASS_NAMES
    run_time_ms: float


@dataclass
class Run:
    """A predictor and its results, one per frame in frame order."""

    name: str
    detects: bool
    results: list[FrameResult] = field(default_factory=list)


def resample_lanes(lanes: Lanes, h_samples: Sequence[float]) -> list[np.ndarray]:
    """Predicted lanes (xs on lanes.rows, source pixels) -> x per h_samples row by linear
    interpolation between neighbouring anchor rows that both have a point (x >= 0); -2
    elsewhere (outside the lane, or across a gap in it). Lanes left with fewer than two
    points are dropped; the order (slot order) is kept."""
    h = np.asarray(h_samples, np.float64)
    rows = np.asarray(lanes.rows, np.float64)
    order = np.argsort(rows)
    rows = rows[order]
    out = []
    for xs in np.asarray(lanes.xs, np.float64)[:, order]:
        valid = xs >= 0
        if valid.sum() < 2:
            continue
        x = np.interp(h, rows[valid], xs[valid])
        # 1.0 only where both neighbouring anchors are valid (or h hits a valid anchor)
        ok = np.interp(h, rows, valid.astype(np.float64), left=0.0, right=0.0) > 1.0 - 1e-9
        if ok.sum() >= 2:
            out.append(np.where(ok, x, -2.0))
    return out


def collect_frames(dataset: Dataset, clip_ids: Sequence[str], max_frames: int = 0) -> list[Frame]:
    """The frames of the clips in order; max_frames > 0 keeps that many spread evenly."""
    known = set(dataset.clip_ids())
    frames: list[Frame] = []
    for cid in clip_ids:
        if cid not in known:
            raise FormatError(f"{dataset.root}: splits name clip {cid!r}, not in the dataset")
        clip = dataset.clip(cid)
        calib, meta = clip.calib, clip.meta
        prefix = clip.path.relative_to(dataset.root).as_posix()
        for label in clip.labels:
            frames.append(
                Frame(
                    clip,
                    label,
                    calib,
                    list(meta.h_samples),
                    dict(meta.tags),
                    0,
                    f"{prefix}/{label.image}",
                )
            )
    if 0 < max_frames < len(frames):
        keep = np.linspace(0, len(frames) - 1, max_frames).round().astype(int)
        frames = [frames[i] for i in sorted(set(keep.tolist()))]
    for i, f in enumerate(frames, 1):
        f.image_id = i
    return frames


def coco_ground_truth(
    frames: Sequence[Frame], root: Path, params: EvaluateParams | None = None
) -> dict:
    """COCO gt dict of the frames (perception.dataset.coco's layout, image id = Frame.image_id).

    Objects too small or too hidden to be judged (box shorter than min_box_height_px at 720
    rows, or occlusion above max_occlusion) become "don't care" regions (iscrowd 1, as KITTI's
    DontCare and CityPersons' ignore regions): a detection on them is neither a true nor a
    false positive, and missing them is no false negative."""
    p = params or EvaluateParams()
    images: list[dict] = []
    anns: list[dict] = []
    for f in frames:
        images.append(coco_image(f.image_id, f.clip, f.label, root, f.size))
        min_h = p.min_box_height_px * f.size[1] / 720.0
        for obs in f.label.obstacles:
            try:
                ann = obstacle_to_coco_annotation(obs, len(anns) + 1, f.image_id)
            except ValueError as e:  # an unknown class, a box of other than 4 numbers
                where = f.clip.path / "labels.jsonl"
                raise FormatError(f"{where}: frame {f.label.frame}: {e}") from None
            if ann["bbox"][3] < min_h or obs.occlusion > p.max_occlusion:
                ann["iscrowd"] = 1
            anns.append(ann)
    return {
        "info": {"description": f"perception evaluate {root}"},
        "images": images,
        "annotations": anns,
        "categories": coco_categories(),
    }


def _read(path: Path) -> np.ndarray:
    """BGR; a regular image file within the size cap, else a SourceError naming it."""
    return read_image(path, cv2.IMREAD_COLOR)


def decoded(frames: Sequence[Frame], ahead: int = 4) -> Iterator[np.ndarray]:
    """BGR images of the frames in order, decoded by two threads a few frames ahead."""
    with ThreadPoolExecutor(2) as pool:
        queue: deque[Future[np.ndarray]] = deque()
        for f in frames:
            queue.append(pool.submit(_read, f.clip.frame_path(f.label)))
            if len(queue) > ahead:
                yield queue.popleft().result()
        while queue:
            yield queue.popleft().result()


def predict_one(predictor: Predictor, img: np.ndarray, frame: Frame) -> FrameResult:
    """Run a predictor on one frame; lanes resampled to the frame's h_samples."""
    rows = np.asarray(frame.h_samples, np.float32)
    t0 = time.perf_counter()
    pred = predictor(img, frame.calib, rows)
    ms = (time.perf_counter() - t0) * 1000.0
    d = pred.detections
    boxes = np.asarray(d.boxes, np.float32).reshape(-1, 4)
    scores = np.asarray(d.scores, np.float32)
    finite = np.isfinite(boxes).all(axis=1) & np.isfinite(scores)  # a broken model's NaN
    lanes = [
        np.where(np.isfinite(xs), xs, -2.0) for xs in resample_lanes(pred.lanes, frame.h_samples)
    ]
    return FrameResult(
        lanes,
        boxes[finite],
        scores[finite],
        np.asarray(d.classes, np.int64)[finite],
        ms,
    )


def run_predictors(
    frames: Sequence[Frame], predictors: Sequence[Predictor], progress: bool = True
) -> list[Run]:
    """Every predictor on every frame (each frame decoded once)."""
    runs = [Run(p.name, bool(getattr(p, "detects", True))) for p in predictors]
    bar = tqdm(
        decoded(frames), total=len(frames), unit="frame", desc="evaluate", disable=not progress
    )
    for img, frame in zip(bar, frames, strict=True):
        for run, p in zip(runs, predictors, strict=True):
            run.results.append(predict_one(p, img, frame))
    return runs


class UndistortingPredictor:
    """A model predictor that sees each frame through its calibration's undistortion, fused
    into the preprocessing pass (serving.undistort), and answers in the distorted source
    image's pixels like any predictor. Frames whose calibration has no distortion go the
    plain way. inner: a perception.model.predict predictor (with .pre, .contract)."""

    detects = True

    def __init__(self, inner: Any):
        self.inner = inner
        self.name = f"{inner.name}+undistort"
        pre = UndistortingPreprocessor(inner.contract, Calib.default())
        pre.out = inner.pre.out  # keep writing into the engine's bound input buffer
        inner.pre = self.pre = pre

    def __call__(self, frame_bgr: np.ndarray, calib: Calib, rows: np.ndarray) -> FramePrediction:
        h, w = frame_bgr.shape[:2]
        same = (calib.image_width, calib.image_height) == (w, h)
        cal = calib if same else calib.scaled(w, h)
        self.pre.calib = cal
        return distort_prediction(self.inner(frame_bgr, cal, rows), cal)


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


def load_model_predictor(path: str) -> Predictor:
    """perception.model.predict.load_predictor, imported only when a model is asked for."""
    p = Path(path)
    if not p.is_file():
        raise UserError(
            f"{path}: " + ("not a regular file" if p.exists() else "missing model file")
        )
    try:
        from perception.model.predict import load_predictor
    except ImportError as e:
        raise UserError(f"cannot load models here ({e})") from None
    return load_predictor(path)  # a bad file: one line (train.load_model, serving.engine)


def _cmd(args: argparse.Namespace) -> int:
    from perception.baseline import HoughBaseline

    if args.splits is not None and not Path(args.splits).is_file():
        raise UserError(f"{args.splits}: missing splits file")
    base = section(load_params(args.params), EvaluateParams)
    overrides = {
        k: v for k, v in (("split", args.split), ("max_frames", args.max_frames)) if v is not None
    }
    params = replace(base, **overrides)
    predictors: list[Predictor] = [HoughBaseline()]
    if args.model:
        model = load_model_predictor(args.model)
        # AP ranks detections down to a low score; the loop's operating threshold is the
        # contract's (evaluation decodes with the same code, only the cut-off differs)
        model.score_threshold = params.ap_score_threshold  # type: ignore[attr-defined]
        predictors.append(UndistortingPredictor(model) if args.undistort else model)
    t0 = time.perf_counter()
    metrics = evaluate(args.data, args.splits, args.out, predictors, params, progress=True)
    print_table(metrics)
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
    p.add_argument("--split", default=None, help="default: evaluate.split of params")
    p.add_argument(
        "--undistort",
        action="store_true",
        help="undistort frames with their clip's lens calibration before the model",
    )
    p.add_argument("--params", default="params.yaml", help="default: %(default)s")
    p.add_argument(
        "--max-frames",
        type=int,
        default=None,
        help="evaluate at most this many frames, spread over the split "
        "(default: evaluate.max_frames of params; 0 = all)",
    )
    p.set_defaults(func=_cmd)
