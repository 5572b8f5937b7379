"""Golden records: the application's per-frame output on a short clip with a fixed model.

`perception demo` runs the whole application (source, preprocessing, inference, decode,
tracking, warnings, overlay, video and JSON-lines sinks) on the clip of tests/golden_app.py;
its records must match tests/golden/app_records.jsonl. A restructuring that changes what
the application computes fails here; one that only moves code does not.

Numbers are compared at the precision that means something for each field (a tenth of a
pixel, a centimetre, a hundredth of a second), so float noise from reordered arithmetic
passes and a changed association, threshold or decode does not. Timings are left out.
After a change of behaviour that is meant, refresh the file and review its diff:

    GOLDEN_UPDATE=1 .venv/bin/pytest tests/test_golden.py
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from golden_app import build_model, write_clip

from perception.cli import main
from serving.app import App, Outputs

GOLDEN = Path(__file__).parent / "golden" / "app_records.jsonl"
VOLATILE = ("timings_ms", "latency_ms")  # wall-clock figures: never the same twice
# absolute tolerance per field (relative 1e-3 on top for the physical quantities)
TOLERANCE = {
    "points": 0.15,  # pixels
    "box": 0.15,  # pixels
    "score": 2e-3,
    "distance_m": 0.015,
    "lateral_m": 0.015,
    "rel_speed_mps": 0.015,
    "ttc_s": 0.015,
    "fcw_ttc_s": 0.015,
    "offset_m": 2e-3,
    "curvature_1pm": 2e-5,
}


def _records(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        for key in VOLATILE:
            rec.pop(key, None)
        out.append(rec)
    return out


def _close(got: Any, want: Any, where: str, tol: float) -> None:
    """got equals want: the same structure, the same strings, ints and flags, floats within
    tol (absolute) or 1e-3 (relative)."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and sorted(got) == sorted(want), f"{where}: keys differ"
        for k, v in want.items():
            _close(got[k], v, f"{where}.{k}", TOLERANCE.get(k, tol))
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), f"{where}: length differs"
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            _close(g, w, f"{where}[{i}]", tol)
    elif isinstance(want, float) and isinstance(got, int | float):
        ok = math.isclose(got, want, rel_tol=1e-3, abs_tol=tol)
        assert ok, f"{where}: {got} != {want} (tolerance {tol})"
    else:
        assert type(got) is type(want) and got == want, f"{where}: {got!r} != {want!r}"


@pytest.mark.slow
@pytest.mark.parametrize("video", [True, False], ids=["drawn", "headless"])
def test_application_records_match_the_golden_file(
    tmp_path: Path, video: bool, capsys: pytest.CaptureFixture
) -> None:
    """Drawn, the output side runs in the output thread (a file rendered to video: the
    throughput schedule); headless, in the loop's thread: the records are the same."""
    model = build_model(tmp_path / "model.onnx")
    clip = write_clip(tmp_path / "clip")
    jsonl, out = tmp_path / "out.jsonl", ["--out", str(tmp_path / "out.mp4")] if video else []
    assert main(["demo", str(clip), "--model", str(model), "--jsonl", str(jsonl), *out]) == 0
    schedule = "throughput" if video else "latency"
    assert f"schedule: {schedule} " in capsys.readouterr().out
    got = _records(jsonl)
    if os.environ.get("GOLDEN_UPDATE") == "1" and video:
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in got))
        pytest.skip(f"GOLDEN_UPDATE=1: {GOLDEN} rewritten; review its diff")
    want = _records(GOLDEN)
    assert len(got) == len(want), f"{len(got)} records, the golden file has {len(want)}"
    for g, w in zip(got, want, strict=True):
        _close(g, w, f"frame {w['frame']}", 0.0)
    # the records cover what they are meant to: tracks, a coasting gap, FCW on and off
    assert any(r["warnings"]["fcw"] for r in want) and not all(r["warnings"]["fcw"] for r in want)
    assert max(o["track_id"] for r in want for o in r["obstacles"]) >= 4


def test_the_output_thread_runs_only_when_the_app_draws() -> None:
    """Headless, the record and hooks run in the loop's thread after the result (a thread
    would contend for the interpreter lock with the next frame's preprocessing)."""
    rt = SimpleNamespace(engine=None, contract=SimpleNamespace(lane_slots=(), class_names=()))
    video = Outputs(video=SimpleNamespace())  # type: ignore[arg-type]
    assert not App(rt).output_thread  # type: ignore[arg-type]
    assert App(rt, video).output_thread and App(rt, draw=True).output_thread  # type: ignore[arg-type]
    assert not App(rt, video, show=True).output_thread  # type: ignore[arg-type]
    assert App(rt, output_thread=True).output_thread  # type: ignore[arg-type]


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux's")
@pytest.mark.parametrize("idle", [True, False], ids=["latency", "throughput"])
def test_the_output_thread_yields_to_inference_only_on_the_latency_schedule(idle: bool) -> None:
    """Latency: the output thread runs under SCHED_IDLE (drawing never delays a result);
    throughput: at the normal priority, sharing the cores with inference."""
    from serving import loop

    seen: list[int] = []

    def emit(item: Any, result: Any, stage_ns: dict[str, int]) -> None:
        seen.append(os.sched_getscheduler(0))

    t = loop.run(range(3), lambda f, s: f, emit, output_thread=True, output_idle=idle)
    assert t.frames == 3
    assert seen == [os.SCHED_IDLE if idle else os.SCHED_OTHER] * 3
