"""`perception bench --target hw/NAME.yaml`: the loop measured on a hardware target.

    perception bench --target hw/cpu-2core.yaml --out-dir reports/bench   (the dvc stage)
    perception bench --target hw/cuda.yaml --json /tmp/bench.json        (by hand)

Cold start, the application end to end on real test frames decoded into memory up front
(headless, and with the overlay and video writer), model-only time, the variants side by
side in one table (ONNX FP32 / INT8 / FP16, PyTorch eager, a naive demo-script loop),
micro-benchmarks (preprocessing, NMS, the tracking stage with 20 tracks), a paced run at
the camera's rate, and PASS/FAIL against the target's budget and the project's bars.

The steps: runs.py (frames, blocks, paced run), variants.py (the contenders), naive.py (the
naive stages), micro.py, measure.py (bench.json's dict), report.py (verdicts, Markdown,
chart). Outputs go where they are told: --out-dir writes bench.json, bench.md and
latency.png there; --json writes bench.json alone to a file; with neither the report is
printed. Exits 0 when a bar fails (a measurement, not an error).
"""

from __future__ import annotations

import argparse
import os
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
    p.add_argument("--out-dir", help="write bench.json, bench.md and latency.png here")
    p.add_argument("--json", help="write bench.json to this file")
    p.add_argument("--data", default="data/sim", help="dataset root (default: %(default)s)")
    p.add_argument("--splits", default="data/splits.json", help="test clips (%(default)s)")
    p.add_argument("--models-dir", default="models", help="model.pt, perception*.onnx")
    p.add_argument("--eval-dir", help="reports folder with eval*/metrics.json (accuracy)")
    p.add_argument(
        "--params", help="tracking and warnings settings (default: ./params.yaml if present)"
    )
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
    from perception.bench.measure import measure
    from perception.params import loop_settings
    from serving.runtime import configure_threads
    from serving.target import load_profile

    _check_args(args)
    profile = load_profile(args.target)
    providers = _providers(profile)
    settings = loop_settings(args.params)
    configure_threads(profile.numba_threads, profile.opencv_threads)
    res, samples = measure(args, profile, providers, settings)
    written = write_outputs(res, samples, args.out_dir, args.json)
    for v in res["verdicts"]:
        print(f"{v['status']:4}  {v['check']}: {v['detail']}")
    print(f"wrote {', '.join(written)}" if written else "(no --out-dir or --json: not written)")
    return 0


def write_outputs(
    res: dict[str, Any], samples: dict[str, list[float]], out_dir: str | None, json: str | None
) -> list[str]:
    """bench.json, bench.md and latency.png into out_dir, bench.json to json (each when
    given; atomic); the Markdown report to stdout when neither is. Returns what was written."""
    from perception.bench import report
    from serving.files import atomic_write_json, atomic_write_text

    text = report.markdown(res)
    written = []
    if out_dir:
        out = Path(out_dir)
        atomic_write_json(out / "bench.json", res)
        atomic_write_text(out / "bench.md", text)
        report.plot(res, samples, out / "latency.png")
        written += [str(out / n) for n in ("bench.json", "bench.md", "latency.png")]
    if json:
        atomic_write_json(json, res)
        written.append(json)
    if not written:
        print(text)
    return written
