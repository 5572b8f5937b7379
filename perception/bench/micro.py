"""Micro-benchmarks for `perception bench`: preprocessing and box decoding / NMS, each
against the library or numpy way of doing it, interleaved (every repetition runs every
method, in a rotating order) so that machine noise hits all of them alike; and the 'track'
stage (lane geometry, tracker, warnings) on a scene with 20 obstacles."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from perception.bench.naive import naive_preprocess, numpy_nms_per_class, numpy_peaks
from serving.contract import BOX_BOTTOM, BOX_LEFT, BOX_RIGHT, BOX_TOP, ModelContract
from serving.geometry import Calib
from serving.postprocess import NO_POINT, Detections, FramePrediction, Lanes, decode_boxes, nms
from serving.preprocess import Preprocessor
from serving.runtime import Runtime
from serving.stats import describe_ms
from serving.undistort import UndistortingPreprocessor

MICRO_SIZE = (1280, 720)  # (width, height) of the frames the preprocessing is timed on
# a dashcam with strong barrel distortion (the real set's calibration, data/real/calib.json):
# the undistorting kernel's cost hardly depends on the coefficients, only on there being any
BENCH_LENS = Calib(1280, 720, 1158.8, 1154.1, 669.6, 388.1, 1.25,
                   dist=(-0.257, 0.043, -0.0007, 0.0001, -0.115))  # fmt: skip


def interleaved(
    fns: dict[str, Callable[[int], object]],
    reps: int,
    warmup: int = 3,
    before: Callable[[int], object] | None = None,
) -> dict:
    """Run each fn(rep) reps times, rotating the order every repetition; returns per-method
    describe() with _ms keys. warmup repetitions first, not timed; before(rep), when given,
    runs untimed before every timed call."""
    names = list(fns)
    times: dict[str, list[float]] = {k: [] for k in names}
    for r in range(-warmup, reps):
        s = r % len(names)
        for k in names[s:] + names[:s]:
            if before is not None:
                before(r)
            t0 = time.perf_counter_ns()
            fns[k](r)
            if r >= 0:
                times[k].append((time.perf_counter_ns() - t0) / 1e6)
    return {k: describe_ms(v) for k, v in times.items()}


def _ratio(a: dict[str, Any], b: dict[str, Any]) -> float:
    """a's p50 over b's p50 (how many times slower a is than b)."""
    return float(a["p50_ms"] / b["p50_ms"]) if b["p50_ms"] > 0 else float("nan")


def bench_preprocess(frames: list[np.ndarray], c: ModelContract, reps: int) -> dict[str, Any]:
    """The serving Preprocessor vs cv2.dnn.blobFromImage vs the numpy chain, on frames
    resized to 1280x720 BGR, same output size (contract input), mean/std scaling, BGR->RGB.
    blobFromImage takes one scale for all channels: 1 / mean(std). Lens undistortion
    (BENCH_LENS): the serving kernel with its sampling map at model resolution, against a
    full-frame cv2.remap (maps precomputed) followed by the plain kernel. Before every call,
    untimed, the next frame is copied into the buffer the method reads, as a decoder writes
    each frame just before the loop preprocesses it (runs.feed does the same)."""
    src = [f if f.shape[1::-1] == MICRO_SIZE else cv2.resize(f, MICRO_SIZE) for f in frames[:8]]
    fresh = np.empty_like(src[0])
    pre = Preprocessor(c)
    pre.warmup()
    size, mean, scale = (c.input_width, c.input_height), c.mean, 1.0 / float(np.mean(c.std))

    undistort = UndistortingPreprocessor(c, BENCH_LENS)
    undistort.warmup()
    lens = BENCH_LENS
    mx, my = cv2.initUndistortRectifyMap(
        lens.K, np.array(lens.dist), None, lens.K, MICRO_SIZE, cv2.CV_16SC2
    )

    stats = interleaved(
        {
            "serving": lambda r: pre(fresh),
            "blobFromImage": lambda r: cv2.dnn.blobFromImage(fresh, scale, size, mean, swapRB=True),
            "numpy_chain": lambda r: naive_preprocess(fresh, c),
            "serving_undistort": lambda r: undistort(fresh),
            "cv2_remap+serving": lambda r: pre(cv2.remap(fresh, mx, my, cv2.INTER_LINEAR)),
        },
        reps,
        before=lambda r: np.copyto(fresh, src[r % len(src)]),
    )
    return {
        "frame_size": list(MICRO_SIZE),
        "reps": reps,
        "methods": stats,
        "blob_over_serving_p50": _ratio(stats["blobFromImage"], stats["serving"]),
        "numpy_over_serving_p50": _ratio(stats["numpy_chain"], stats["serving"]),
        "undistort_over_serving_p50": _ratio(stats["serving_undistort"], stats["serving"]),
        "remap_over_undistort_p50": _ratio(stats["cv2_remap+serving"], stats["serving_undistort"]),
    }


def synthetic_heads(c: ModelContract, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A realistic heatmap float32[C, h, w]: Gaussian blobs at ~10 objects per class over low
    noise, and box distances float32[4, h, w] in input pixels (10-60 px)."""
    rng = np.random.default_rng(seed)
    gh, gw = c.grid
    yy, xx = np.mgrid[0:gh, 0:gw]
    heat = rng.uniform(0.0, 0.05, (len(c.class_names), gh, gw)).astype(np.float32)
    for k in range(len(c.class_names)):
        for _ in range(10):
            cy, cx, s = rng.uniform(0, gh), rng.uniform(0, gw), rng.uniform(1.0, 3.0)
            blob = rng.uniform(0.5, 0.95) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
            heat[k] = np.maximum(heat[k], blob)
    box = rng.uniform(10.0, 60.0, (4, gh, gw)).astype(np.float32)
    return heat, box


