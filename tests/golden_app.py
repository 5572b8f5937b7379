"""A small fixed model and a short clip for the golden-file test of the application.

The model is an ONNX graph written here with onnx.helper and seeded weights, not the
project's network: it stays the same whatever the training side does to its architecture,
so the golden records change only when the application changes. It answers to its input the
way a trained model would, coarsely: bright blobs light up the heatmap (detections that move
and grow from frame to frame, so that tracks, distances, TTC and FCW are exercised), and the
lane head puts four straight lanes, converging on the horizon, on the rows below it, nudged
by the image (so that the lane smoother, the ego lane fit and LDW see some motion).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from serving.contract import ModelContract
from serving.geometry import Calib

SIZE = (640, 360)  # clip frame size (width, height)
FRAMES = 24
FRAME_DT_NS = 50_000_000  # 20 Hz
SPEED_MPS = 20.0  # ego speed in the clip's sensors.csv
# heatmap logits per class from the pooled, normalised R G B: car sees anything bright, truck
# sees yellow (red and green without blue), pedestrian nothing, cyclist the brightest only
HEAT_RGB = np.array([[1.0, 1.0, 1.0], [1.2, 0.6, -1.4], [-1.0, -1.0, -1.0], [0.5, 0.5, 0.5]])
HEAT_BIAS = np.array([-5.2, -3.0, -8.0, -3.4])


def _lane_logits_constant(c: ModelContract, calib: Calib) -> np.ndarray:
    """float32[L * R * (G + 1)]: straight lanes from the vanishing point, in logits (a peak
    8 high and 3 cells wide at each lane's column; "no lane" above the horizon)."""
    n_l, n_r, g = len(c.lane_slots), len(c.row_anchors), c.lane_cells
    rows = np.asarray(c.row_anchors) * calib.image_height
    horizon = calib.horizon_v
    bottom = {"ego_left": 0.18, "ego_right": 0.86, "outer_left": -0.4, "outer_right": 1.4}
    out = np.full((n_l, n_r, g + 1), -4.0, np.float32)
    cells = np.arange(g) + 0.5
    for k, slot in enumerate(c.lane_slots):
        for r, v in enumerate(rows):
            frac = (v - horizon) / (calib.image_height - horizon)
            if frac < 0.08:
                out[k, r, g] = 6.0  # no lane at or above the horizon
                continue
            x = 0.5 + (bottom[slot] - 0.5) * frac  # fraction of the width
            out[k, r, :g] = 8.0 * np.exp(-0.5 * ((cells - x * g) / 3.0) ** 2) - 4.0
    return out.ravel()


def _init(name: str, a: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.ascontiguousarray(a, np.float32), name)


def build_model(path: Path, seed: int = 13) -> Path:
    """Write the fixed model (contract in metadata_props) to path."""
    c = ModelContract()
    rng = np.random.default_rng(seed)
    n_l = len(c.lane_slots)
    lane_size = n_l * len(c.row_anchors) * (c.lane_cells + 1)
    g = (c.input_height // 64) * (c.input_width // 64) * 3  # pooled features for the lanes
    inits = [
        _init("wh", (HEAT_RGB + rng.uniform(-0.1, 0.1, HEAT_RGB.shape))[:, :, None, None]),
        _init("bh", HEAT_BIAS),
        _init("wb", rng.uniform(0.1, 0.4, (4, 3, 1, 1))),
        _init("bb", np.full(4, 0.5)),
        _init("sixteen", np.array(16.0)),
        _init("wl", rng.normal(0.0, 0.15, (g, lane_size))),
        _init("cl", _lane_logits_constant(c, Calib.default(*SIZE))),
        _init("we", rng.normal(0.0, 0.5, (g, n_l))),
        _init("be", np.array([3.0, 3.0, 0.0, -0.2])[:n_l]),
        numpy_helper.from_array(np.array([-1, *c.output_shapes.lane_logits], np.int64), "shape"),
    ]
    nodes = [
        helper.make_node("AveragePool", ["image"], ["p8"], kernel_shape=[8, 8], strides=[8, 8]),
        helper.make_node("Conv", ["p8", "wh", "bh"], ["h"]),
        helper.make_node("Sigmoid", ["h"], ["heatmap"]),
        helper.make_node("Conv", ["p8", "wb", "bb"], ["b"]),
        helper.make_node("Softplus", ["b"], ["bs"]),
        helper.make_node("Mul", ["bs", "sixteen"], ["box"]),
        helper.make_node(
            "AveragePool", ["image"], ["p64"], kernel_shape=[64, 64], strides=[64, 64]
        ),
        helper.make_node("Flatten", ["p64"], ["f"]),
        helper.make_node("MatMul", ["f", "wl"], ["l"]),
        helper.make_node("Add", ["l", "cl"], ["l2"]),
        helper.make_node("Reshape", ["l2", "shape"], ["lane_logits"]),
        helper.make_node("MatMul", ["f", "we"], ["e"]),
        helper.make_node("Add", ["e", "be"], ["e2"]),
        helper.make_node("Sigmoid", ["e2"], ["lane_exist"]),
    ]
    batch = "batch"
    shapes = c.output_shapes
    outputs = [
        helper.make_tensor_value_info(name, TensorProto.FLOAT, [batch, *shape])
        for name, shape in zip(shapes._fields, shapes, strict=True)
    ]
    image = helper.make_tensor_value_info(
        c.input_name, TensorProto.FLOAT, [batch, 3, c.input_height, c.input_width]
    )
    graph = helper.make_graph(nodes, "golden", [image], outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for k, v in sorted(c.to_metadata().items()):
        model.metadata_props.add(key=k, value=v)
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


def _frame(i: int) -> np.ndarray:
    """A grey road with bright blobs: a lead closing in the ego lane (growing, moving down),
    a yellow one passing on the left (hidden in frames 9-11), a third appearing at frame 15;
    light lane stripes that shift slowly sideways."""
    w, h = SIZE
    img = np.full((h, w, 3), (95, 100, 105), np.uint8)
    img[: int(0.45 * h)] = (200, 170, 140)  # sky
    shift = int(6 * np.sin(i / 5.0))
    for x_bottom in (0.18, 0.86):
        x0 = int(w * (0.5 + (x_bottom - 0.5))) + shift
        cv2.line(img, (w // 2 + shift // 3, int(0.46 * h)), (x0, h - 1), (230, 230, 230), 3)
    r = 10 + i
    cv2.circle(img, (w // 2 + 5, int(0.55 * h) + 2 * i), r, (250, 250, 250), -1)
    if not 9 <= i <= 11:  # hidden for three frames: its track coasts, then is found again
        cv2.circle(img, (int(0.25 * w) - 4 * i, int(0.62 * h) + i), 14, (60, 250, 250), -1)
    if i >= 15:  # a third one appears late: a new track
        cv2.circle(img, (int(0.8 * w) - 3 * i, int(0.58 * h)), 16, (250, 250, 250), -1)
    return cv2.GaussianBlur(img, (0, 0), 6.0)


def write_clip(folder: Path) -> Path:
    """A clip folder as serving.io.ClipSource reads it: PNG frames, labels.jsonl (frame,
    image, timestamp), calib.json and sensors.csv (constant ego speed)."""
    (folder / "frames").mkdir(parents=True)
    lines = []
    for i in range(FRAMES):
        name = f"frames/{i:06d}.png"
        cv2.imwrite(str(folder / name), _frame(i))
        lines.append(json.dumps({"frame": i, "image": name, "timestamp_ns": i * FRAME_DT_NS}))
    (folder / "labels.jsonl").write_text("\n".join(lines) + "\n")
    (folder / "calib.json").write_text(json.dumps(Calib.default(*SIZE).to_dict()))
    rows = [f"{t},{SPEED_MPS},0.0,0.0,0.0" for t in range(0, FRAMES * FRAME_DT_NS, 10_000_000)]
    header = "t_ns,speed_mps,yaw_rate_rps,accel_mps2,steering_rad"
    (folder / "sensors.csv").write_text("\n".join([header, *rows]) + "\n")
    return folder
