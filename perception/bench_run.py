"""The measurements of `perception bench` (the command itself is perception/bench.py).

Frames of the test clips are decoded once into memory. Every variant (the project's loop on
each ONNX model, PyTorch eager, the naive loop) and the model-only timing run on the same
frames in alternating blocks, so that machine noise hits all of them alike; each keeps its
own per-stage times (ms) and the wall time of its own blocks (throughput = frames / wall).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from perception.bench_naive import NaiveLoop
from perception.dataset.schema import Dataset
from perception.dataset.split import load_splits
from perception.errors import UserError, first_line
from serving import overlay
from serving.contract import ModelOutputs
from serving.geometry import Calib
from serving.io import ClipSource
from serving.postprocess import Postprocessor
from serving.preprocess import Preprocessor
from serving.runtime import Runtime
from serving.source import Frame
from serving.stats import describe_ms
from serving.target import Profile
from serving.tracking import LaneSmoother, Tracker, read_scene

STAGES = ("pre", "infer", "post", "track", "draw")
VARIANT_FILES = {
    "pytorch": "model.pt",
    "fp32": "perception.onnx",
    "int8": "perception.int8.onnx",
    "fp16": "perception.fp16.onnx",
    "naive": "perception.onnx",
}
EVAL_DIRS = {"pytorch": "eval", "fp32": "eval-fp32", "int8": "eval-int8", "fp16": "eval-fp16"}

Step = Callable[[np.ndarray, float, "float | None", dict[str, int]], tuple[Any, Any, Any, Any]]


def load_frames(
    data: Path, splits: Path, max_distinct: int
) -> tuple[list[Frame], Calib, list[str]]:
    """Decode up to max_distinct frames of the test split's clips into memory, the same
    number of consecutive frames from each clip (tracking sees real motion). Returns the
    frames, the first clip's calibration and the clip ids used."""
    ids = load_splits(splits)["test"]  # FormatError naming the file
    if not ids:
        raise ValueError(f"{splits}: field 'test': no clips")
    per = max(1, math.ceil(max_distinct / len(ids)))
    frames: list[Frame] = []
    used: list[str] = []
    calib: Calib | None = None
    for cid in ids:
        path = Dataset(data).clip(cid).path  # refuses a clip id that leaves clips/
        if not path.is_dir():
            raise FileNotFoundError(f"{path}: test clip listed in {splits} is missing")
        with ClipSource(path) as src:
            calib = calib or src.calib_or_default()
            for i, f in enumerate(src):
                if i >= per or len(frames) >= max_distinct:
                    break
                frames.append(f)
        used.append(cid)
        if len(frames) >= max_distinct:
            break
    assert calib is not None
    return frames, calib, used


class TorchLoop:
    """PyTorch eager in the project's loop: the same preprocessing, decode and tracking."""

    def __init__(self, model: Path, calib: Calib, use_cuda: bool, threads: int):
        import torch

        from perception.train import load_model

        torch.set_num_threads(threads)
        self.torch = torch
        self.dev = torch.device("cuda" if use_cuda else "cpu")
        self.net = load_model(model, self.dev)  # UserError: one line, not torch's
        c = self.net.contract
        self.contract, self.calib = c, calib
        self.pre = Preprocessor(c)
        self.post = Postprocessor(c, calib.image_width, calib.image_height)
        self.smoother, self.tracker = LaneSmoother(), Tracker(calib)
        self.pre.warmup()
        self.post.warmup()

    def __call__(
        self, image: np.ndarray, t_s: float, speed: float | None, ns: dict[str, int]
    ) -> tuple[Any, Any, Any, Any]:
        clock = time.perf_counter_ns
        t0 = clock()
        x = self.pre(image)
        t1 = clock()
        with self.torch.inference_mode():
            out = self.net(self.torch.from_numpy(x).to(self.dev))
            out = ModelOutputs(*(o.float().cpu().numpy() for o in out))
        t2 = clock()
        pred = self.post(out.image(0))
        pred.lanes = self.smoother(pred.lanes)
        t3 = clock()
        lane, tracks, warn = read_scene(pred, self.calib, self.tracker, t_s, speed)
        t4 = clock()
        ns.update(pre=t1 - t0, infer=t2 - t1, post=t3 - t2, track=t4 - t3)
        return pred, lane, tracks, warn


def runtime_step(rt: Runtime) -> Step:
    def step(img: np.ndarray, t: float, v: float | None, ns: dict[str, int]) -> tuple:
        r = rt(img, t, v, ns)
        return r.pred, r.lane, r.tracks, r.warnings

    return step


@dataclass
class Variant:
    """One contender and what it measured: per-stage ms per frame, wall ns of its blocks."""

    name: str
    file: str
    step: Step | None = None
    status: str = "ok"
    times: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})
    wall_ns: int = 0
    done: int = 0

    def frame(self, f: Frame, t_s: float, record: bool) -> None:
        """One frame: the step, then drawing onto a copy; stage times kept when record."""
        assert self.step is not None
        ns: dict[str, int] = {}
        pred, lane, tracks, warn = self.step(f.image, t_s, f.speed_mps, ns)
        t0 = time.perf_counter_ns()
        img = f.image.copy()
        overlay.draw(img, pred, tracks, lane, warn)
        ns["draw"] = time.perf_counter_ns() - t0
        if record:
            for s in STAGES:
                self.times[s].append(ns[s] / 1e6)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "file": self.file, "status": self.status}
        if self.status != "ok":
            return out
        e2e = np.sum([self.times[s] for s in STAGES], 0)
        out.update(frames=self.done, wall_s=self.wall_ns / 1e9)
        out["fps"] = self.done / (self.wall_ns / 1e9) if self.wall_ns else 0.0
        out["e2e"] = describe_ms(e2e)
        out["stages"] = {s: describe_ms(self.times[s]) for s in STAGES}
        return out


