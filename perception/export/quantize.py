"""INT8 (static QDQ, ONNX Runtime's quantization tools) and FP16 variants of the ONNX model.

INT8 is calibrated on training frames, passed through the serving preprocessing so that the
activation ranges are those the loop will see. quant_pre_process runs first (shape inference
and graph optimisation), as ONNX Runtime's documentation asks. The contract and provenance are
copied onto each variant: serving must not have to look anywhere else.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_static,
)
from onnxruntime.transformers.float16 import convert_float_to_float16

from perception.dataset.schema import Dataset
from perception.export.onnx_export import metadata, set_metadata
from serving.engine import read_contract
from serving.files import atomic_write_bytes
from serving.io import read_image
from serving.preprocess import Preprocessor


class FrameReader(CalibrationDataReader):
    """Feeds preprocessed frames to the calibrator, one per call."""

    def __init__(self, input_name: str, frames: Iterator[np.ndarray]):
        self.input_name, self.frames = input_name, frames

    def get_next(self) -> dict[str, np.ndarray] | None:
        x = next(self.frames, None)
        return None if x is None else {self.input_name: x}


def calibration_frames(
    data: str, clip_ids: list[str], n: int, pre: Preprocessor
) -> Iterator[np.ndarray]:
    """n frames spread evenly over the given clips, preprocessed as the loop does."""
    ds = Dataset(data)
    items = [(clip, lb) for cid in clip_ids for clip in [ds.clip(cid)] for lb in clip.labels]
    for i in np.linspace(0, len(items) - 1, min(n, len(items))).astype(int):
        clip, lb = items[i]
        yield pre(read_image(clip.frame_path(lb), cv2.IMREAD_COLOR)).copy()


def quantize_int8(src: str | Path, out: str | Path, frames: Iterator[np.ndarray]) -> Path:
    contract = read_contract(src)
    meta = metadata(onnx.load(str(src)))
    with tempfile.TemporaryDirectory() as tmp:
        pre_path, q_path = Path(tmp) / "pre.onnx", Path(tmp) / "q.onnx"
        quant_pre_process(str(src), str(pre_path), skip_symbolic_shape=True)
        quantize_static(
            str(pre_path),
            str(q_path),
            FrameReader(contract.input_name, frames),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
        model = onnx.load(str(q_path))
    set_metadata(model, {**meta, "contract.variant": '"int8"'})
    atomic_write_bytes(out, model.SerializeToString())
    return Path(out)


def convert_fp16(src: str | Path, out: str | Path) -> Path:
    """FP16 weights and activations for GPUs; inputs and outputs stay float32 so that the
    loop's buffers do not change."""
    model = onnx.load(str(src))
    meta = metadata(model)
    half = convert_float_to_float16(model, keep_io_types=True)
    set_metadata(half, {**meta, "contract.variant": '"fp16"'})
    atomic_write_bytes(out, half.SerializeToString())
    return Path(out)
