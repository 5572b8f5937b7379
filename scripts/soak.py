"""Soak test of the application: RSS growth over many frames (bar: flat, <= 50 MB over
10,000 frames). Decoded test-clip frames cycle in memory through serving.app.App as
`perception demo` runs it (offline mode, the output thread drawing the overlay of every
frame and writing its JSON record into a temporary file, deleted at the end).

    .venv/bin/python scripts/soak.py --model models/perception.onnx --data data/sim \
        --splits data/splits.json --frames 10000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import psutil

from perception.bench.runs import feed, load_frames
from perception.params import loop_settings
from serving.app import App, Outputs
from serving.loop import Timings
from serving.monitor_hook import for_model
from serving.runtime import Runtime, configure_threads
from serving.sinks import JsonlSink

EVERY = 500  # frames between RSS samples


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help="ONNX model, e.g. models/perception.onnx")
    ap.add_argument("--data", required=True, help="dataset root, e.g. data/sim")
    ap.add_argument("--splits", required=True, help="splits file, e.g. data/splits.json")
    ap.add_argument("--frames", type=int, default=10_000)
    ap.add_argument("--distinct", type=int, default=60)
    args = ap.parse_args()
    frames, calib, _ = load_frames(Path(args.data), Path(args.splits), args.distinct)
    configure_threads(numba_threads=2)
    rt = Runtime.onnx(args.model, calib, loop_settings(None), "cpu", 2)
    proc = psutil.Process()
    rss: list[float] = []

    def sample(t: Timings) -> None:
        if t.frames % EVERY == 1:
            rss.append(proc.memory_info().rss / 2**20)

    with tempfile.TemporaryDirectory() as tmp:
        # the overlay of every frame, as a demo with a video would draw it
        app = App(rt, Outputs(jsonl=JsonlSink(Path(tmp) / "soak.jsonl")), draw=True)
        for_model(args.model, rt.contract, calib).attach(app)  # the monitor, as the demo has it
        t = app.run(feed(frames, 0, args.frames, 20.0), on_frame=sample)
        app.outputs.close(ok=True)
    s = t.summary()
    growth = rss[-1] - rss[1] if len(rss) > 2 else float("nan")  # after warm-up
    report = {
        "frames": s["frames"],
        "fps": round(s["fps"], 1),
        "rss_mb_first": round(rss[1], 1),
        "rss_mb_last": round(rss[-1], 1),
        "rss_growth_mb": round(growth, 1),
        f"rss_mb_every_{EVERY}": [round(v, 1) for v in rss],
        "latency_p50_ms": round(s["latency_ms"]["p50"], 2),
        "latency_p99_ms": round(s["latency_ms"]["p99"], 2),
        "output_latency_p50_ms": round(s["output_latency_ms"]["p50"], 2),
    }
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
