"""Everything `perception bench` measures, assembled into bench.json's dict.

The variants run side by side (perception.bench.runs), then the micro-benchmarks
(perception.bench.micro) and a paced run at the camera's rate; the verdicts come last
(perception.bench.report).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from perception.bench import micro, report, runs
from perception.bench.monitor import bench_monitor
from perception.bench.variants import FAR, OVERLAY, THROUGHPUT, Builder, Variant
from serving.config import Settings
from serving.stats import describe_ms
from serving.target import Profile, fingerprint

NOTES = [
    "e2e = frame decoded -> result (warnings available) per frame: pre + infer + post + "
    "track (+ monitor) and the loop's own bookkeeping; the frames are decoded into memory "
    "beforehand and copied by the capture thread as it takes each one (a fresh buffer, as a "
    "decoder writes)",
    "output latency = capture -> record, overlay and video written (the output side)",
    "FPS = frames / wall time of the variant's own blocks (threads started per block)",
    f"variants run in alternating blocks of {runs.BLOCK} frames on the same frames; the "
    "order rotates every block",
    "model = engine.run alone (IO binding), input preprocessed beforehand, untimed",
    "headless: no overlay, no video; the record and the monitor's update in the loop's "
    "thread once the result is out; +overlay: overlay and mp4v video of every frame, drawn "
    "and encoded in the output thread (SCHED_IDLE: the latency schedule) while the next "
    "frame is inferred; +throughput: the same with the output thread at normal priority and "
    "ONNX Runtime's threads parked between operators (a file rendered to video)",
    "naive: cv2 + numpy preprocessing, session.run without IO binding, numpy decode, and "
    "the overlay and video written in the same thread; tracking as the loop",
    "cold_start numba_s is a compile or a cache load (cache=True)",
    "monitor (stage): the monitor's image half in the loop's thread; micro monitor: its "
    "whole per-frame cost (image half + the output side's update), record object apart",
]


def variant_names(profile: Profile) -> list[str]:
    """The main variant, it with the overlay on each schedule and with the far-field pass,
    then the profile's side-by-side list."""
    main = profile.variant
    return list(dict.fromkeys([main, main + OVERLAY, main + THROUGHPUT, main + FAR,
                               *profile.variants_side_by_side]))  # fmt: skip


def _say(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def measure(
    args: argparse.Namespace, profile: Profile, providers: list[str], settings: Settings
) -> tuple[dict[str, Any], dict[str, list[float]]]:
    """bench.json's dict, and the e2e samples (ms) of each variant that ran."""
    gpu = providers[0] != "CPUExecutionProvider"
    frames, calib, clips = runs.load_frames(Path(args.data), Path(args.splits), args.max_distinct)
    names = variant_names(profile)
    _say(f"building {len(names)} variants: {', '.join(names)}")
    builder = Builder(profile, Path(args.models_dir), calib, settings, gpu, profile.camera_fps)
    variants: list[Variant] = []
    try:
        variants = [builder.build(n) for n in names]
        main = variants[0]
        if main.app is None:
            raise FileNotFoundError(
                f"{main.file}: main variant {main.name} of {profile.path}: "
                f"{main.status.removeprefix('skipped: ')}"
            )
        _say(f"timing {args.frames} frames per variant (+{args.warmup} warm-up)")
        model_ms = runs.interleave(
            variants, main.runtime, frames, args.frames, args.warmup, profile.camera_fps
        )
        _say("micro-benchmarks")
        micro_res = {
            "preprocess": micro.bench_preprocess(
                [f.image for f in frames], main.runtime.contract, args.micro_reps
            ),
            "decode": micro.bench_decode(main.runtime.contract, args.micro_reps),
            "scene": micro.bench_scene(main.runtime, args.micro_reps),
            "monitor": bench_monitor(
                main.runtime, frames, builder.monitor_profile, max(args.micro_reps, 100)
            ),
        }
        paced: dict[str, Any] = {"skipped": True}
        if args.paced_frames:
            _say(f"paced run at {profile.camera_fps:g} FPS")
            shown = variants[1] if variants[1].app is not None else main
            paced = runs.paced(shown, frames, args.paced_frames, profile.camera_fps)
    finally:
        for v in variants:
            v.close()
        builder.close()
    res = _assemble(args, profile, providers, variants, model_ms, clips, len(frames))
    res["frames"].update(width=calib.image_width, height=calib.image_height)
    res.update(micro=micro_res, paced=paced)
    res["verdicts"] = report.verdicts(res)
    samples = {v.name: v.e2e_ms for v in variants if v.status == "ok"}
    return res, samples


def _assemble(
    args: argparse.Namespace,
    profile: Profile,
    providers: list[str],
    variants: list[Variant],
    model_ms: list[float],
    clips: list[str],
    distinct: int,
) -> dict[str, Any]:
    eval_dir = Path(args.eval_dir) if args.eval_dir else None
    summaries = [{**v.summary(), **runs.accuracy(eval_dir, v.name)} for v in variants]
    main, model = summaries[0], describe_ms(model_ms)
    overhead = {
        s["name"]: {
            "ms": s["e2e"]["p50_ms"] - model["p50_ms"],
            "ratio_to_model_p50": s["e2e"]["p50_ms"] / model["p50_ms"],
        }
        for s in summaries[:3]
        if s["status"] == "ok"
    }
    return {
        "schema": "perception-bench/2",
        "target": profile.to_dict(),
        "fingerprint": fingerprint(),
        "providers_used": providers,
        "frames": {
            "timed": args.frames,
            "warmup": args.warmup,
            "distinct": distinct,
            "clips": clips,
            "source": f"{args.data} test split of {args.splits}, decoded into memory once",
        },
        "cold_start": {k: round(v, 4) for k, v in variants[0].runtime.cold.items()},
        "main_variant": main["name"],
        "e2e": main["e2e"],
        "fps": main["fps"],
        "stages": main["stages"],
        "model": model,
        "overhead": overhead,
        "variants": summaries,
        "notes": NOTES,
    }
