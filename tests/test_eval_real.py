"""`perception evaluate-real`: hand-computed vehicle matching and per-frame figures, and the
whole command on the real set with a small untrained model."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from perception.cli import main
from perception.dataset.schema import Dataset, FrameLabel, Lane, Obstacle
from perception.evaluate import Frame, FrameResult
from perception.evaluate.real_scoring import score_frame, vehicle_matches
from serving.contract import CLASS_NAMES
from serving.geometry import Calib

CAR, TRUCK, PED = (CLASS_NAMES.index(c) for c in ("car", "truck", "pedestrian"))


def _frame(boxes: list[list[float]]) -> Frame:
    obstacles = [Obstacle(i, "car", b) for i, b in enumerate(boxes)]
    label = FrameLabel(0, "frames/000000.jpg", 0, obstacles=obstacles)
    return Frame(None, label, Calib.default(), list(range(160, 720, 10)), {}, 1, "x.jpg")  # type: ignore[arg-type]


def _result(
    boxes: list[list[float]], classes: list[int], scores: list[float], lanes=()
) -> FrameResult:
    return FrameResult(
        list(lanes), np.array(boxes, np.float32).reshape(-1, 4), np.array(scores, np.float32),
        np.array(classes, np.int64), 1.0,
    )  # fmt: skip


def test_vehicle_matching_by_hand():
    """gt A [0 0 100 100], B [200 0 300 100]. Predictions: a truck on A shifted by 20 px
    (IoU 80*100 / (2*10000 - 8000) = 0.667), a car on B shifted by 50 px (IoU 50/150 =
    0.333), a car far from both, a 10-px-tall car (not judged), a pedestrian on A (not a
    vehicle)."""
    frame = _frame([[0, 0, 100, 100], [200, 0, 300, 100]])
    r = _result(
        [[20, 0, 120, 100], [250, 0, 350, 100], [600, 0, 700, 100], [800, 50, 820, 59],
         [0, 0, 100, 100]],
        [TRUCK, CAR, CAR, CAR, PED], [0.9, 0.8, 0.7, 0.6, 0.95],
    )  # fmt: skip
    assert vehicle_matches(frame, r, 0.5) == (1, 2)  # A found; B's and the far box false
    assert vehicle_matches(frame, r, 0.3) == (2, 1)  # B found too; the far box false
    s = score_frame(frame, r, "x.jpg")
    assert s.found == {"iou50": 1, "iou30": 2} and s.false == {"iou50": 2, "iou30": 1}
    assert s.gt_vehicles == 2 and s.persons == 1


def test_box_fit_by_hand():
    """gt A [0 0 99 99] and B [200 0 299 49] (inclusive: 100 x 100 and 100 x 50). On A a car
    [10 20 89 99]: 80 x 80, IoU about 0.64 -> height and width 0.8, top 20 px lower (0.2 of 100),
    bottom on the label. On B a truck [200 -10 319 39]: 50 x 120, IoU about 0.57 -> height
    1.0, width 1.2, both edges 10 px higher (-0.2 of 50). Medians over the two pairs; the
    summary prints them."""
    from perception.evaluate.real import summary_markdown
    from perception.evaluate.real_scoring import box_fit, summarize

    frame = _frame([[0, 0, 99, 99], [200, 0, 299, 49]])
    r = _result([[10, 20, 89, 99], [200, -10, 319, 39]], [CAR, TRUCK], [0.9, 0.8])
    assert box_fit(frame, r) == [(0.8, 0.8, 0.2, 0.0), (1.0, 1.2, -0.2, -0.2)]
    run = summarize([score_frame(frame, r, "x.jpg")], {"lanes": {}, "detection": None})
    fit = run["box_fit_iou30"]
    assert fit == {"pairs": 2, "height_ratio": 0.9, "width_ratio": 1.0, "top_shift": 0.0,
                   "bottom_shift": -0.1}  # fmt: skip
    doc = {"model": "m", "frames": 1, "gt_lanes": 0, "gt_vehicles": 2, "lane_exist_threshold": 0.5,
           "score_thresholds": {"car": 0.5}, "demo": run}  # fmt: skip
    run["lanes"] = {"accuracy": 1.0, "fp": 0.0, "fn": 0.0}
    text = summary_markdown(doc)
    assert "| 0.90 x 1.00 (2) |" in text and "| +0.00 / -0.10 |" in text
    assert box_fit(frame, _result([], [], [])) == []


def test_recall_by_coco_size_by_hand():
    """Labels of 100 x 100 (area 10,000: large, from 96 x 96), 40 x 30 (1,200: medium, from
    32 x 32) and 20 x 20 px (400: small), inclusive corners; predictions on the large one and
    2 px off the small one (IoU about 0.8: found); shifted 10 px instead (IoU 1/3), the small
    one is missed."""
    from perception.evaluate.real import summary_markdown
    from perception.evaluate.real_scoring import by_size, summarize

    frame = _frame([[0, 0, 99, 99], [300, 0, 339, 29], [500, 0, 519, 19]])
    r = _result([[0, 0, 99, 99], [502, 0, 521, 19]], [CAR, CAR], [0.9, 0.8])
    want = {"small": [1, 1], "medium": [0, 1], "large": [1, 1]}
    assert by_size(frame, r) == want
    miss = _result([[0, 0, 99, 99], [510, 0, 529, 19]], [CAR, CAR], [0.9, 0.8])
    assert by_size(frame, miss)["small"] == [0, 1]
    run = summarize([score_frame(frame, r, "x.jpg")], {"lanes": {}, "detection": None})
    assert run["vehicles_by_size_iou50"] == want
    run["lanes"] = {"accuracy": 1.0, "fp": 0.0, "fn": 0.0}
    doc = {"model": "m", "frames": 1, "gt_lanes": 0, "gt_vehicles": 3, "lane_exist_threshold": 0.5,
           "score_thresholds": {"car": 0.5}, "demo": run}  # fmt: skip
    assert "| small 1/1, medium 0/1, large 1/1 |" in summary_markdown(doc)


def test_perfect_lanes_score_perfectly():
    xs = [x if x >= 300 else -2.0 for x in np.linspace(600.0, 200.0, 56)]
    frame = _frame([])
    frame.label.lanes = [Lane("ego_left", [], xs)]
    s = score_frame(frame, _result([], [], [], lanes=[np.array(xs)]), "x.jpg")
    assert (s.lane_acc, s.lane_fp, s.lane_fn, s.gt_lanes) == (1.0, 0.0, 0.0, 1)
    assert score_frame(frame, _result([], [], []), "x.jpg").lane_fn == 1.0


@pytest.fixture(scope="module")
def real_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real set imported with a lens calibration (so both runs happen)."""
    source = Path(__file__).resolve().parents[1] / "data" / "real" / "source"
    root = tmp_path_factory.mktemp("evreal")
    calib = Calib(1280, 720, 1158.8, 1154.1, 669.6, 388.1, 1.25, -0.027,
                  dist=(-0.257, 0.043, -0.0007, 0.0001, -0.115))  # fmt: skip
    (root / "calib.json").write_text(json.dumps(calib.to_dict()))
    argv = ["import", "tusimple", "--labels", str(source / "lanes_tusimple.json")]
    argv += ["--det-labels", str(source / "boxes_bdd100k.json")]
    argv += ["--calib", str(root / "calib.json"), "--out", str(root / "ds"), "--copy"]
    assert main(argv) == 0
    return root / "ds"


