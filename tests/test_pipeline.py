"""End to end: `dvc repro` of the whole pipeline on the tiny profile in a scratch git repo:
data, training, evaluation, export, parity, variants, the real-footage set, model card, demo
and benchmark."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, f"{' '.join(cmd)} failed:\n{res.stdout}\n{res.stderr}"
    return res.stdout + res.stderr


@pytest.mark.slow
def test_dvc_repro_tiny_profile_then_up_to_date(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    ignore = shutil.ignore_patterns(
        ".venv",
        ".git",
        "data",
        "models",
        "reports",
        "dvclive",
        "__pycache__",
        ".*_cache",
        "*.egg-info",
    )
    shutil.copytree(ROOT, repo, ignore=ignore)
    # the real-footage test set is the one part of data/ that git tracks
    shutil.copytree(ROOT / "data" / "real" / "source", repo / "data" / "real" / "source")
    shutil.copy(ROOT / "profiles" / "tiny.yaml", repo / "params.yaml")
    (repo / "dvc.lock").unlink(missing_ok=True)
    env = dict(
        os.environ,
        DVC_NO_ANALYTICS="1",
        DVC_SITE_CACHE_DIR=str(tmp_path / "site"),
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@t",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@t",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    )
    _run(["git", "init", "-q"], repo, env)
    _run(["git", "add", "-A"], repo, env)
    _run(["git", "commit", "-qm", "tiny"], repo, env)
    dvc = str(Path(sys.executable).parent / "dvc")
    out = _run([dvc, "repro"], repo, env)
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
        "calibrate-real",
        "import-real",
        "evaluate-real",
        "model-card",
        "demo",
        "bench",
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
    again = _run([dvc, "repro"], repo, env)
    assert "Data and pipelines are up to date." in again
    metrics = _run([dvc, "metrics", "show"], repo, env)
    assert "counts.frames" in metrics and "36" in metrics
