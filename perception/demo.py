"""`perception demo INPUT`: the real-time loop on a video, a camera, an image folder or a
dataset clip, writing an annotated video and one JSON line per frame.

Everything per frame runs in `serving/` (no torch): this module only turns the command line
into a source (serving.io), a runtime (serving.runtime) and the application (serving.app)
with its monitor (serving.monitor_hook: the profile next to the model, or --monitor-profile;
a `monitor` object in every JSON line, a HUD line, a line in the summary).

Outputs are checked before anything runs (serving.sinks.check_outputs: never the input, never
an existing file without --overwrite) and written under a partial name until the run ends
well. A source that fails mid-stream (an image that does not decode, a frame of another size,
a truncated video) ends the run with a one-line error and a non-zero exit; what was written
stays under the partial name.

A file rendered to --out (not --realtime, not --show) runs on the throughput schedule: the
output thread draws and encodes beside inference at normal priority. A camera, --realtime or
--show keeps the latency schedule, where drawing only takes idle CPU (serving/loop.py).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

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


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from tqdm import tqdm

    from serving.app import App, Outputs
    from serving.io import open_source
    from serving.loop import Timings
    from serving.monitor_hook import for_model
    from serving.runtime import configure_threads
    from serving.sinks import check_outputs
    from serving.source import SourceError

    configure_threads(numba_threads=args.threads)
    spec = _pick_input(args.input, args.clip, args.splits)
    inputs = [p for p in (args.input, spec, args.model, args.calib, args.splits) if p]
    check_outputs([p for p in (args.out, args.jsonl) if p], inputs, args.overwrite)
    with open_source(spec, args.calib) as source:
        rt = _runtime(args, source)
        monitor = for_model(args.model, rt.contract, rt.calib, args.monitor_profile)
        outputs = Outputs.open(args.out, args.jsonl, source.fps, source.size)
        quiet = args.realtime or source.live or not sys.stderr.isatty()
        bar = tqdm(total=source.frame_count, unit="frame", desc="demo", disable=quiet)
        done = [0]  # frames written, for the message of a run that stops early

        def on_frame(t: Timings) -> None:
            done[0] = t.frames
            bar.update(1)

        app = App(rt, outputs, show=args.show)
        monitor.attach(app)
        try:
            timings = app.run(
                source,
                paced_fps=source.fps if args.realtime else 0.0,
                live=source.live,
                max_frames=args.max_frames,
                on_frame=on_frame,
            )
        except SourceError as e:
            raise _failed(outputs, str(e), done[0]) from None
        except KeyboardInterrupt:  # Ctrl-C is the normal way to stop a demo
            outputs.close(ok=True)
            raise
        except BaseException:
            outputs.close(ok=False)
            raise
        finally:
            bar.close()
        if source.ended_early:
            raise _failed(outputs, f"{source.end_reason}", timings.frames)
        outputs.close(ok=True)
    _print_summary(timings.summary(), rt.cold)
    print(f"schedule: {'throughput' if rt.throughput else 'latency'} (serving/loop.py)")
    print(monitor.summary_line())
    return 0


def _runtime(args: argparse.Namespace, source: Any) -> Any:
    """The runtime for this source: a file rendered to --out (not --realtime, not --show)
    gets the throughput schedule (serving/loop.py), anything watched or live the latency one."""
    from perception.params import loop_settings
    from serving.runtime import Runtime

    throughput = bool(args.out) and not (args.realtime or source.live or args.show)
    rt = Runtime.onnx(
        args.model, source.calib_or_default(), loop_settings(args.params), args.device,
        args.threads, args.undistort, throughput, args.far_field,
    )  # fmt: skip
    rt.for_size(*source.size)
    return rt


def _failed(outputs: Any, reason: str, frames: int) -> UserError:
    """Close the outputs as partial; the one-line error that says so."""
    outputs.close(ok=False)
    kept = outputs.partial_paths()
    where = f"; partial output kept in {', '.join(kept)}" if kept else ""
    return UserError(f"{reason} (stopped after {frames} frames{where})")


def _print_summary(s: dict[str, Any], cold: dict[str, float]) -> None:
    lat, out = s["latency_ms"], s["output_latency_ms"]
    print(
        f"{s['frames']} frames, {s['fps']:.1f} FPS end to end, result latency p50 "
        f"{lat['p50']:.1f} ms p99 {lat['p99']:.1f} ms (outputs written: p50 {out['p50']:.1f} "
        f"ms), dropped {s['dropped']}, deadline misses {s['deadline_misses']}"
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
    p.add_argument(
        "--far-field", type=int, default=0, metavar="WIDTH",
        help="also run the model on a crop WIDTH source pixels wide around the horizon, for "
        "small far objects (serving/farfield.py: one more inference a frame; 0 = off)",
    )  # fmt: skip
    p.add_argument("--realtime", action="store_true", help="paced at the source frame rate")
    p.add_argument("--show", action="store_true", help="show a window")
    p.add_argument("--clip", help="clip id when INPUT is a dataset root")
    p.add_argument("--splits", help="splits file: INPUT's first test clip")
    p.add_argument("--max-frames", type=int)
    p.add_argument(
        "--monitor-profile",
        help="the monitor's training profile (default: <model name>.monitor.json next to "
        "the model; without one only the frozen, blocked and camera-moved checks run)",
    )
    p.add_argument(
        "--params",
        help="tracking and warnings settings (default: ./params.yaml when there is one, "
        "else the values the project ships with)",
    )
    p.set_defaults(func=run)