def test_evaluate_real_writes_metrics_overlays_and_summary(
    real_dataset: Path, onnx_model: Path, tmp_path: Path, capsys
):
    out = tmp_path / "eval-real"
    argv = ["evaluate-real", "--data", str(real_dataset), "--model", str(onnx_model)]
    assert main([*argv, "--out", str(out)]) == 0
    assert "| lane accuracy (bar >= 88 %) |" in capsys.readouterr().out
    doc = json.loads((out / "metrics.json").read_text())
    assert (doc["frames"], doc["gt_lanes"], doc["gt_vehicles"]) == (8, 24, 28)
    assert doc["score_thresholds"] == dict.fromkeys(CLASS_NAMES, 0.3)  # the demo's (contract)
    assert doc["far_field"] == 0
    for run in ("demo", "undistorted"):
        m = doc[run]
        assert set(m["vehicle_recall"]) == {"iou50", "iou30"} and len(m["per_frame"]) == 8
        assert set(m["ap50"]) == set(CLASS_NAMES) and m["lanes"]["accuracy"] is not None
        assert sum(f["gt_lanes"] for f in m["per_frame"]) == 24
        point = {
            "lane_acc": m["lanes"]["accuracy"],
            "lane_fp": m["lanes"]["fp"],
            "lane_fn": m["lanes"]["fn"],
            "false_vehicle_boxes_per_frame_iou50": m["false_vehicle_boxes_per_frame"]["iou50"],
        }
        point |= {f"vehicle_recall_{k}": v for k, v in m["vehicle_recall"].items()}  # fmt: skip
        assert set(m["interval95"]) == set(point)
        for key, (low, high) in m["interval95"].items():  # the figure lies inside its interval
            assert low - 1e-9 <= point[key] <= high + 1e-9, key
    names = sorted(f["image"] for f in doc["demo"]["per_frame"])
    assert names[0] == "advlane_straight_lines1.jpg"
    assert sorted(p.name for p in (out / "overlays").iterdir()) == names
    summary = (out / "summary.md").read_text()
    assert "advlane_test6.jpg" in summary and "| demo, 95 % interval over frames |" in summary
    # the far-field pass, as `perception demo --far-field` runs it
    assert main([*argv, "--out", str(tmp_path / "far"), "--far-field", "640"]) == 0
    far = json.loads((tmp_path / "far" / "metrics.json").read_text())
    assert far["far_field"] == 640 and len(far["undistorted"]["per_frame"]) == 8
    # `perception evaluate` scores the same set without a splits file, undistorted too
    argv = ["evaluate", "--data", str(real_dataset), "--model", str(onnx_model)]
    assert main([*argv, "--out", str(tmp_path / "ev"), "--undistort"]) == 0
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["model+undistort"]["frames"] == 8


