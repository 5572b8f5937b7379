"""PyTorch model file -> ONNX with the contract and provenance inside (metadata_props)."""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import onnx
import torch

from perception.errors import UserError, first_line
from perception.export.fold_pads import fold_pads
from perception.model.files import load_model
from serving.contract import OUTPUT_NAMES, ModelContract
from serving.files import atomic_write_bytes

OPSET = 17


def _sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def provenance(
    data: str | None, params: str | None, metrics: str | None, model: str | None = None
) -> dict[str, str]:
    """Where the model came from: hashes of the model file, data manifest and params, and its
    evaluation metrics. Only what the inputs fix (no git commit, clock or path), so the same
    inputs export the same bytes and a DVC remote filled on one machine serves another."""
    prov: dict[str, Any] = {}
    if model:
        prov["model_sha256"] = _sha256(model)
    if data:
        prov["data_manifest_sha256"] = _sha256(Path(data) / "manifest.json")
    if params:
        prov["params_sha256"] = _sha256(params)
    if metrics and Path(metrics).exists():
        prov["metrics"] = json.loads(Path(metrics).read_text())
    return {f"provenance.{k}": json.dumps(v) for k, v in prov.items()}


def set_metadata(model: onnx.ModelProto, meta: dict[str, str]) -> None:
    """Replace metadata_props with meta (keys kept sorted for stable bytes)."""
    del model.metadata_props[:]
    for k in sorted(meta):
        model.metadata_props.add(key=k, value=meta[k])


def metadata(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def operating_thresholds(
    metrics: str | Path, class_names: tuple[str, ...], default: float
) -> tuple[float, ...]:
    """Per-class score thresholds from a `perception evaluate` metrics.json of the validation
    split: each class's best-F1 operating point at IoU 0.5 (perception.metrics.detection.
    best_f1), in class_names order. The loop's thresholds are chosen there, on frames that
    neither trained the model nor score it. A class without an operating point (no box of it
    in the validation split) keeps `default`, the contract's one threshold. UserError naming
    the file when it holds no operating points at all."""
    try:
        doc = json.loads(Path(metrics).read_text())
        ops = doc["model"]["detection"]["operating"]
        if not isinstance(ops, dict):
            raise TypeError("operating is not an object")
        thr = tuple(float(ops[n]["score"]) if n in ops else default for n in class_names)
        ModelContract(class_names=class_names, class_thresholds=thr)  # 0..1, one per class
        return thr
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(
            f"{metrics}: no operating points ({first_line(e)[:80]}); write them with "
            "`perception evaluate --split val --model ...`"
        ) from None


def export_onnx(
    model_pt: str | Path,
    out: str | Path,
    extra_meta: dict[str, str],
    operating_points: str | Path | None = None,
) -> Path:
    """Export with a dynamic batch axis, check the graph, write atomically. With
    operating_points (a validation metrics.json), the per-class thresholds chosen there go
    into the file's contract (operating_thresholds)."""
    net = load_model(model_pt)
    c = net.contract
    if operating_points is not None:
        thr = operating_thresholds(operating_points, c.class_names, c.score_threshold)
        c = replace(c, class_thresholds=thr)
    dummy = torch.zeros(1, 3, c.input_height, c.input_width)
    axes = {c.input_name: {0: "batch"}, **{n: {0: "batch"} for n in OUTPUT_NAMES}}
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        f = Path(tmp) / "model.onnx"
        torch.onnx.export(
            net,
            (dummy,),
            str(f),
            opset_version=OPSET,
            input_names=[c.input_name],
            output_names=list(OUTPUT_NAMES),
            dynamic_axes=axes,
            dynamo=False,
        )
        model = onnx.load(str(f))
    fold_pads(model)  # Lite0's "same" padding: see fold_pads.py
    set_metadata(model, {**c.to_metadata(), **extra_meta})
    model.producer_name = "perception-pipeline"
    onnx.checker.check_model(model, full_check=True)
    atomic_write_bytes(out, model.SerializeToString())
    return Path(out)
