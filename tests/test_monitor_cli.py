"""`perception monitor-profile`, `perception monitor` and the demo's monitor, end to end on a
tiny generated dataset with the small exported model: what they write, what they say, and
one line for bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import pytest

from perception.cli import main
from perception.params import DataParams, SplitParams

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory, onnx_model: Path) -> Path:
    """data/ (4 clips of 5 frames), splits.json, models/perception.onnx and its profile."""
    from perception.dataset.split import run_split
    from perception.sim.generate import generate

    root = tmp_path_factory.mktemp("monitor-cli")
    generate(root / "data", DataParams(seed=5, clips=4, frames=5, width=640, height=360,
                                       workers=2), progress=False)  # fmt: skip
    run_split(root / "data", root / "splits.json", SplitParams(seed=1, val=0.25, test=0.25))
    (root / "models").mkdir()
    shutil.copy(onnx_model, root / "models" / "perception.onnx")
    args = ["monitor-profile", "--data", str(root / "data"), "--splits", str(root / "splits.json")]
    args += ["--model", str(root / "models" / "perception.onnx"), "--quiet"]
    assert main([*args, "--out", str(root / "models" / "perception.monitor.json")]) == 0
    return root


def test_profile_next_to_the_model(assets: Path) -> None:
    prof = json.loads((assets / "models" / "perception.monitor.json").read_text())
    assert prof["schema"] == "perception-monitor-profile/1"
    assert prof["source"]["split"] == "train" and prof["source"]["frames"] == 10
    assert {"brightness", "far_saturation", "lanes", "lane_conf", "obstacles"} <= set(
        prof["properties"]
    )
    assert len(prof["model"]["sha256"]) == 64 and prof["config"]["window"] == 60


def test_report_on_the_test_split(assets: Path, tmp_path: Path) -> None:
    out = tmp_path / "rep"
    args = ["monitor", str(assets / "data"), "--splits", str(assets / "splits.json")]
    args += ["--model", str(assets / "models" / "perception.onnx"), "--out-dir", str(out)]
    assert main([*args, "--quiet"]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["frames"] == 5 and s["clips"] == 1
    assert abs(sum(s["state_share"].values()) - 1.0) < 1e-9
    assert {"psi", "ks", "ks_p", "wasserstein", "out", "drift"} <= set(s["properties"]["contrast"])
    md = (out / "report.md").read_text()
    assert md.startswith("# Monitor report") and "## Properties over the whole run" in md
    for png in ("properties.png", "states.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"


def test_summary_line_of_a_report(
    assets: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "rep"
    args = ["monitor", str(assets / "data"), "--model", str(assets / "models" / "perception.onnx")]
    assert main([*args, "--out-dir", str(out), "--quiet"]) == 0
    capsys.readouterr()
    missing = tmp_path / "none.json"
    assert main(["summary", "--monitor", str(out / "summary.json"), str(missing)]) == 0
    lines = capsys.readouterr().out.splitlines()
    mon = [ln for ln in lines if ln.startswith("Monitor")]
    assert mon[0].startswith(f"Monitor ({out / 'summary.json'}, 20 frames): ok ")
    assert mon[1] == f"Monitor: {missing}: missing (stage not run?)"


def test_frozen_video_alerts_with_a_thumbnail(assets: Path, tmp_path: Path) -> None:
    clip = next((assets / "data" / "clips").iterdir())
    frames = [cv2.imread(str(p)) for p in sorted((clip / "frames").iterdir())]
    video = tmp_path / "frozen.avi"  # lossless-ish MJPG keeps repeats identical
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 20, (640, 360))
    for img in frames + [frames[-1]] * 12:
        w.write(img)
    w.release()
    out = tmp_path / "rep"
    args = ["monitor", str(video), "--model", str(assets / "models" / "perception.onnx")]
    assert main([*args, "--out-dir", str(out), "--quiet"]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["alerts"] >= 1 and s["first_alert"].startswith("frozen")
    assert 5 <= s["first_alert_frame"] <= 5 + 10
    thumbs = list((out / "alerts").glob("alert_*.jpg"))
    assert thumbs and thumbs[0].name in (out / "report.md").read_text()


def test_demo_records_hud_and_summary_carry_the_monitor(
    assets: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jsonl = tmp_path / "demo.jsonl"
    args = ["demo", str(assets / "data"), "--splits", str(assets / "splits.json")]
    args += ["--model", str(assets / "models" / "perception.onnx"), "--jsonl", str(jsonl)]
    assert main(args) == 0
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert records and all(r["monitor"]["state"] in ("ok", "warn", "alert") for r in records)
    assert all(r["monitor"]["profile"] for r in records)  # found next to the model
    assert "monitor" in records[-1]["timings_ms"]
    assert "monitor: ok" in capsys.readouterr().out or records[-1]["monitor"]["state"] != "ok"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (None, "missing file (perception monitor-profile writes it)"),
        ("{not json", "not a monitor profile"),
        ('{"schema": "perception-monitor-profile/1"}', "config: must be an object"),
    ],
)
def test_bad_profile_is_one_line(
    assets: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], edit, message
) -> None:
    prof = tmp_path / "p.monitor.json"
    if edit is not None:
        prof.write_text(edit)
    args = ["monitor", str(assets / "data"), "--model", str(assets / "models" / "perception.onnx")]
    assert main([*args, "--profile", str(prof), "--out-dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("perception: error: ") and str(prof) in err and message in err
    assert "\n" not in err and not (tmp_path / "o" / "report.md").exists()


def test_report_inside_the_input_is_refused(
    assets: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["monitor", str(assets / "data"), "--model", str(assets / "models" / "perception.onnx")]
    assert main([*args, "--out-dir", str(assets / "data" / "report")]) == 2
    assert "inside the input" in capsys.readouterr().err
    assert not (assets / "data" / "report").exists()
