"""`perception demo INPUT`: the real-time loop on a video, a camera, an image folder or a
dataset clip, writing an annotated video and one JSON line per frame.

Everything per frame runs in `serving/` (no torch): this module only wires the command line
to serving.io, serving.runtime, serving.loop and serving.overlay.

Outputs are checked before anything runs (serving.sinks.check_outputs: never the input, never
an existing file without --overwrite) and written under a partial name until the run ends
well. A source that fails mid-stream (an image that does not decode, a frame of another size,
a truncated video) ends the run with a one-line error and a non-zero exit; what was written
stays under the partial name.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

from perception.errors import UserError


def _pick_input(spec: str, clip: str | None, splits: str | None) -> str:
    """A dataset root (manifest.json) becomes one of its clips: --clip, else the first test
    clip of --splits."""
    from perception.dataset.schema import Dataset

    root = Path(spec)
    if not (root / "manifest.json").exists():
        return spec
    if clip is None:
        if splits is None:
            raise ValueError(f"{spec}: a dataset root needs --clip ID or --splits FILE")
        from perception.dataset.split import load_splits

        test = load_splits(splits)["test"]
        if not test:
            raise ValueError(f"{splits}: test: no clips")
        clip = test[0]
    path = Dataset(root).clip(clip).path
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such clip")
    return str(path)


class _Outputs:
    """The video and JSON-lines sinks of a run, closed together: renamed into place when the
    run ended well, left under their partial names when it did not."""

    def __init__(self, args: argparse.Namespace, source: Any) -> None:
        from serving.sinks import JsonlSink, VideoSink

        self.video = VideoSink(args.out, source.fps, source.size) if args.out else None
        self.jsonl = JsonlSink(args.jsonl) if args.jsonl else None

    def close(self, ok: bool) -> None:
        for sink in (self.video, self.jsonl):
            if sink is not None:
                sink.close(finalise=ok)

    def failed(self, reason: str, frames: int) -> UserError:
        """Close as partial; the one-line error that says so."""
        self.close(ok=False)
        kept = [str(s.partial_path) for s in (self.video, self.jsonl) if s is not None]
        where = f"; partial output kept in {', '.join(kept)}" if kept else ""
        return UserError(f"{reason} (stopped after {frames} frames{where})")


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from tqdm import tqdm

    from serving import loop, overlay
    from serving.io import open_source
    from serving.runtime import Runtime, configure_threads, to_record
    from serving.sinks import check_outputs
    from serving.source import SourceError

    configure_threads(args.threads, numba_threads=args.threads)
    spec = _pick_input(args.input, args.clip, args.splits)
    inputs = [p for p in (args.input, spec, args.model, args.calib, args.splits) if p]
    check_outputs([p for p in (args.out, args.jsonl) if p], inputs, args.overwrite)
    source = open_source(spec, args.calib)
    with source:
        calib = source.calib_or_default()
        rt = Runtime(args.model, calib, args.device, args.threads, undistort=args.undistort)
        rt.for_size(*source.size)
        outputs = _Outputs(args, source)
        video, jsonl = outputs.video, outputs.jsonl
        recent: deque[float] = deque(maxlen=200)
        names, slots = rt.contract.class_names, rt.contract.lane_slots
        bar = tqdm(
            total=source.frame_count,
            unit="frame",
            desc="demo",
            disable=args.realtime or source.live or not sys.stderr.isatty(),
        )
        state: dict[str, Any] = {"timings": None}

        def process(frame: Any, stage_ns: dict[str, int]) -> Any:
            return rt(frame.image, frame.t_ns / 1e9, frame.speed_mps, stage_ns)

        def emit(item: loop.Captured, r: Any, stage_ns: dict[str, int]) -> None:
            import time

            frame = item.frame
            t0 = time.perf_counter_ns()
            img = frame.image
            if video is not None or args.show:
                img = _bgr(img)
                overlay.draw(img, r.pred, r.tracks, r.lane, r.warnings, _hud(state, recent, rt))
            t1 = time.perf_counter_ns()
            if video is not None:
                video.write(img)
            if args.show:
                import cv2

                cv2.imshow("perception", img)
                cv2.waitKey(1)
            stage_ns["draw"], stage_ns["write"] = t1 - t0, 0
            if jsonl is not None:
                ms = {k: v / 1e6 for k, v in stage_ns.items()}
                jsonl.write(
                    to_record(
                        frame.index,
                        frame.t_ns,
                        r,
                        slots,
                        names,
                        ms,
                        (time.monotonic_ns() - item.t_capture_ns) / 1e6,
                    )
                )
            stage_ns["write"] = time.perf_counter_ns() - t1

        def on_frame(t: loop.Timings) -> None:
            state["timings"] = t
            recent.append(t.latency_ms[-1])
            bar.update(1)

        def frames_done() -> int:
            return state["timings"].frames if state["timings"] is not None else 0

        try:
            timings = loop.run(
                source,
                process,
                emit,
                paced_fps=source.fps if args.realtime else 0.0,
                live=source.live,
                max_frames=args.max_frames,
                on_frame=on_frame,
            )
        except SourceError as e:
            raise outputs.failed(str(e), frames_done()) from None
        except KeyboardInterrupt:  # Ctrl-C is the normal way to stop a demo
            outputs.close(ok=True)
            raise
        except BaseException:
            outputs.close(ok=False)
            raise
        finally:
            bar.close()
        if source.ended_early:
            raise outputs.failed(f"{source.end_reason}", timings.frames)
        outputs.close(ok=True)
    _print_summary(timings.summary(), rt.cold, source)
    return 0


def _bgr(img: np.ndarray) -> np.ndarray:
    import cv2

    if img.ndim == 2 or img.shape[2] == 1:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    return img.copy()


def _hud(state: dict[str, Any], recent: deque[float], rt: Any) -> dict[str, str]:
    """FPS over the recent frames, latency percentiles, drops, device."""
    import time

    t = state["timings"]
    hud = {"device": rt.engine.device}
    if t is None or len(recent) < 2:
        return hud
    stamps = state.setdefault("stamps", deque(maxlen=60))
    stamps.append(time.perf_counter())
    if len(stamps) > 1:
        hud["FPS"] = f"{(len(stamps) - 1) / (stamps[-1] - stamps[0]):.1f}"
    lat = np.asarray(recent)
    hud["latency p50"] = f"{np.percentile(lat, 50):.1f} ms"
    hud["latency p99"] = f"{np.percentile(lat, 99):.1f} ms"
    hud["drops"] = str(t.dropped)
    return hud


def _print_summary(s: dict[str, Any], cold: dict[str, float], source: Any) -> None:
    print(
        f"{s['frames']} frames, {s['fps']:.1f} FPS end to end, latency p50 "
        f"{s['latency_ms']['p50']:.1f} ms p99 {s['latency_ms']['p99']:.1f} ms, dropped "
        f"{s['dropped']}, deadline misses {s['deadline_misses']}"
    )
    print("stage p50 ms: " + ", ".join(f"{k} {v['p50']:.2f}" for k, v in s["stages_ms"].items()))
    print("cold start: " + ", ".join(f"{k} {v:.2f} s" for k, v in cold.items()))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the real-time loop on a video, camera, folder or clip")
    p.add_argument(
        "input",
        help="video file, camera index, image folder, clip folder or "
        "dataset root (with --clip or --splits)",
    )
    p.add_argument("--model", default="models/perception.onnx")
    p.add_argument("--out", help="annotated video to write (.mp4)")
    p.add_argument("--jsonl", help="per-frame results, one JSON object per line")
    p.add_argument(
        "--overwrite", action="store_true", help="replace existing --out / --jsonl files"
    )
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda", "tensorrt", "auto"))
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    p.add_argument("--calib", help="calibration JSON (default: the clip's, else a default)")
    p.add_argument(
        "--undistort",
        action="store_true",
        help="undistort frames in the preprocessing pass (a calibration with lens distortion)",
    )
    p.add_argument("--realtime", action="store_true", help="paced at the source frame rate")
    p.add_argument("--show", action="store_true", help="show a window")
    p.add_argument("--clip", help="clip id when INPUT is a dataset root")
    p.add_argument("--splits", help="splits file: INPUT's first test clip")
    p.add_argument("--max-frames", type=int)
    p.set_defaults(func=run)
