"""`perception summary`: a few lines from whatever the pipeline has written so far."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from perception.cli import main


def test_summary_says_what_is_missing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    args = ["summary", "--sim", str(tmp_path / "none.json"), "--real", str(tmp_path / "r.json")]
    (tmp_path / "r.json").write_text("not json")
    assert main([*args, "--pictures", str(tmp_path / "demo.mp4")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "none.json: missing" in out[0] and "r.json: unreadable" in out[1]
    assert out[2] == "Bench: not given" and "demo.mp4" in out[-1]


def test_summary_headlines(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    lanes = {"accuracy": 0.851, "fp": 0.09, "fn": 0.12}
    sim = {n: {"frames": 10, "lanes": lanes, "detection": {"ap50": {"mean": 0.2}}}
           for n in ("baseline", "model")}  # fmt: skip
    ci = {"lane_fp": [0.104, 0.396], "vehicle_recall_iou50": [0.263, 0.485]}
    real = {"frames": 8, "demo": {"lanes": lanes, "vehicle_recall": {"iou50": 0.5},
                                  "false_vehicle_boxes_per_frame": {"iou50": 0.25},
                                  "interval95": ci}}  # fmt: skip
    e2e = {"p50_ms": 8.5, "p99_ms": 11.0}
    bench = {"e2e": e2e, "target": {"name": "cpu-2core"}, "main_variant": "fp32", "fps": 110.0,
             "model": {"p50_ms": 8.0}, "variants": [{"name": "fp32+overlay", "status": "ok",
             "e2e": e2e, "fps": 90.0}], "verdicts": [{"check": "a", "status": "PASS"},
             {"check": "slow thing", "status": "FAIL"}]}  # fmt: skip
    for name, d in (("sim", sim), ("real", real), ("bench", bench)):
        (tmp_path / f"{name}.json").write_text(json.dumps(d))
    args = [f"--{n}={tmp_path / n}.json" for n in ("sim", "real", "bench")]
    assert main(["summary", *args, "--pictures", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert len(out.splitlines()) <= 25
    assert "model            lanes acc 85.1 %" in out and "AP50 20.0 %" in out
    assert "vehicle recall@0.5 50.0 %" in out and "false boxes/frame 0.25" in out
    assert "  demo, 95 % over frames: lane FP 10-40 %, recall@0.5 26-48 %" in out
    assert "e2e p50 8.50 ms" in out and "110.0 FPS" in out and "FAIL slow thing" in out
    assert f"Pictures: {tmp_path}" in out
    # more failed bars than the summary lists: it says how many more, and where
    bench["verdicts"] = [{"check": f"bar {i}", "status": "FAIL"} for i in range(6)]
    (tmp_path / "bench.json").write_text(json.dumps(bench))
    assert main(["summary", f"--bench={tmp_path / 'bench.json'}"]) == 0
    out = capsys.readouterr().out
    assert "6 fail" in out and "FAIL bar 3" in out and "FAIL bar 4" not in out
    assert f"and 2 more: {tmp_path / 'bench.md'}" in out
