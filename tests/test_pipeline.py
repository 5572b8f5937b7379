"""End to end: `dvc repro` of the whole pipeline on the tiny profile in a scratch git repo:
data, training, evaluation, export, parity, variants, the real-footage set, model card, demo,
benchmark and the monitor's profile and reports."""

from __future__ import annotations

import json

import pytest
from scratch_repo import Scratch


@pytest.mark.slow
def test_dvc_repro_tiny_profile_then_up_to_date(tiny_pipeline_repo: Scratch) -> None:
    repo, out = tiny_pipeline_repo.repo, tiny_pipeline_repo.first_repro
    for stage in (
        "generate",
        "validate",
        "split",
        "train",
        "evaluate",
        "export",
        "parity",
        "quantize",
        "evaluate-variant@int8",
        "evaluate-far",
        "calibrate-real",
        "import-real",
        "evaluate-real",
        "model-card",
        "demo",
        "bench",
        "monitor-profile",
        "monitor",
    ):
        assert f"Running stage '{stage}'" in out, stage
    assert (repo / "data" / "splits.json").exists()
    assert (repo / "reports" / "data" / "samples.png").stat().st_size > 10_000
    assert json.loads((repo / "reports" / "export" / "parity.json").read_text())["ok"]
    card = (repo / "models" / "MODEL_CARD.md").read_text()
    assert "Not for a real vehicle" in card and "| int8 |" in card
    bench = json.loads((repo / "reports" / "bench" / "bench.json").read_text())
    assert bench["e2e"]["p50_ms"] > 0 and bench["model"]["p50_ms"] > 0
    assert (repo / "reports" / "demo" / "demo.mp4").stat().st_size > 0
    real = json.loads((repo / "reports" / "eval-real" / "metrics.json").read_text())
    assert (real["frames"], real["gt_lanes"], real["gt_vehicles"]) == (8, 24, 28)
    assert len(list((repo / "reports" / "eval-real" / "overlays").glob("*.jpg"))) == 8
    assert json.loads((repo / "models" / "perception.monitor.json").read_text())["properties"]
    monitor = {
        name: json.loads((repo / "reports" / "monitor" / name / "summary.json").read_text())
        for name in ("test", "real")
    }
    assert monitor["test"]["frames"] > 0 and monitor["real"]["frames"] == 8
    assert (repo / "reports" / "monitor" / "real" / "report.md").read_text().startswith("#")
    demo = (repo / "reports" / "demo" / "demo.jsonl").read_text().splitlines()
    assert all(json.loads(line)["monitor"]["profile"] for line in demo)
    again = tiny_pipeline_repo.run("dvc", "repro")
    assert "Data and pipelines are up to date." in again
    metrics = tiny_pipeline_repo.run("dvc", "metrics", "show")
    assert "counts.frames" in metrics and "36" in metrics
