"""ONNX Runtime session for a model file and its contract.

The contract travels inside the file (metadata_props); a file without it, or with another
contract version, is refused before the first frame. The session is set up for a real-time
loop that shares two cores with Numba and OpenCV: a fixed number of intra-op threads, no
inter-op pool, intra-op threads that spin only while an inference runs, and IO binding onto
preallocated buffers so that no output is allocated per frame.

Spinning: between two of the graph's ~100 operators a parked worker must be woken (a futex
round trip), which costs more than a short operator takes; a spinning worker picks up the
next operator at once. ONNX Runtime's default keeps its workers spinning after Run returns
too, on the core that the Numba pre/post-processing needs next; `session.force_spinning_stop`
parks them as Run returns. Measured on the 2-core Xeon of the CI class (this project's model,
2 threads, p50 of 360 runs, sessions interleaved): parked 13.55 ms, always spinning 12.25,
spinning within a run 12.12.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from serving.contract import (
    OUTPUT_NAMES,
    ContractError,
    ModelContract,
    ModelOutputs,
)

PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


class EngineError(RuntimeError):
    """The runtime cannot do what was asked (missing provider, unreadable model)."""


class ModelFileError(EngineError, ValueError):
    """A model file that cannot be loaded: bad input, not a fault of the runtime."""


def resolve_providers(device: str) -> list[str]:
    """Execution providers for --device cpu|cuda|tensorrt|auto. No silent CPU fallback:
    asking for a GPU provider that this onnxruntime lacks is an error naming what is missing,
    except with 'auto', which takes the best available."""
    have = set(ort.get_available_providers())
    if device == "auto":
        for name in ("tensorrt", "cuda", "cpu"):
            if PROVIDERS[name][0] in have:
                return [p for p in PROVIDERS[name] if p in have]
    if device not in PROVIDERS:
        raise EngineError(f"unknown device {device!r} (cpu, cuda, tensorrt, auto)")
    want = PROVIDERS[device][0]
    if want not in have:
        raise EngineError(
            f"--device {device}: onnxruntime has no {want} (available: "
            f"{', '.join(sorted(have))}); install the [gpu] extra "
            "(onnxruntime-gpu) and a CUDA driver, or use --device cpu"
        )
    return [p for p in PROVIDERS[device] if p in have]


def read_contract(path: str | Path) -> ModelContract:
    """The contract of an ONNX file, without building a full session."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # onnx raises DecodeError / OSError variants
        raise ContractError(f"{path}: not an ONNX model ({type(e).__name__})") from None
    meta = {p.key: p.value for p in model.metadata_props}
    return ModelContract.from_metadata(meta, source=str(path))


def check_output_shapes(c: ModelContract, shapes: dict[str, list], path: str | Path) -> None:
    """The model's output shapes (batch axis first, symbolic dimensions as strings) against
    what the contract makes of them: ContractError naming the file, the output and the
    contract key, so that a class count that does not match the heatmap fails at load and
    not at the first frame."""
    keys = ModelOutputs(
        "class_names, input size / stride",
        "input size / stride",
        "lane_slots, row_anchors, lane_cells",
        "lane_slots",
    )
    want = {n: (list(d), k) for n, d, k in zip(OUTPUT_NAMES, c.output_shapes, keys, strict=True)}
    for name, (dims, what) in want.items():
        got = list(shapes[name])[1:]
        fixed = [(g, w) for g, w in zip(got, dims, strict=False) if isinstance(g, int)]
        if len(got) != len(dims) or any(g != w for g, w in fixed):
            raise ContractError(
                f"{path}: output {name} is {got}, the contract ({what}) makes it {dims}"
            )


