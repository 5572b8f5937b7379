"""`perception monitor-profile` and `perception monitor`: the training profile the loop's
monitor compares against (serving/monitor.py), and a drift report on any input.

    perception monitor-profile --data data/sim --splits data/splits.json \\
        --model models/perception.onnx --out models/perception.monitor.json
    perception monitor data/sim --splits data/splits.json --model models/perception.onnx \\
        --out-dir reports/monitor/test

Both run the application the demo runs (serving.app) with the monitor plugged in
(serving.monitor_hook): the profile bins what it measured on the training split's frames
(profile.py); the report runs it over a video, an image or clip folder or a dataset (its
split's clips, or all) and writes report.md, summary.json, plots and the frames where alerts
began (trace.py, report.py).
"""

from __future__ import annotations

import argparse
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from perception.errors import UserError


def _params(path: str) -> Any:
    from perception.params import MonitorParams, load_params, section

    return section(load_params(path), MonitorParams)


def _app(args: argparse.Namespace, first: Any, profile: Any, config: Any) -> tuple[Any, Any]:
    """The application (serving.app) on the model with the monitor plugged in, set up for
    the first source's camera: (app, hook)."""
    from perception.params import loop_settings
    from serving.app import App
    from serving.monitor import Monitor
    from serving.monitor_hook import MonitorHook
    from serving.runtime import Runtime, configure_threads

    configure_threads(numba_threads=args.threads)
    calib = first.calib_or_default()
    rt = Runtime.onnx(args.model, calib, loop_settings(args.params), args.device, args.threads)
    hook = MonitorHook(Monitor(rt.contract, calib, profile, config))
    app = App(rt)
    return app, hook.attach(app)


def _sources(clips: Iterable[Any]) -> tuple[Any, Any]:
    """(the first source, an iterator over all of them from the first)."""
    import itertools

    it = iter(clips)
    first = next(it, None)
    if first is None:
        raise UserError("no frames")
    return first, itertools.chain([first], it)


def run_profile(args: argparse.Namespace) -> int:
    """monitor-profile: the training split through the loop, binned into the profile."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import numpy as np

    from perception.monitor import profile, trace
    from serving.files import atomic_write_json
    from serving.io import ClipSource

    p = _params(args.params)
    clips = trace.dataset_clips(Path(args.data), args.splits, args.split)
    picked = [clips[i] for i in profile.pick_clips([n for _, n in clips], p.profile_frames)]
    first, sources = _sources([ClipSource(c) for c, _ in picked])
    app, hook = _app(args, first, None, p)
    total = sum(n for _, n in picked) or None
    t = trace.run(app, hook, sources, total, progress=not args.quiet)
    source = {"data": args.data, "splits": args.splits, "split": args.split}
    source |= {"clips": len(picked), "frames": len(t.state)}
    prof = profile.build_profile(
        t.array("values"),
        t.array("class_counts").astype(np.int64),
        app.runtime.contract,
        p,
        profile.model_info(args.model),
        source,
    )
    atomic_write_json(args.out, prof)
    print(f"profile of {len(t.state)} frames ({len(picked)} clips) -> {args.out}")
    return 0


def run_report(args: argparse.Namespace) -> int:
    """monitor: the loop with its monitor over INPUT, and the drift report."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from perception.monitor import trace
    from perception.monitor.report import write_report
    from serving.monitor_profile import load_profile, model_profile_path

    p = _params(args.params)
    prof_path = Path(args.profile or model_profile_path(args.model))
    if not prof_path.is_file():
        raise UserError(f"{prof_path}: missing file (perception monitor-profile writes it)")
    prof = load_profile(prof_path)
    out = Path(args.out_dir)
    if Path(args.input).resolve() in (out.resolve(), *out.resolve().parents):
        raise UserError(f"{args.out_dir}: inside the input {args.input}")
    total, sources = trace.open_sources(args.input, args.splits, args.split)
    first, sources = _sources(sources)
    app, hook = _app(args, first, prof, p)
    thumbs = out / "alerts"
    shutil.rmtree(thumbs, ignore_errors=True)  # pictures of an earlier run would mislead
    thumbs.mkdir(parents=True)
    t = trace.run(app, hook, sources, total, thumbs, progress=not args.quiet)
    title = args.input + (f" ({args.split} split)" if args.splits else "")
    s = write_report(out, t, prof, p, title)
    sh = s["state_share"]
    print(
        f"{s['frames']} frames: ok {100 * sh['ok']:.1f} %, warn {100 * sh['warn']:.1f} %, "
        f"alert {100 * sh['alert']:.1f} %, {s['alerts']} alert(s); {s['drifting']} "
        f"properties drift over the run -> {out / 'report.md'}"
    )
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="models/perception.onnx")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda", "tensorrt", "auto"))
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("monitor-profile", help="the monitor's training profile of a model")
    p.add_argument("--data", required=True, help="dataset root")
    p.add_argument("--splits", help="splits file (default: every clip)")
    p.add_argument("--split", default="train")
    p.add_argument("--out", required=True, help="profile JSON (next to the model)")
    _common(p)
    p.set_defaults(func=run_profile)

    p = sub.add_parser("monitor", help="drift report of the loop's monitor on an input")
    p.add_argument("input", help="video, image folder, clip folder or dataset root")
    p.add_argument("--splits", help="splits file: a dataset's --split clips (default: all)")
    p.add_argument("--split", default="test")
    p.add_argument("--profile", help="profile JSON (default: next to --model)")
    p.add_argument("--out-dir", required=True, help="report.md, summary.json, plots")
    _common(p)
    p.set_defaults(func=run_report)