def test_demo_runtime_and_evaluation_undistort_alike(real_dataset: Path, onnx_model: Path):
    """The loop (serving.runtime.Runtime, undistort=True) and evaluation's
    UndistortingPredictor answer the same on a real frame: one preprocessing and decode."""
    from perception.evaluate import UndistortingPredictor, load_model_predictor
    from serving.config import Settings
    from serving.runtime import Runtime
    from serving.undistort import UndistortingPreprocessor

    ds = Dataset(real_dataset)
    (clip,) = ds.clips()
    img = cv2.imread(str(clip.frame_path(clip.labels[2])))
    assert img is not None
    rows = np.asarray(clip.meta.h_samples, np.float32)
    rt = Runtime.onnx(str(onnx_model), clip.calib, Settings(), undistort=True)
    assert isinstance(rt.pre, UndistortingPreprocessor)
    got = rt(img, 0.0, None, {}).pred
    want = UndistortingPredictor(load_model_predictor(str(onnx_model)))(img, clip.calib, rows)
    np.testing.assert_allclose(got.lanes.xs, want.lanes.xs, atol=1e-3)
    np.testing.assert_allclose(got.detections.boxes, want.detections.boxes, atol=1e-3)
    # without distortion the flag changes nothing
    plain = Runtime.onnx(str(onnx_model), Calib.default(), Settings(), undistort=True)
    assert not plain.undistort and not isinstance(plain.pre, UndistortingPreprocessor)
