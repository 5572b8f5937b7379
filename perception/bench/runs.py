"""The timed runs of `perception bench`: frames decoded into memory, the variants side by
side in alternating blocks, model-only time, and a paced run at the camera's rate.

Frames of the test clips are decoded once. Every variant (perception.bench.variants) and
the model-only timing run on the same frames in alternating blocks whose order rotates, so
that machine noise hits all of them alike. A block is one serving.loop run of the variant's
application over BLOCK frames: the capture, loop and output threads as `perception demo`
runs them; each variant keeps its frames' timings and the wall time of its own blocks.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tqdm import tqdm

from perception.bench.variants import FAR, Variant
from perception.dataset.schema import Dataset
from perception.dataset.split import load_splits
from serving.geometry import Calib
from serving.io import ClipSource
from serving.runtime import Runtime
from serving.source import Frame
from serving.stats import describe_ms

BLOCK = 20  # frames per timed block of one variant
# the checkpoint is scored through its FP32 ONNX export: one evaluation for both
# each variant's `perception evaluate` output under --eval-dir (the pipeline's stages); a
# far-field row has accuracy only where a stage evaluates it with the pass (evaluate-far)
EVAL_DIRS = {
    "pytorch": "eval",
    "fp32": "eval",
    "int8": "eval-int8",
    "fp16": "eval-fp16",
    "int8+far": "eval-int8-far",
}


def load_frames(
    data: Path, splits: Path, max_distinct: int
) -> tuple[list[Frame], Calib, list[str]]:
    """Decode up to max_distinct frames of the test split's clips into memory, the same
    number of consecutive frames from each clip (tracking sees real motion), skipping clips
    of another frame size than the first. Returns the frames, the first clip's calibration
    and the clip ids used."""
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
            if calib is not None and src.size != (calib.image_width, calib.image_height):
                continue
            calib = calib or src.calib_or_default()
            take = min(per, max_distinct - len(frames))
            frames += [f for _, f in zip(range(take), src, strict=False)]
        used.append(cid)
        if len(frames) >= max_distinct:
            break
    assert calib is not None
    return frames, calib, used


def feed(frames: list[Frame], start: int, n: int, fps: float) -> Iterator[Frame]:
    """n frames from start (cycling through the decoded ones), timestamped as a camera at
    fps would, so that tracking sees time move on. Each is a fresh copy made as the capture
    thread takes it (its 'decode' stage), as a decoder writes a new buffer per frame: the
    loop then finds it where a decoded frame would be (in the cache), not cold in memory."""
    for i in range(start, start + n):
        f = frames[i % len(frames)]
        yield Frame(i, f.image.copy(), round(i * 1e9 / fps), f.speed_mps)


def model_only(rt: Runtime, frames: list[Frame], start: int, n: int, out: list[float]) -> None:
    """engine.run alone on frames start..start+n (preprocessed first, untimed); appends ms."""
    assert rt.engine is not None
    for f in feed(frames, start, n, 1.0):
        rt.pre(f.image)
        t0 = time.perf_counter_ns()
        rt.engine.run()
        out.append((time.perf_counter_ns() - t0) / 1e6)


def interleave(
    variants: list[Variant], main: Runtime, frames: list[Frame], n: int, warmup: int, fps: float
) -> list[float]:
    """Warm every variant up, then run n frames each in alternating blocks (the order
    rotates every block). Returns the model-only times (ms) of the main runtime."""
    live = [v for v in variants if v.app is not None]
    for v in live:
        if warmup:
            v.app.run(feed(frames, 0, warmup, fps))  # type: ignore[union-attr]
    model_ms: list[float] = []
    model_only(main, frames, 0, min(warmup, 10), [])
    blocks = math.ceil(n / BLOCK)
    jobs: list[Callable[[int, int], None]] = [_timed(v, frames, fps) for v in live]
    jobs.append(lambda start, m: model_only(main, frames, start, m, model_ms))
    for b in tqdm(range(blocks), desc="bench", unit="block", leave=False):
        start, m = warmup + b * BLOCK, min(BLOCK, n - b * BLOCK)
        s = b % len(jobs)
        for job in jobs[s:] + jobs[:s]:
            job(start, m)
    return model_ms


def _timed(v: Variant, frames: list[Frame], fps: float) -> Callable[[int, int], None]:
    def block(start: int, m: int) -> None:
        assert v.app is not None
        v.add(v.app.run(feed(frames, start, m, fps)))

    return block


def paced(v: Variant, frames: list[Frame], n: int, fps: float) -> dict[str, Any]:
    """The variant's application at the camera's rate over n in-memory frames (newest frame
    only): drops, deadline misses and latencies, from a fresh start (tracks reset)."""
    assert v.app is not None
    v.runtime.reset()
    t = v.app.run(feed(frames, 0, n, fps), paced_fps=fps)
    offered = t.frames + t.dropped
    return {
        "variant": v.name,
        "camera_fps": fps,
        "frames_offered": offered,
        "frames_processed": t.frames,
        "dropped": t.dropped,
        "drop_pct": 100.0 * t.dropped / offered if offered else 0.0,
        "deadline_misses": t.deadline_misses,
        "miss_pct": 100.0 * t.deadline_misses / t.frames if t.frames else 0.0,
        "fps": t.frames / t.wall_s if t.wall_s else 0.0,
        "latency": describe_ms(t.latency_ms),
        "output_latency": describe_ms(t.output_latency_ms),
    }


def accuracy(eval_dir: Path | None, name: str) -> dict[str, Any]:
    """Lane accuracy and mean AP50 from `perception evaluate`'s metrics.json under eval_dir;
    'n/a' when there is none for this variant (fp32+far: the pipeline evaluates the far-field
    pass with the INT8 model only)."""
    na = {"lane_accuracy": "n/a", "map50": "n/a", "metrics_file": None}
    key = name if name.endswith(FAR) else name.split("+")[0]
    if eval_dir is None or key not in EVAL_DIRS:
        return na
    path = eval_dir / EVAL_DIRS[key] / "metrics.json"
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