def candidates(
    heat: np.ndarray, box: np.ndarray, threshold: float, stride: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every 3x3 peak above threshold -> (boxes float32[N, 4] input pixels, scores, classes)."""
    k, y, x = numpy_peaks(heat, threshold)
    cx, cy = (x + 0.5) * stride, (y + 0.5) * stride
    b = np.stack(
        [
            cx - box[BOX_LEFT, y, x],
            cy - box[BOX_TOP, y, x],
            cx + box[BOX_RIGHT, y, x],
            cy + box[BOX_BOTTOM, y, x],
        ],
        1,
    )
    return b.astype(np.float32), heat[k, y, x].astype(np.float32), k.astype(np.int32)


def bench_decode(c: ModelContract, reps: int, threshold: float = 0.01) -> dict[str, Any]:
    """Box decode + NMS on the same candidates (every 3x3 peak above a low threshold of a
    synthetic heatmap): serving decode_boxes (peaks + NMS, Numba), serving nms alone,
    torchvision.ops.batched_nms, numpy NMS, and numpy peaks + NMS."""
    import torch
    import torchvision

    heat, box = synthetic_heads(c)
    boxes, scores, classes = candidates(heat, box, threshold, c.stride)
    n, iou, s = len(scores), c.nms_iou, float(c.stride)
    per_class = np.full(len(c.class_names), threshold, np.float32)
    tb, ts, tc = torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(classes)

    def numpy_decode(r: int) -> object:
        b, sc, k = candidates(heat, box, threshold, c.stride)
        return numpy_nms_per_class(b, sc, k, iou)

    stats = interleaved(
        {
            "serving_decode": lambda r: decode_boxes(
                heat, box, per_class, s, 1.0, 1.0, 1e6, 1e6, iou, n
            ),
            "serving_nms": lambda r: nms(boxes, scores, classes, iou, n),
            "torchvision_nms": lambda r: torchvision.ops.batched_nms(tb, ts, tc, iou),
            "numpy_nms": lambda r: numpy_nms_per_class(boxes, scores, classes, iou),
            "numpy_decode": numpy_decode,
        },
        reps,
    )
    kept = {
        "serving_nms": len(nms(boxes, scores, classes, iou, n)),
        "torchvision_nms": len(torchvision.ops.batched_nms(tb, ts, tc, iou)),
        "numpy_nms": len(numpy_nms_per_class(boxes, scores, classes, iou)),
    }
    return {
        "candidates": n,
        "threshold": threshold,
        "reps": reps,
        "kept": kept,
        "methods": stats,
        "numpy_nms_over_serving_nms_p50": _ratio(stats["numpy_nms"], stats["serving_nms"]),
        "torchvision_over_serving_nms_p50": _ratio(stats["torchvision_nms"], stats["serving_nms"]),
        "numpy_decode_over_serving_decode_p50": _ratio(
            stats["numpy_decode"], stats["serving_decode"]
        ),
    }


def scene_frames(calib: Calib, n_frames: int, n_obstacles: int = 20, seed: int = 0):
    """(t_s, FramePrediction) per frame at 20 Hz: n_obstacles cars in three lanes, 8-80 m
    ahead at their own relative speeds, boxes projected through calib with 1 px noise, one
    detection in twenty missed; the ego lane's two lines, straight, 3.5 m apart."""
    rng = np.random.default_rng(seed)
    x0 = rng.uniform(8.0, 80.0, n_obstacles)
    y0 = rng.choice([-3.5, 0.0, 3.5], n_obstacles) + rng.uniform(-0.4, 0.4, n_obstacles)
    v = rng.uniform(-6.0, 3.0, n_obstacles)
    rows = (np.arange(160, 720, 10) * calib.image_height / 720.0).astype(np.float32)
    g = calib.pixel_to_ground(np.stack([np.full(len(rows), calib.cx), rows], 1))
    lane_xs = np.full((4, len(rows)), NO_POINT, np.float32)
    for k, y in enumerate((1.75, -1.75)):
        uv, _ = calib.project(np.stack([g[:, 0], np.full(len(rows), y), np.zeros(len(rows))], 1))
        ok = np.isfinite(uv[:, 0]) & (g[:, 0] > 0)
        lane_xs[k, ok] = uv[ok, 0]
    out = []
    for i in range(n_frames):
        t = i / 20.0
        x = np.maximum(x0 + v * t, 4.0)
        seen = rng.uniform(size=n_obstacles) > 0.05
        corners = [(xx, yy, zz) for xx in (0.0, 4.5) for yy in (-0.9, 0.9) for zz in (0.0, 1.5)]
        boxes = []
        for xk, yk in zip(x[seen], y0[seen], strict=True):
            uv, _ = calib.project(np.array([(xk + a, yk + b, c) for a, b, c in corners]))
            boxes.append([uv[:, 0].min(), uv[:, 1].min(), uv[:, 0].max(), uv[:, 1].max()])
        b = np.asarray(boxes, np.float32).reshape(-1, 4) + rng.uniform(-1, 1, (len(boxes), 4))
        det = Detections(b.astype(np.float32), np.full(len(b), 0.8, np.float32),
                         np.zeros(len(b), np.int32))  # fmt: skip
        out.append((t, FramePrediction(Lanes(lane_xs, rows, np.ones(4, np.float32)), det)))
    return out


def bench_scene(rt: Runtime, reps: int, n_obstacles: int = 20) -> dict[str, Any]:
    """The runtime's 'track' stage (Runtime.read_scene: lane geometry, tracker update,
    warnings) per frame on scene_frames, after 30 untimed frames; tracks reset first and
    after. The bar: p50 <= 0.2 ms with 20 tracks."""
    frames = scene_frames(rt.calib, reps + 30, n_obstacles)
    rt.reset()
    times, tracks = [], []
    for k, (t, pred) in enumerate(frames):
        t0 = time.perf_counter_ns()
        r = rt.read_scene(pred, t, 20.0)
        if k >= 30:
            times.append((time.perf_counter_ns() - t0) / 1e6)
            tracks.append(len(r.tracks))
    rt.reset()
    return {
        "obstacles": n_obstacles,
        "reps": reps,
        "tracks_mean": float(np.mean(tracks)),
        "track_stage": describe_ms(times),
    }
