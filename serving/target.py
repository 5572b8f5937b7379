"""Hardware targets: the hw/*.yaml profiles (execution provider, thread pools, model variant,
camera rate, latency budget) and a fingerprint of the machine a run is on.

They live in serving so that a deployed loop can check its own target and report what it
runs on without the training stack; `perception bench` builds on them.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

DEVICES = ("cpu", "cuda", "tensorrt", "auto")
VARIANTS = ("fp32", "int8", "fp16")
# int8+far: the INT8 model with the far-field pass (two INT8 inferences a frame, headless)
SIDE_BY_SIDE = ("pytorch", "fp32", "int8", "int8+far", "fp16", "naive")


class ProfileError(ValueError):
    """A hardware profile that cannot be used; one line naming the file and the field."""


@dataclass(frozen=True)
class Budget:
    e2e_p50_ms: float  # end-to-end median, ms
    e2e_p99_ms: float  # end-to-end 99th percentile, ms
    min_fps: float  # sustained frames per second
    model_p50_ms: float | None = None  # model-only median of the profile's variant, ms (optional)


@dataclass(frozen=True)
class Profile:
    """One hw/*.yaml target (see hw/README.md for the fields)."""

    path: str
    name: str
    description: str
    device: str
    providers: tuple[str, ...]
    threads: int
    numba_threads: int
    opencv_threads: int
    variant: str
    camera_fps: float
    budget: Budget
    variants_side_by_side: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_TYPES: dict[str, type] = {
    "name": str,
    "description": str,
    "device": str,
    "providers": list,
    "threads": int,
    "numba_threads": int,
    "opencv_threads": int,
    "variant": str,
    "camera_fps": float,
    "budget": dict,
    "variants_side_by_side": list,
}


def _field(path: str, d: dict[str, Any], key: str, kind: type, where: str = "") -> Any:
    """d[key] checked against kind (int is accepted for float; bool is never a number)."""
    name = f"{where}{key}"
    if key not in d:
        raise ProfileError(f"{path}: field '{name}': missing")
    v = d[key]
    ok = isinstance(v, kind) and not isinstance(v, bool)
    if kind is float:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool)
    if not ok:
        raise ProfileError(
            f"{path}: field '{name}': expected {kind.__name__}, got {type(v).__name__} {v!r}"
        )
    return float(v) if kind is float else v


def _positive(path: str, name: str, v: float) -> None:
    if not v > 0:
        raise ProfileError(f"{path}: field '{name}': must be > 0, got {v!r}")


def _choice(path: str, name: str, v: str, allowed: tuple[str, ...]) -> None:
    if v not in allowed:
        raise ProfileError(f"{path}: field '{name}': unknown {v!r} (one of {', '.join(allowed)})")


def _budget(path: str, d: dict[str, Any]) -> Budget:
    unknown = sorted(set(d) - {"e2e_p50_ms", "e2e_p99_ms", "min_fps", "model_p50_ms"})
    if unknown:
        raise ProfileError(f"{path}: field 'budget.{unknown[0]}': unknown field")
    keys = ("e2e_p50_ms", "e2e_p99_ms", "min_fps") + (
        ("model_p50_ms",) if "model_p50_ms" in d else ()
    )
    vals = {k: _field(path, d, k, float, "budget.") for k in keys}
    for k, v in vals.items():
        _positive(path, f"budget.{k}", v)
    return Budget(**vals)


def load_profile(path: str | Path) -> Profile:
    """Read and check a hw/*.yaml target. Raises ProfileError (one line: file and field) for a
    missing or unreadable file, a missing or unknown field, a wrong type, an unknown device or
    variant, or a non-positive budget, thread count or camera rate."""
    import yaml

    p = str(path)
    try:
        d = yaml.safe_load(Path(path).read_text())
    except OSError as e:
        raise ProfileError(f"{p}: cannot read ({e.strerror or e})") from None
    except yaml.YAMLError as e:
        raise ProfileError(f"{p}: not valid YAML ({' '.join(str(e).split())})") from None
    if not isinstance(d, dict):
        raise ProfileError(f"{p}: expected a mapping of fields, got {type(d).__name__}")
    unknown = sorted(set(d) - set(_TYPES))
    if unknown:
        raise ProfileError(f"{p}: field '{unknown[0]}': unknown field")
    v = {k: _field(p, d, k, t) for k, t in _TYPES.items()}
    _choice(p, "device", v["device"], DEVICES)
    _choice(p, "variant", v["variant"], VARIANTS)
    for k in ("threads", "numba_threads", "opencv_threads", "camera_fps"):
        _positive(p, k, v[k])
    for k in ("providers", "variants_side_by_side"):
        if not all(isinstance(x, str) for x in v[k]):
            raise ProfileError(f"{p}: field '{k}': expected a list of strings")
    for x in v["variants_side_by_side"]:
        _choice(p, "variants_side_by_side", x, SIDE_BY_SIDE)
    v["budget"] = _budget(p, v["budget"])
    v["providers"] = tuple(v["providers"])
    v["variants_side_by_side"] = tuple(v["variants_side_by_side"])
    return Profile(path=p, **v)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpu() -> dict[str, str | None]:
    """GPU name, driver and CUDA version from nvidia-smi; nulls when it is absent."""
    out: dict[str, str | None] = {"name": None, "driver": None, "cuda": None}
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return out
    try:
        q = [exe, "--query-gpu=name,driver_version", "--format=csv,noheader"]
        first = subprocess.run(q, capture_output=True, text=True, timeout=10).stdout
        name, _, driver = first.strip().splitlines()[0].partition(",")
        out["name"], out["driver"] = name.strip(), driver.strip()
        plain = subprocess.run([exe], capture_output=True, text=True, timeout=10).stdout
        m = re.search(r"CUDA Version:\s*([\d.]+)", plain)
        out["cuda"] = m.group(1) if m else None
    except (OSError, subprocess.SubprocessError, IndexError):
        pass
    return out


def _version(*dists: str) -> str | None:
    for dist in dists:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def numba_threading() -> dict[str, Any]:
    """The Numba threading layer in use (a tiny parallel kernel runs first if none has, so
    that the layer is the one actually chosen), its configured choice and thread count."""
    import numba

    try:
        layer = numba.threading_layer()
    except ValueError:
        _touch_parallel(np.ones(8))
        layer = numba.threading_layer()
    return {
        "layer": layer,
        "configured": getattr(numba.config, "THREADING_LAYER", None),
        "threads": numba.get_num_threads(),
    }


def _touch_parallel(a: np.ndarray) -> float:
    from numba import njit, prange

    @njit(parallel=True)
    def total(x: np.ndarray) -> float:
        s = 0.0
        for i in prange(x.shape[0]):
            s += x[i]
        return s

    return float(total(a))


def fingerprint() -> dict[str, Any]:
    """What the numbers were measured on: CPU, cores, GPU, library versions, Numba's
    threading layer, ONNX Runtime's providers, Python and OS."""
    import cv2
    import onnxruntime as ort

    affinity: int | None
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        affinity = os.cpu_count()
    return {
        "cpu": _cpu_model(),
        "arch": platform.machine(),
        "cores": {"logical": os.cpu_count(), "affinity": affinity},
        "gpu": _gpu(),
        "versions": {
            "onnxruntime": _version("onnxruntime", "onnxruntime-gpu") or ort.__version__,
            "numba": _version("numba"),
            "opencv": cv2.__version__,
            "numpy": np.__version__,
        },
        "numba_threading": numba_threading(),
        "ort_providers": list(ort.get_available_providers()),
        "python": sys.version.split()[0],
        "os": platform.platform(),
    }
