"""`perception bench --target hw/NAME.yaml`: the loop measured on a hardware target.

Cold start, the loop stage by stage (pre, infer, post, track, draw) on real test frames
decoded into memory up front, model-only time, the variants side by side (PyTorch eager,
ONNX FP32 / INT8 / FP16, a naive demo-script loop), micro-benchmarks (preprocessing, NMS), a
paced run at the camera's rate, and PASS/FAIL against the target's budget and the project's
bars. Writes bench.json, bench.md and latency.png; exits 0 when a bar fails (a measurement).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmark the loop on a hardware target (hw/*.yaml)")
    p.add_argument("--target", required=True, help="hardware profile, e.g. hw/cpu-2core.yaml")
    p.add_argument("--frames", type=int, default=1000, help="timed frames per variant")
    p.add_argument("--warmup", type=int, default=50, help="untimed frames per variant first")
    p.add_argument("--max-distinct", type=int, default=150, help="frames decoded into memory")
    p.add_argument("--paced-frames", type=int, default=200, help="frames of the paced run")
    p.add_argument("--micro-reps", type=int, default=300, help="micro-benchmark repetitions")
    p.add_argument(
        "--quick", action="store_true", help="smoke run: 5 warm-up frames, 20 micro reps"
    )
    p.add_argument("--json", help="also write bench.json here")
    p.add_argument("--data", default="data/sim", help="dataset root")
    p.add_argument("--splits", default="data/splits.json", help="splits file (test clips)")
    p.add_argument("--models-dir", default="models", help="model.pt and perception*.onnx")
    p.add_argument("--out-dir", default="reports/bench", help="bench.json, bench.md, png")
    p.add_argument("--eval-dir", default="reports", help="eval*/metrics.json for accuracy")
    p.set_defaults(func=run)


def _check_args(a: argparse.Namespace) -> None:
    from perception.errors import UserError

    for k in ("frames", "max_distinct", "micro_reps"):
        if getattr(a, k) < 1:
            raise UserError(f"--{k.replace('_', '-')} must be >= 1")
    for k in ("warmup", "paced_frames"):
        if getattr(a, k) < 0:
            raise UserError(f"--{k.replace('_', '-')} must be >= 0")
    if a.quick:
        a.warmup, a.micro_reps = min(a.warmup, 5), min(a.micro_reps, 20)
        a.paced_frames, a.max_distinct = min(a.paced_frames, 20), min(a.max_distinct, 20)


def _providers(profile: Any) -> list[str]:
    """The providers for the profile's device; one line naming the file when it cannot run."""
    from perception.errors import UserError
    from serving.engine import EngineError, resolve_providers

    try:
        return resolve_providers(profile.device)
    except EngineError as e:
        raise UserError(f"{profile.path}: field 'device': {e}") from None


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before ORT / Numba start pools
    from serving.target import load_profile

    _check_args(args)
    profile = load_profile(args.target)
    providers = _providers(profile)
    from serving.runtime import configure_threads

    configure_threads(profile.threads, profile.numba_threads, profile.opencv_threads)
    res, samples = measure(args, profile, providers)
    write_outputs(res, samples, Path(args.out_dir), args.json)
    for v in res["verdicts"]:
        print(f"{v['status']:4}  {v['check']}: {v['detail']}")
    print(f"wrote {Path(args.out_dir) / 'bench.json'}, bench.md, latency.png")
    return 0


