"""The far-field pass (serving/farfield.py): its window and merge by hand, and the loop's
runtime and evaluation's predictor running the same two passes."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from perception.evaluate.predictors import FarFieldPredictor
from perception.model.predict import OnnxPredictor
from serving.config import Settings
from serving.contract import ModelContract
from serving.farfield import FAR_MAX_HEIGHT, Window, far_window, merge
from serving.geometry import Calib
from serving.postprocess import Detections
from serving.preprocess import Preprocessor
from serving.runtime import Runtime


def test_far_window_by_hand() -> None:
    """Calib.default: principal point (640, 360), f 1000, 2 deg down -> horizon at row
    360 - 1000 tan(2 deg) = 325.08. A 640-wide window has the 448x256 input's aspect: 366
    rows; x0 = 640 - 320; y0 = round(325.08 - 0.45 * 366) = 160."""
    c, cal = ModelContract(), Calib.default()
    assert 360 - 1000 * math.tan(math.radians(2)) == pytest.approx(cal.horizon_v)
    assert far_window(cal, 640, c) == Window(320, 160, 640, 366)
    assert far_window(cal, 0, c) is None and far_window(cal, 1280, c) is None
    # a camera looking up far enough puts the horizon low: the window stops at the frame
    low = replace(cal, pitch_rad=math.radians(-15), cx=1200.0)
    assert far_window(low, 640, c) == Window(640, 720 - 366, 640, 366)


def _det(boxes: list[list[float]], scores: list[float], classes: list[int]) -> Detections:
    return Detections(
        np.array(boxes, np.float32).reshape(-1, 4),
        np.array(scores, np.float32),
        np.array(classes, np.int32),
    )


def test_merge_by_hand() -> None:
    """Window (100, 50) 640x366 inside a 1280x720 frame. Far boxes (window pixels): A small,
    inside -> kept, shifted by (100, 50); B touches the left inner edge, C the bottom one ->
    cut, dropped; D is 96 px tall (FAR_MAX_HEIGHT of 720) -> a near object, dropped; E is the
    full pass's box F again (IoU 1, same class) with a higher score -> E kept, F suppressed;
    G is F's place in another class -> kept (class-wise NMS)."""
    assert round(FAR_MAX_HEIGHT * 720, 9) == 96.0
    win = Window(100, 50, 640, 366)
    full = _det([[400, 150, 440, 180], [900, 300, 1000, 400]], [0.5, 0.9], [0, 1])
    far = _det(
        [[10, 10, 40, 30], [1, 10, 30, 30], [200, 340, 230, 364], [300, 100, 330, 196],
         [300, 100, 340, 130], [300, 100, 340, 130]],
        [0.6, 0.9, 0.9, 0.9, 0.7, 0.4], [0, 0, 0, 0, 0, 2],
    )  # fmt: skip
    out = merge(full, far, win, 1280, 720, iou=0.6, max_out=100)
    scores = [round(float(s), 2) for s in out.scores]
    got = sorted(zip(scores, out.classes.tolist(), out.boxes.tolist(), strict=True))
    assert got == [
        (0.4, 2, [400.0, 150.0, 440.0, 180.0]),  # G
        (0.6, 0, [110.0, 60.0, 140.0, 80.0]),  # A
        (0.7, 0, [400.0, 150.0, 440.0, 180.0]),  # E (F gone)
        (0.9, 1, [900.0, 300.0, 1000.0, 400.0]),  # the full pass's other box
    ]
    # a window at the frame's edge has no inner edge there: a box touching it stays
    edge = merge(full, _det([[1, 10, 30, 30]], [0.9], [0]), Window(0, 0, 640, 366), 1280, 720,
                 iou=0.6, max_out=100)  # fmt: skip
    assert len(edge.boxes) == 3


@pytest.fixture(scope="module")
def eager_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """conftest's untrained model with a score threshold of 0.02: its heatmap peaks near
    0.05, so that both passes find boxes."""
    import torch

    from perception.export.onnx_export import export_onnx
    from perception.model.files import model_file, save_atomic
    from perception.model.net import PerceptionNet
    from perception.params import TrainParams

    root = tmp_path_factory.mktemp("farfield")
    torch.manual_seed(0)
    net = PerceptionNet(ModelContract(score_threshold=0.02)).eval()
    save_atomic(model_file(net, TrainParams(), {}), root / "model.pt")
    return export_onnx(root / "model.pt", root / "perception.onnx", {})


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    rng = np.random.default_rng(3)
    img = rng.integers(0, 255, (720, 1280, 3), dtype=np.uint8)
    img[320:420, 560:720] = (40, 40, 200)  # something at the horizon
    return img


def test_runtime_and_predictor_run_the_same_two_passes(eager_model: Path, frame: np.ndarray):
    """The loop (serving.runtime) and evaluation (perception.model.predict) give the same
    boxes with the far field on; it changes them; the model input the monitor reads stays
    the frame's, not the crop's."""
    cal = Calib.default()
    rt = Runtime.onnx(str(eager_model), cal, Settings(), far_field=640)
    stage_ns: dict[str, int] = {}
    got = rt(frame, 0.0, None, stage_ns).pred.detections
    assert set(stage_ns) == {"pre", "infer", "post", "track"}
    expected = Preprocessor(rt.contract)(frame)
    np.testing.assert_array_equal(rt.last_input, expected)

    model = OnnxPredictor(eager_model)
    rows = np.zeros(0, np.float32)
    ref = FarFieldPredictor(model, 640)(frame, cal, rows)
    np.testing.assert_allclose(got.boxes, ref.detections.boxes, atol=1e-3)
    np.testing.assert_array_equal(got.classes, ref.detections.classes)

    one = model(frame, cal).detections
    assert len(one.boxes) > 0 and len(got.boxes) > 0
    assert len(one.boxes) != len(got.boxes) or not np.allclose(one.boxes, got.boxes)
