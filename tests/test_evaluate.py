"""perception evaluate end to end on a tiny simulated dataset, with an oracle predictor built
from the labels (it must score perfectly) and the Hough baseline."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from perception.baseline import HoughBaseline
from perception.cli import main
from perception.dataset.schema import Dataset
from perception.dataset.split import load_splits, run_split
from perception.evaluate import evaluate, resample_lanes
from perception.params import DataParams, EvaluateParams, SplitParams
from perception.sim.generate import generate
from serving.contract import CLASS_NAMES, LANE_SLOTS
from serving.geometry import Calib
from serving.postprocess import NO_POINT, Detections, FramePrediction, Lanes


def _key(img: np.ndarray) -> str:
    return hashlib.sha1(img.tobytes()).hexdigest()


class Oracle:
    """Answers with the labels of the frame it is shown (looked up by the image's hash):
    lanes on the clip's h_samples, every box with score 1."""

    name = "oracle"

    def __init__(self, root: Path):
        self.labels = {}
        for clip in Dataset(root).clips():
            for label in clip.labels:
                img = cv2.imread(str(clip.frame_path(label)))
                self.labels[_key(img)] = label

    def __call__(self, frame_bgr: np.ndarray, calib: Calib, rows: np.ndarray) -> FramePrediction:
        label = self.labels[_key(frame_bgr)]
        xs = np.full((len(LANE_SLOTS), len(rows)), NO_POINT, np.float32)
        for lane in label.lanes:
            xs[LANE_SLOTS.index(lane.slot)] = lane.x_at_h
        obs = label.obstacles
        dets = Detections(
            np.array([o.box for o in obs], np.float32).reshape(-1, 4),
            np.ones(len(obs), np.float32),
            np.array([CLASS_NAMES.index(o.cls) for o in obs], np.int32),
        )
        return FramePrediction(Lanes(xs, rows, np.ones(len(LANE_SLOTS), np.float32)), dets)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("evaldata") / "data"
    generate(
        root,
        DataParams(seed=3, clips=4, frames=3, width=640, height=360, workers=1),
        progress=False,
    )
    splits = root.parent / "splits.json"
    run_split(root, splits, SplitParams(seed=3, val=0.25, test=0.5))
    return root, splits


def test_oracle_scores_perfectly_and_outputs_parse(tiny, tmp_path):
    root, splits = tiny
    out = tmp_path / "eval"
    metrics = evaluate(
        root,
        splits,
        out,
        [HoughBaseline(), Oracle(root)],
        EvaluateParams(split="test"),
        progress=False,
    )
    n_frames = 3 * len(load_splits(splits)["test"])
    o = metrics["oracle"]
    assert o["frames"] == n_frames >= 3
    assert o["lanes"] == {"accuracy": 1.0, "fp": 0.0, "fn": 0.0, "f1": 1.0}
    gt = json.loads((out / "coco_gt.json").read_text())
    present = {CLASS_NAMES[a["category_id"] - 1] for a in gt["annotations"]}
    assert present, "the test split should hold some obstacles"
    for cls in CLASS_NAMES:
        for key in ("ap50", "ap"):
            ap = o["detection"][key][cls]
            assert (ap == pytest.approx(1.0)) if cls in present else ap is None, (key, cls)
    assert o["detection"]["ap50"]["mean"] == pytest.approx(1.0)
    # the oracle finds every box of every height; the bins hold every gt box that AP counts
    # (not the crowd ones: mostly hidden objects, ignored by COCO's matching) once
    by = o["detection"]["recall50_by_height_px"]
    for cls in CLASS_NAMES:
        bins = by[cls].values()
        assert all(b["recall"] == (1.0 if b["boxes"] else None) for b in bins), cls
    n_gt = sum(b["boxes"] for c in by.values() for b in c.values())
    assert n_gt == sum(not a["iscrowd"] for a in gt["annotations"]) > 0
    assert set(o["slices"]) == {"day", "dusk", "night", "rain", "fog", "curves", "highway"}
    assert sum(s["frames"] for k, s in o["slices"].items() if k in ("day", "dusk", "night")) == (
        n_frames
    )
    b = metrics["baseline"]
    assert b["detection"] is None and b["distance"] is None
    assert 0.0 <= b["lanes"]["accuracy"] < 1.0

    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["oracle"]["lanes"] == o["lanes"]
    pr = json.loads((out / "pr_curves.json").read_text())
    assert {p["class"] for p in pr} == present and all(p["precision"] == 1.0 for p in pr)
    assert (out / "slices.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pred_lines = (out / "tusimple_pred.json").read_text().splitlines()
    gt_lines = (out / "tusimple_gt.json").read_text().splitlines()
    assert len(pred_lines) == len(gt_lines) == n_frames
    for pl, gl in zip(pred_lines, gt_lines, strict=True):
        p, g = json.loads(pl), json.loads(gl)
        assert p["raw_file"] == g["raw_file"] and (root / p["raw_file"]).is_file()
        assert p["lanes"] == g["lanes"] and p["h_samples"] == g["h_samples"]
        assert p["run_time"] >= 0
    coco = COCO(str(out / "coco_gt.json"))
    assert len(coco.getImgIds()) == n_frames
    dets = coco.loadRes(str(out / "coco_pred.json"))
    assert len(dets.getAnnIds()) == len(gt["annotations"])


def test_baseline_alone_and_max_frames(tiny, tmp_path):
    root, splits = tiny
    metrics = evaluate(
        root,
        splits,
        tmp_path,
        [HoughBaseline()],
        EvaluateParams(split="train", max_frames=2),
        progress=False,
    )
    assert list(metrics) == ["baseline"] and metrics["baseline"]["frames"] == 2
    assert json.loads((tmp_path / "coco_pred.json").read_text()) == []
    assert json.loads((tmp_path / "pr_curves.json").read_text()) == []
    assert len((tmp_path / "tusimple_pred.json").read_text().splitlines()) == 2


def test_resample_to_other_rows():
    rows = np.array([100, 200, 300, 400], np.float32)
    xs = np.array([[10, 20, NO_POINT, 40], [NO_POINT] * 3 + [5]], np.float32)
    out = resample_lanes(Lanes(xs, rows, np.ones(2, np.float32)), [100, 150, 200, 250, 400])
    assert len(out) == 1  # the one-point lane is dropped
    # interpolated between valid anchors; not across the gap at 300
    np.testing.assert_allclose(out[0], [10, 15, 20, -2, 40])


def test_cli_errors_are_one_line(tiny, tmp_path, capsys):
    root, splits = tiny
    base = ["evaluate", "--data", str(root), "--out", str(tmp_path / "o")]
    assert main([*base, "--splits", str(tmp_path / "nope.json")]) == 2
    assert "nope.json: missing splits file" in capsys.readouterr().err
    assert main([*base, "--splits", str(splits), "--split", "holdout"]) == 2
    assert "unknown split 'holdout'" in capsys.readouterr().err
    assert main([*base, "--splits", str(splits), "--model", str(tmp_path / "m.pt")]) == 2
    err = capsys.readouterr().err
    assert "m.pt: missing model file" in err and len(err.strip().splitlines()) == 1
    assert main([*base, "--splits", str(splits), "--no-baseline"]) == 2  # and no model
    err = capsys.readouterr().err
    assert "nothing to evaluate" in err and len(err.strip().splitlines()) == 1


def test_cli_runs_the_baseline(tiny, tmp_path, capsys):
    root, splits = tiny
    out = tmp_path / "o"
    code = main(
        [
            "evaluate",
            "--data",
            str(root),
            "--splits",
            str(splits),
            "--out",
            str(out),
            "--max-frames",
            "3",
        ]
    )
    assert code == 0
    table = capsys.readouterr().out
    assert "baseline" in table and "curves" in table and "night" in table
    assert json.loads((out / "metrics.json").read_text())["baseline"]["frames"] == 3
