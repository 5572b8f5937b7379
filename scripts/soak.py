"""Soak test of the real-time loop: RSS growth over many frames (issue bar: <= 50 MB over
10,000 frames). Frames are decoded test-clip frames cycled in memory, run through the same
serving.loop + serving.runtime + overlay as `perception demo` (offline mode, no file output).

    python scripts/soak.py --model models/perception.onnx --data data/sim \
        --splits data/splits.json --frames 10000
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import cv2
import numpy as np
import psutil

from serving import loop, overlay
from serving.geometry import Calib
from serving.runtime import Runtime, configure_threads


@dataclass
class Frame:
    index: int
    image: np.ndarray
    t_ns: int
    speed_mps: float | None = None


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/perception.onnx")
    ap.add_argument("--data", default="data/sim")
    ap.add_argument("--splits", default="data/splits.json")
    ap.add_argument("--frames", type=int, default=10_000)
    ap.add_argument("--distinct", type=int, default=60)
    args = ap.parse_args()
    clip = Path(args.data) / "clips" / json.loads(Path(args.splits).read_text())["test"][0]
    paths = sorted((clip / "frames").glob("*.jpg"))[: args.distinct]
    images = [cv2.imread(str(p)) for p in paths]
    configure_threads(2, numba_threads=2)
    rt = Runtime(args.model, Calib.load(clip / "calib.json"), "cpu", 2)
    proc = psutil.Process()
    rss: list[float] = []

    def frames():
        for i, img in zip(range(args.frames), itertools.cycle(images), strict=False):
            yield Frame(i, img, i * 50_000_000)

    def process(f: Frame, stage_ns: dict[str, int]) -> object:
        return rt(f.image, f.t_ns / 1e9, None, stage_ns)

    def emit(item: loop.Captured, r: object, stage_ns: dict[str, int]) -> None:
        img = item.frame.image.copy()
        overlay.draw(img, r.pred, r.tracks, r.lane, r.warnings, {"soak": "1"})  # type: ignore[attr-defined]
        if item.frame.index % 500 == 0:
            rss.append(proc.memory_info().rss / 2**20)

    t = loop.run(frames(), process, emit)
    s = t.summary()
    growth = rss[-1] - rss[1] if len(rss) > 2 else float("nan")  # after warm-up
    print(
        json.dumps(
            {
                "frames": s["frames"],
                "fps": round(s["fps"], 1),
                "rss_mb_first": round(rss[1], 1),
                "rss_mb_last": round(rss[-1], 1),
                "rss_growth_mb": round(growth, 1),
                "rss_mb_every_500": [round(v, 1) for v in rss],
                "latency_p50_ms": round(s["latency_ms"]["p50"], 2),
                "latency_p99_ms": round(s["latency_ms"]["p99"], 2),
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
