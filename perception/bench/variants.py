"""The contenders of `perception bench`: each one the application (serving.app.App) on a
runtime (serving.runtime.Runtime), so that every row of the table runs the same per-frame
code and differs only where it says.

    fp32, int8, fp16   the shipped loop on each ONNX model, headless (no overlay, no video)
    <main>+overlay     the target's model with the overlay and a video writer, drawn in the
                       output thread while the next frame is inferred, on the latency
                       schedule (a camera: the output thread takes only idle CPU)
    <main>+overlay+throughput
                       the same on the throughput schedule (a file rendered to video, as
                       `perception demo --out` runs it: see serving/loop.py)
    <main>+far         headless, with the far-field pass (`perception demo --far-field`,
                       a crop half the frame wide: serving/farfield.py), two inferences
    int8+far           the INT8 model with the far-field pass, headless: what the pass costs
                       where the loop runs INT8 (two INT8 inferences against one FP32)
    pytorch            PyTorch eager instead of ONNX Runtime, headless
    naive              a typical demo script: cv2 + numpy stages (perception.bench.naive),
                       drawing and video writing in the same thread as inference

Every variant but naive runs with the loop's monitor (serving.monitor_hook, the profile
next to the models when there is one), as the demo does.

A variant that cannot run here (file missing, no CUDA for FP16, a model the runtime refuses)
keeps its row with a 'skipped: ...' status.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from perception.bench.naive import naive_runtime
from perception.errors import UserError, first_line
from serving.app import App, Outputs
from serving.config import Settings
from serving.contract import ModelOutputs
from serving.geometry import Calib
from serving.loop import CRITICAL, STAGES, Timings
from serving.monitor import Monitor
from serving.monitor_hook import MonitorHook
from serving.monitor_profile import load_profile, model_profile_path
from serving.runtime import Runtime
from serving.sinks import VideoSink
from serving.stats import describe_ms
from serving.target import Profile

FILES = {
    "pytorch": "model.pt",
    "fp32": "perception.onnx",
    "int8": "perception.int8.onnx",
    "fp16": "perception.fp16.onnx",
    "naive": "perception.onnx",
}
OVERLAY = "+overlay"  # suffix of the main variant's row with the overlay and video writer
THROUGHPUT = OVERLAY + "+throughput"  # ... and the row of the same on the throughput schedule
FAR = "+far"  # ... and the main variant with the far-field pass, headless


@dataclass
class Variant:
    """One contender and what it measured, frame by frame, over its timed blocks."""

    name: str
    file: str
    app: App | None = None
    status: str = "ok"
    stages: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})
    e2e_ms: list[float] = field(default_factory=list)  # frame decoded -> result
    output_ms: list[float] = field(default_factory=list)  # capture -> outputs written
    wall_s: float = 0.0

    @property
    def runtime(self) -> Runtime:
        assert self.app is not None
        return self.app.runtime

    def add(self, t: Timings) -> None:
        """The timings of one timed block."""
        for s in STAGES:
            self.stages[s] += t.stages[s]
        # from the frame decoded (a file does not age: its latency starts at its decode)
        self.e2e_ms += [a - b for a, b in zip(t.latency_ms, t.stages["decode"], strict=True)]
        self.output_ms += t.output_latency_ms
        self.wall_s += t.wall_s

    def summary(self) -> dict[str, Any]:
        """bench.json's entry: e2e (capture -> result) and output latency statistics,
        throughput (frames / wall time of its blocks) and each stage."""
        out: dict[str, Any] = {"name": self.name, "file": self.file, "status": self.status}
        if self.status != "ok":
            return out
        n = len(self.e2e_ms)
        out.update(frames=n, wall_s=self.wall_s, fps=n / self.wall_s if self.wall_s else 0.0)
        out["e2e"] = describe_ms(self.e2e_ms)
        out["critical_sum"] = describe_ms(np.sum([self.stages[s] for s in CRITICAL], 0))
        out["output_latency"] = describe_ms(self.output_ms)
        out["stages"] = {s: describe_ms(self.stages[s]) for s in STAGES}
        return out

    def close(self) -> None:
        if self.app is not None:
            self.app.outputs.close(ok=True)


def _torch_runtime(path: Path, calib: Calib, settings: Settings, gpu: bool, threads: int):
    """PyTorch eager in the project's runtime: the same preprocessing, decode and tracking."""
    import torch

    from perception.model.files import load_model

    torch.set_num_threads(threads)
    dev = torch.device("cuda" if gpu else "cpu")
    net = load_model(path, dev)  # UserError: one line, not torch's

    def infer(x: np.ndarray) -> ModelOutputs[np.ndarray]:
        with torch.inference_mode():
            out = net(torch.from_numpy(x).to(dev))
        return ModelOutputs(*(o.float().cpu().numpy() for o in out))

    rt = Runtime(net.contract, calib, infer, settings)
    rt.warmup()
    return rt


class Builder:
    """Builds the variants of one run; the video writers go to a temporary folder that
    close() removes (the bench measures writing, it keeps no video)."""

    def __init__(self, profile: Profile, models: Path, calib: Calib, settings: Settings,
                 gpu: bool, fps: float):  # fmt: skip
        self.p, self.models, self.calib, self.settings = profile, models, calib, settings
        self.gpu, self.fps = gpu, fps
        where = model_profile_path(models / FILES["fp32"])
        self.monitor_profile = load_profile(where) if where.is_file() else None
        self.tmp = Path(tempfile.mkdtemp(prefix="perception-bench-"))

    def build(self, name: str) -> Variant:
        """A ready Variant, or one with a 'skipped: ...' status."""
        kind = name.split("+")[0]
        path = self.models / FILES[kind]
        v = Variant(name, str(path))
        if kind == "fp16" and not self.gpu:
            v.status = "skipped: no CUDA"
        elif not path.exists():
            v.status = "skipped: missing file"
        else:
            try:
                v.app = self._app(name, kind, path)
            except (RuntimeError, ValueError, UserError) as e:
                v.status = f"skipped: {first_line(e)}"
        return v

    def _app(self, name: str, kind: str, path: Path) -> App:
        p, calib = self.p, self.calib
        if kind == "pytorch":
            rt = _torch_runtime(path, calib, self.settings, self.gpu, p.threads)
        elif kind == "naive":
            rt = naive_runtime(path, calib, self.settings, p.device, p.threads)
        else:
            far = calib.image_width // 2 if name.endswith(FAR) else 0
            rt = Runtime.onnx(str(path), calib, self.settings, p.device, p.threads,
                              throughput=name.endswith(THROUGHPUT), far_field=far)  # fmt: skip
        size = (calib.image_width, calib.image_height)
        if kind == "naive":  # a demo script: no monitor
            video = VideoSink(self.tmp / f"{name}.mp4", self.fps, size)
            return App(rt, Outputs(video), output_thread=False)
        app = App(rt)
        if name.endswith((OVERLAY, THROUGHPUT)):
            app = App(rt, Outputs(VideoSink(self.tmp / f"{name}.mp4", self.fps, size)))
        MonitorHook(Monitor(rt.contract, calib, self.monitor_profile)).attach(app)
        return app

    def close(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)