class Engine:
    """One ONNX Runtime session with IO binding for batch-1 inference."""

    def __init__(
        self, path: str | Path, device: str = "cpu", threads: int = 2, spinning: bool = True
    ):
        """spinning: intra-op threads spin while a Run is in progress and park when it
        returns; False parks them between operators too."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{path}: missing model file")
        if not path.is_file():  # a FIFO would block onnxruntime's read forever
            raise ModelFileError(f"{path}: not a regular file")
        t0 = time.perf_counter()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        opts.add_session_config_entry("session.force_spinning_stop", "1")
        self.providers = resolve_providers(device)
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=self.providers)
        except Exception as e:  # ORT raises its own exception types
            raise ModelFileError(
                f"{path}: onnxruntime cannot load it ({str(e).splitlines()[0]})"
            ) from None
        meta = self.session.get_modelmeta().custom_metadata_map
        self.contract = ModelContract.from_metadata(meta, source=str(path))
        self._check_io(path)
        self.session_seconds = time.perf_counter() - t0
        self.device = "cuda" if self.providers[0] != "CPUExecutionProvider" else "cpu"
        self._bind()

    def _check_io(self, path: Path) -> None:
        c = self.contract
        inp = self.session.get_inputs()
        if len(inp) != 1 or inp[0].name != c.input_name:
            raise ContractError(f"{path}: input is not {c.input_name!r} as the contract says")
        shape = inp[0].shape
        if list(shape[1:]) != [3, c.input_height, c.input_width]:
            raise ContractError(f"{path}: input shape {shape} disagrees with the contract")
        names = [o.name for o in self.session.get_outputs()]
        if tuple(names) != OUTPUT_NAMES:
            raise ContractError(f"{path}: outputs {names}, the contract says {OUTPUT_NAMES}")
        shapes = {o.name: o.shape for o in self.session.get_outputs()}
        check_output_shapes(c, shapes, path)
        self.input_dtype = np.float16 if "float16" in inp[0].type else np.float32

    def _bind(self) -> None:
        """Preallocate the input and output buffers and bind them once."""
        c = self.contract
        shapes = dict(zip(OUTPUT_NAMES, c.output_shapes, strict=True))
        out_types = {o.name: o.type for o in self.session.get_outputs()}
        self.outputs = {
            n: np.empty((1, *shapes[n]), np.float16 if "float16" in out_types[n] else np.float32)
            for n in OUTPUT_NAMES
        }
        self._result = ModelOutputs(*(self.outputs[n] for n in OUTPUT_NAMES))
        self.input = np.zeros((1, 3, c.input_height, c.input_width), self.input_dtype)
        self.binding = self.session.io_binding()
        if self.device == "cpu":
            # zero copy: ORT reads the numpy buffer the preprocessing writes into
            self._in_value = ort.OrtValue.ortvalue_from_numpy(self.input)
        else:
            self._in_value = ort.OrtValue.ortvalue_from_numpy(self.input, "cuda", 0)
        self.binding.bind_ortvalue_input(c.input_name, self._in_value)
        for name, arr in self.outputs.items():
            self.binding.bind_ortvalue_output(name, ort.OrtValue.ortvalue_from_numpy(arr))

    def run(self, x: np.ndarray | None = None) -> ModelOutputs[np.ndarray]:
        """Infer on x (float32[1, 3, H, W]) or, when x is None, on self.input as already
        filled in place. Returns views of the preallocated outputs (batch axis first): copy
        them to keep them past the next call."""
        if x is not None:
            if self.device == "cpu":
                np.copyto(self.input, x, casting="same_kind")
            else:
                self._in_value.update_inplace(x.astype(self.input_dtype, copy=False))
        elif self.device != "cpu":
            self._in_value.update_inplace(self.input)
        self.session.run_with_iobinding(self.binding)
        return self._result

    def run_bound(self, x: np.ndarray) -> ModelOutputs[np.ndarray]:
        """run(x), without the copy when x is the bound input buffer itself (what the
        preprocessing wrote into, see Runtime.onnx)."""
        return self.run(None if x is self.input else x)

    def warmup(self, runs: int = 3) -> float:
        """Run on zeros; returns the first run's seconds (the cold first inference)."""
        t0 = time.perf_counter()
        self.run()
        first = time.perf_counter() - t0
        for _ in range(runs - 1):
            self.run()
        return first