def measure(
    args: argparse.Namespace, profile: Any, providers: list[str]
) -> tuple[dict[str, Any], dict[str, list[float]]]:
    """Everything measured, as bench.json's dict, and e2e samples (ms) per variant."""
    import numpy as np

    from perception import bench_micro as micro
    from perception import bench_report
    from perception import bench_run as br
    from serving.stats import describe_ms
    from serving.target import fingerprint

    gpu = providers[0] != "CPUExecutionProvider"
    frames, calib, clips = br.load_frames(Path(args.data), Path(args.splits), args.max_distinct)
    names = list(dict.fromkeys([profile.variant, *profile.variants_side_by_side]))
    progress = _say(f"building {len(names)} variants: {', '.join(names)}")
    variants = [br.build_variant(n, profile, Path(args.models_dir), calib, gpu) for n in names]
    main = variants[0]
    if main.status != "ok":
        raise FileNotFoundError(
            f"{main.file}: main variant {main.name} of {profile.path}: "
            f"{main.status.removeprefix('skipped: ')}"
        )
    rt = main.rt  # type: ignore[attr-defined]
    progress(f"timing {args.frames} frames per variant (+{args.warmup} warm-up)")
    model_ms = br.interleave(variants, rt, frames, args.frames, args.warmup, profile.camera_fps)
    summaries = [{**v.summary(), **br.accuracy(Path(args.eval_dir), v.name)} for v in variants]
    m = summaries[0]
    model = describe_ms(model_ms)
    progress("micro-benchmarks")
    contract = rt.contract
    micro_res = {
        "preprocess": micro.bench_preprocess([f.image for f in frames], contract, args.micro_reps),
        "decode": micro.bench_decode(contract, args.micro_reps),
    }
    progress(f"paced run at {profile.camera_fps:g} FPS")
    paced = br.paced(rt, frames, args.paced_frames, profile.camera_fps) if args.paced_frames else {}
    overhead = m["e2e"]["p50_ms"] - model["p50_ms"]
    res: dict[str, Any] = {
        "schema": "perception-bench/1",
        "target": profile.to_dict(),
        "fingerprint": fingerprint(),
        "providers_used": providers,
        "frames": {
            "timed": args.frames,
            "warmup": args.warmup,
            "distinct": len(frames),
            "clips": clips,
            "width": calib.image_width,
            "height": calib.image_height,
            "source": f"{args.data} test split of {args.splits}, decoded into memory once",
        },
        "cold_start": {k: round(v, 4) for k, v in rt.cold.items()},
        "main_variant": main.name,
        "e2e": m["e2e"],
        "fps": m["fps"],
        "wall_s": m["wall_s"],
        "stages": m["stages"],
        "model": model,
        "overhead": {"ms": overhead, "pct_of_model_p50": 100.0 * overhead / model["p50_ms"]},
        "variants": summaries,
        "micro": micro_res,
        "paced": paced or {"skipped": True},
        "notes": NOTES,
    }
    res["verdicts"] = bench_report.verdicts(res)
    samples = {
        v.name: [float(x) for x in np.sum([v.times[s] for s in br.STAGES], 0)]
        for v in variants
        if v.status == "ok"
    }
    return res, samples


NOTES = [
    "e2e per frame = pre + infer + post + track + draw of that frame (draw on a copy)",
    "throughput = frames / wall time of the variant's own timed blocks",
    "variants run in alternating blocks of 10 frames on the same frames; order rotates",
    "model = engine.run alone (IO binding), input preprocessed beforehand, untimed",
    "cold_start numba_s is a compile or a cache load (cache=True)",
    "naive: cv2 + numpy preprocessing, session.run without IO binding, numpy decode; "
    "tracking and drawing as the loop",
]


def _say(first: str) -> Callable[[str], None]:
    """A progress line printer on stderr (the blocks themselves show a tqdm bar)."""

    def say(msg: str) -> None:
        print(f"bench: {msg}", file=sys.stderr, flush=True)

    say(first)
    return say


def write_outputs(
    res: dict[str, Any], samples: dict[str, list[float]], out: Path, extra: str | None
) -> None:
    """bench.json, bench.md and latency.png under out (atomic); bench.json also to extra."""
    from perception import bench_report
    from serving.files import atomic_write_json, atomic_write_text

    atomic_write_json(out / "bench.json", res)
    if extra:
        atomic_write_json(extra, res)
    atomic_write_text(out / "bench.md", bench_report.markdown(res))
    bench_report.plot(res, samples, out / "latency.png")
