"""Leaving PyTorch: ONNX export, parity check, INT8/FP16 variants, model card.

perception export --model models/model.pt --out models/perception.onnx
perception parity --model models/model.pt --onnx models/perception.onnx ...
perception quantize --onnx models/perception.onnx --int8 ... --fp16 ...
perception model-card --onnx models/perception.onnx --variant fp32=PATH:METRICS ...
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _export(args: argparse.Namespace) -> int:
    from perception.export.onnx_export import export_onnx, provenance
    from serving.engine import read_contract

    prov = provenance(args.data, args.params, args.metrics, args.model)
    out = export_onnx(args.model, args.out, prov, args.operating_points)
    c = read_contract(out)
    thr = ", ".join(f"{n} {t:.3f}" for n, t in zip(c.class_names, c.thresholds(), strict=True))
    print(f"{out}: exported ({out.stat().st_size / 2**20:.1f} MiB); score thresholds {thr}")
    return 0


def _parity(args: argparse.Namespace) -> int:
    from perception.dataset.split import load_splits
    from perception.export.parity import check_parity, parity_frames
    from serving.files import atomic_write_json

    frames = parity_frames(args.data, load_splits(args.splits)[args.split], args.frames)
    report = check_parity(args.model, args.onnx, frames)
    atomic_write_json(args.out, report)
    print(
        f"parity on {report['frames']} frames: raw max abs diff "
        f"{max(report['raw_max_abs_diff'].values()):.2e}, lanes "
        f"{report['lane_max_diff_px']} px, box mismatches "
        f"{report['frames_with_box_mismatch']} -> {'OK' if report['ok'] else 'FAILED'}"
    )
    return 0 if report["ok"] else 1


def _quantize(args: argparse.Namespace) -> int:
    from perception.dataset.split import load_splits
    from perception.export.quantize import calibration_frames, convert_fp16, quantize_int8
    from serving.engine import read_contract
    from serving.preprocess import Preprocessor

    pre = Preprocessor(read_contract(args.onnx))
    frames = calibration_frames(
        args.data, load_splits(args.splits)["train"], args.calib_frames, pre
    )
    quantize_int8(args.onnx, args.int8, frames)
    convert_fp16(args.onnx, args.fp16)
    print(f"wrote {args.int8} and {args.fp16}")
    return 0


def _card(args: argparse.Namespace) -> int:
    from perception.export.card import cpu_latency_ms, write_card

    variants = {}
    for spec in args.variant:
        name, rest = spec.split("=", 1)
        path, metrics = rest.split(":", 1)
        variants[name] = {
            "path": path,
            "metrics": json.loads(Path(metrics).read_text()),
            "latency": cpu_latency_ms(path),
        }
    write_card(args.onnx, variants, args.data_report, args.out)
    print(f"{args.out}: written")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export the trained model to ONNX with its contract")
    p.add_argument("--model", required=True, help="model file from perception train (.pt)")
    p.add_argument("--out", required=True, help="ONNX file to write")
    p.add_argument("--data", help="dataset root (its manifest hash goes into the file)")
    p.add_argument("--params", default="params.yaml", help="params file (hashed)")
    p.add_argument("--metrics", help="evaluation metrics.json to embed")
    p.add_argument(
        "--operating-points",
        help="metrics.json of `perception evaluate --split val`: each class's best-F1 score "
        "becomes its threshold in the loop (default: the contract's one threshold)",
    )
    p.set_defaults(func=_export)

    p = sub.add_parser("parity", help="PyTorch vs ONNX Runtime on test frames; fails if off")
    p.add_argument("--model", required=True)
    p.add_argument("--onnx", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--splits", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--out", required=True, help="parity report (JSON)")
    p.set_defaults(func=_parity)

    p = sub.add_parser("quantize", help="INT8 (static QDQ) and FP16 variants")
    p.add_argument("--onnx", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--splits", required=True)
    p.add_argument("--int8", required=True)
    p.add_argument("--fp16", required=True)
    p.add_argument("--calib-frames", type=int, default=64)
    p.set_defaults(func=_quantize)

    p = sub.add_parser("model-card", help="write MODEL_CARD.md from the run")
    p.add_argument("--onnx", required=True)
    p.add_argument(
        "--variant",
        action="append",
        required=True,
        metavar="NAME=MODEL:METRICS",
        help="e.g. fp32=models/perception.onnx:reports/eval/metrics.json (repeat per variant)",
    )
    p.add_argument("--data-report", required=True, help="reports/data/report.json")
    p.add_argument("--out", required=True)
    p.set_defaults(func=_card)