def build_variant(name: str, p: Profile, models: Path, calib: Calib, gpu: bool) -> Variant:
    """A ready-to-run Variant, or one with a 'skipped: ...' status (file missing, no CUDA
    for FP16, a runtime that refuses the model). Runtime cold-start numbers stay on .rt."""
    path = models / VARIANT_FILES[name]
    v = Variant(name, str(path))
    if name == "fp16" and not gpu:
        v.status = "skipped: no CUDA"
    elif not path.exists():
        v.status = "skipped: missing file"
    else:
        try:
            v.step = _make_step(name, path, p, calib, gpu, v)
        except (RuntimeError, ValueError, UserError) as e:
            v.status = f"skipped: {first_line(e)}"
    return v


def _make_step(name: str, path: Path, p: Profile, calib: Calib, gpu: bool, v: Variant) -> Step:
    if name == "pytorch":
        return TorchLoop(path, calib, gpu, p.threads)
    if name == "naive":
        return NaiveLoop(path, calib, p.device, p.threads)
    rt = Runtime(str(path), calib, p.device, p.threads)
    rt.for_size(calib.image_width, calib.image_height)
    v.rt = rt  # type: ignore[attr-defined]
    return runtime_step(rt)


def model_only(rt: Runtime, frames: list[Frame], start: int, n: int, out: list[float]) -> int:
    """engine.run alone on frames start..start+n (preprocessed first, untimed); appends ms."""
    t_wall = time.perf_counter_ns()
    for i in range(start, start + n):
        rt.pre(frames[i % len(frames)].image)
        t0 = time.perf_counter_ns()
        rt.engine.run()
        out.append((time.perf_counter_ns() - t0) / 1e6)
    return time.perf_counter_ns() - t_wall


def interleave(
    variants: list[Variant],
    rt: Runtime,
    frames: list[Frame],
    n: int,
    warmup: int,
    fps: float,
    block: int = 10,
) -> list[float]:
    """Warm every variant up, then run n frames each in alternating blocks (the order
    rotates every block). Returns the model-only times (ms) of the main runtime."""
    live = [v for v in variants if v.status == "ok"]
    for v in live:
        for i in range(warmup):
            v.frame(frames[i % len(frames)], i / fps, record=False)
    model_ms: list[float] = []
    model_only(rt, frames, 0, min(warmup, 10), [])
    blocks = math.ceil(n / block)
    for b in tqdm(range(blocks), desc="bench", unit="block", leave=False):
        m = min(block, n - b * block)
        order: list[Variant | None] = [*live, None]
        s = b % len(order)
        for cur in order[s:] + order[:s]:
            start = b * block
            if cur is None:
                model_only(rt, frames, start, m, model_ms)
                continue
            t0 = time.perf_counter_ns()
            for i in range(start, start + m):
                cur.frame(frames[i % len(frames)], (warmup + i) / fps, record=True)
            cur.wall_ns += time.perf_counter_ns() - t0
            cur.done += m
    return model_ms


def paced(rt: Runtime, frames: list[Frame], n: int, fps: float) -> dict[str, Any]:
    """serving.loop.run at the camera's rate over n in-memory frames: drops and misses."""
    from serving import loop

    rt.tracker, rt.smoother = Tracker(rt.calib), LaneSmoother()
    feed = [
        Frame(
            i,
            frames[i % len(frames)].image,
            round(i * 1e9 / fps),
            frames[i % len(frames)].speed_mps,
        )
        for i in range(n)
    ]

    def process(frame: Any, stage_ns: dict[str, int]) -> Any:
        return rt(frame.image, frame.t_ns / 1e9, frame.speed_mps, stage_ns)

    def emit(item: loop.Captured, r: Any, ns: dict[str, int]) -> None:
        t0 = time.perf_counter_ns()
        overlay.draw(item.frame.image.copy(), r.pred, r.tracks, r.lane, r.warnings)
        ns["draw"] = time.perf_counter_ns() - t0

    t = loop.run(feed, process, emit, paced_fps=fps)
    offered = t.frames + t.dropped
    return {
        "camera_fps": fps,
        "frames_offered": offered,
        "frames_processed": t.frames,
        "dropped": t.dropped,
        "drop_pct": 100.0 * t.dropped / offered if offered else 0.0,
        "deadline_misses": t.deadline_misses,
        "miss_pct": 100.0 * t.deadline_misses / t.frames if t.frames else 0.0,
        "fps": t.frames / t.wall_s if t.wall_s else 0.0,
        "latency": describe_ms(t.latency_ms),
    }


def accuracy(eval_dir: Path, name: str) -> dict[str, Any]:
    """Lane accuracy and mean AP50 from `perception evaluate`'s metrics.json; 'n/a' when
    there is none for this variant."""
    na = {"lane_accuracy": "n/a", "map50": "n/a", "metrics_file": None}
    if name not in EVAL_DIRS:
        return na
    path = eval_dir / EVAL_DIRS[name] / "metrics.json"
    try:
        d = json.loads(path.read_text())
        m = d.get("model") or [v for k, v in d.items() if k != "baseline"][-1]
        det = m.get("detection") or {}
        map50 = (det.get("ap50") or {}).get("mean")
        return {
            "lane_accuracy": m["lanes"]["accuracy"],
            "map50": "n/a" if map50 is None else map50,
            "metrics_file": str(path),
        }
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError):
        return na
