"""serving/: the Numba kernels against plain numpy references and the demo's handling of
bad input (the import boundary: tests/test_imports.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from serving.contract import ContractError, ModelContract, ModelOutputs
from serving.postprocess import (
    NO_POINT,
    Postprocessor,
    decode_boxes,
    decode_lanes,
    fit_quadratic,
    nms,
)
from serving.preprocess import Preprocessor, resize_rgb_u8

ROOT = Path(__file__).resolve().parents[1]


def _numpy_bilinear(img: np.ndarray, w: int, h: int) -> np.ndarray:
    """Reference: half-pixel-centre bilinear written plainly with numpy (float64)."""
    src = img.astype(np.float64)
    if src.ndim == 2:
        src = src[:, :, None]
    hi, wi = src.shape[:2]

    def taps(n: int, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        f = np.clip((np.arange(n) + 0.5) * n_in / n - 0.5, 0, n_in - 1)
        i0 = np.floor(f).astype(int)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, f - i0

    x0, x1, fx = taps(w, wi)
    y0, y1, fy = taps(h, hi)
    top = src[y0][:, x0] * (1 - fx)[None, :, None] + src[y0][:, x1] * fx[None, :, None]
    bot = src[y1][:, x0] * (1 - fx)[None, :, None] + src[y1][:, x1] * fx[None, :, None]
    return top * (1 - fy)[:, None, None] + bot * fy[:, None, None]


@pytest.mark.parametrize(
    "shape",
    [(720, 1280, 3), (480, 854, 3), (1280, 720, 3), (37, 53, 3), (720, 1280), (720, 1280, 4),
     (720, 1280, 1)],
)  # fmt: skip
def test_preprocess_is_the_bilinear_resize_normalised(shape: tuple[int, ...]) -> None:
    """The model input is training's uint8 resize (resize_rgb_u8), normalised; that resize
    is bilinear with half-pixel centres (the numpy reference) to within one grey level
    (OpenCV's 11-bit fixed-point weights, then rounding)."""
    c = ModelContract()
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, shape, dtype=np.uint8)
    got = Preprocessor(c)(frame)[0]
    assert got.shape == (3, c.input_height, c.input_width)
    u8 = resize_rgb_u8(frame, c.input_width, c.input_height).astype(np.float64)
    want = ((u8 - np.array(c.mean)) / np.array(c.std)).transpose(2, 0, 1)
    assert np.abs(got - want).max() < 1e-5
    ref = _numpy_bilinear(frame, c.input_width, c.input_height)
    if ref.shape[2] == 1:
        ref = np.repeat(ref, 3, axis=2)
    rgb = ref[:, :, [2, 1, 0]]  # BGR(A) -> RGB
    assert np.abs(u8 - rgb).max() < 1.0
    if frame.ndim == 3 and frame.shape[2] == 3:  # an RGB frame: the same input
        assert np.array_equal(Preprocessor(c)(frame[..., ::-1].copy(), "rgb")[0], got)


def test_preprocess_agrees_with_opencv_resize() -> None:
    frame = np.random.default_rng(1).integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    ref = cv2.resize(frame, (448, 256), interpolation=cv2.INTER_LINEAR)[:, :, ::-1]
    assert np.array_equal(resize_rgb_u8(frame, 448, 256), ref)


def test_decode_lanes_against_numpy() -> None:
    rng = np.random.default_rng(2)
    logits = rng.normal(0, 3, (4, 56, 101)).astype(np.float32)
    logits[..., 100] += rng.uniform(0, 10, (4, 56)).astype(np.float32)  # "no point" wins some
    exist = np.array([0.9, 0.2, 0.7, 0.8], np.float32)
    got = np.empty((4, 56), np.float32)
    rows = np.arange(160, 720, 10, dtype=np.float32)
    decode_lanes(logits, exist, 0.5, 1280.0, rows, got, 0.0)  # no fit: per-row values
    # reference without smoothing: softmax expectation over the cells where "no point" is
    # less likely than the cells together
    e = np.exp(logits[..., :100] - logits.max(-1, keepdims=True))
    x = (e * (np.arange(100) + 0.5)).sum(-1) / e.sum(-1) * 1280 / 100
    p_none = np.exp(logits[..., 100] - logits.max(-1)) / np.exp(
        logits - logits.max(-1, keepdims=True)
    ).sum(-1)
    present = (p_none < 0.5) & (exist[:, None] >= 0.5)
    assert np.array_equal(got != NO_POINT, present)
    assert (present & (logits.argmax(-1) == 100)).any()  # rows the argmax test would drop
    assert (~present & (exist[:, None] >= 0.5)).any()  # and rows that are no point
    raw_or_smoothed = np.isclose(got, x, atol=1e-2)
    # smoothed points are the mean of three raw neighbours
    sm = np.zeros_like(x)
    sm[:, 1:-1] = (x[:, :-2] + x[:, 1:-1] + x[:, 2:]) / 3
    assert np.all(raw_or_smoothed | np.isclose(got, sm, atol=1e-2) | ~present)


def test_a_row_split_over_two_cells_is_a_point() -> None:
    """P = 0.3 / 0.3 on two neighbouring cells and 0.4 on "no point": the point is more
    likely than not, at the two cells' expectation; P = 0.2 / 0.2 / 0.6 is no point."""
    cells = 10
    rows = np.array([0.0], np.float32)
    for p_cell, want in ((0.3, 4.0 * 1280 / cells), (0.2, NO_POINT)):
        logits = np.full((1, 1, cells + 1), -30.0, np.float32)
        logits[0, 0, 3] = logits[0, 0, 4] = np.log(p_cell)
        logits[0, 0, cells] = np.log(1 - 2 * p_cell)
        got = np.empty((1, 1), np.float32)
        decode_lanes(logits, np.ones(1, np.float32), 0.5, 1280.0, rows, got, 0.0)
        assert got[0, 0] == pytest.approx(want, abs=1e-3)


def test_fit_quadratic_hand_cases() -> None:
    """An exact quadratic comes back unchanged; noise around one is pulled towards it; the
    absent points stay absent; too few points or too few distinct rows are left alone."""
    t = np.arange(160, 720, 10, dtype=np.float32)
    truth = (300.0 + 0.8 * (t - 160) + 1e-3 * (t - 160) ** 2).astype(np.float32)
    x = truth.copy()
    x[:5] = NO_POINT  # the lane starts lower in the image
    fit_quadratic(t, x, 5, 1e9)
    assert np.array_equal(x[:5], np.full(5, NO_POINT, np.float32))
    assert np.abs(x[5:] - truth[5:]).max() < 1e-2
    noisy = truth + np.random.default_rng(0).normal(0, 4, t.shape).astype(np.float32)
    fitted = noisy.copy()
    fit_quadratic(t, fitted, 5, 1e9)
    assert np.abs(fitted - truth).mean() < 0.5 * np.abs(noisy - truth).mean()
    few = np.full(t.shape, NO_POINT, np.float32)
    few[[3, 9, 20, 30]] = [1.0, 9.0, 2.0, 7.0]
    kept = few.copy()
    fit_quadratic(t, kept, 5, 1e9)
    assert np.array_equal(kept, few)
    flat = np.full(6, 5.0, np.float32)  # one distinct row: no quadratic through it
    same = flat.copy()
    fit_quadratic(np.ones(6, np.float32), same, 5, 1e9)
    assert np.array_equal(same, flat)


def test_decode_lanes_fits_a_quadratic_per_lane() -> None:
    """Logits that peak along a quadratic with one row's peak knocked 3 cells off: the
    decode follows the quadratic there (the fit), not the stray row."""
    cells, rows = 100, np.arange(160, 720, 10, dtype=np.float32)
    centre = 20.0 + 0.1 * (rows - 160) + 8e-5 * (rows - 160) ** 2  # cells
    stray = centre.copy()
    stray[30] += 3.0
    grid = np.arange(cells) + 0.5
    logits = np.full((1, rows.size, cells + 1), -20.0, np.float32)
    logits[0, :, :cells] = -0.5 * (grid[None, :] - stray[:, None]) ** 2
    got = np.empty((1, rows.size), np.float32)
    decode_lanes(logits, np.ones(1, np.float32), 0.5, 1280.0, rows, got, 1.0)
    px = centre * 12.8
    assert abs(got[0, 30] - px[30]) < 0.35 * 3.0 * 12.8  # the stray row is pulled back
    assert np.abs(got[0] - px).max() < 0.35 * 3.0 * 12.8


def test_nms_hand_case() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 10]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
    classes = np.array([0, 0, 0, 1], np.int32)
    # IoU(0, 1) = 81 / 119 = 0.68 > 0.5: box 1 suppressed; box 3 is another class
    assert nms(boxes, scores, classes, 0.5, 10).tolist() == [0, 2, 3]
    assert nms(boxes, scores, classes, 0.7, 10).tolist() == [0, 1, 2, 3]


def test_decode_boxes_peaks_and_geometry() -> None:
    heat = np.zeros((4, 8, 8), np.float32)
    heat[1, 3, 4] = 0.9
    heat[1, 3, 5] = 0.5  # not a peak: its neighbour is higher
    heat[2, 6, 1] = 0.4
    box = np.full((4, 8, 8), 8.0, np.float32)
    thr = np.full(4, 0.3, np.float32)
    b, s, k = decode_boxes(heat, box, thr, 8.0, 2.0, 2.0, 1000.0, 1000.0, 0.6, 100)
    assert k.tolist() == [1, 2] and np.allclose(s, [0.9, 0.4])
    # cell (y=3, x=4): centre (36, 28) input px, +-8 -> (28, 20, 44, 36) * 2
    assert np.allclose(b[0], [56, 40, 88, 72])
    # per-class thresholds: the pedestrian (0.4) needs 0.45 now, the truck (0.9) still passes;
    # a score exactly at its class's threshold is kept
    thr = np.array([0.3, 0.9, 0.45, 0.3], np.float32)
    b, s, k = decode_boxes(heat, box, thr, 8.0, 2.0, 2.0, 1000.0, 1000.0, 0.6, 100)
    assert k.tolist() == [1] and np.allclose(s, [0.9])


def test_class_thresholds_in_the_contract_and_the_decode() -> None:
    c = ModelContract(class_thresholds=(0.5, 0.4, 0.7, 0.6))
    assert ModelContract.from_metadata(c.to_metadata()) == c
    assert ModelContract().thresholds() == (0.3,) * 4  # empty: score_threshold for each class
    # a file written before the key existed reads as "no per-class thresholds"
    meta = {k: v for k, v in c.to_metadata().items() if k != "contract.class_thresholds"}
    assert ModelContract.from_metadata(meta).class_thresholds == ()
    for bad in ((0.5, 0.5), (0.5, 0.5, 0.5, 1.5), (0.5, 0.5, 0.5, float("nan"))):
        with pytest.raises(ContractError, match="class_thresholds"):
            ModelContract(class_thresholds=bad)
    heat = np.zeros((4, 32, 56), np.float32)
    heat[0, 5, 5], heat[2, 20, 20] = 0.55, 0.65  # a car above 0.5, a pedestrian below 0.7
    box = np.full((4, 32, 56), 8.0, np.float32)
    outs = ModelOutputs(heat, box, np.zeros((4, 56, 101), np.float32), np.zeros(4, np.float32))
    post = Postprocessor(c, 1280, 720)
    assert post(outs).detections.classes.tolist() == [0]
    # evaluation's override ranks every class down to one low threshold
    assert sorted(post(outs, score_threshold=0.05).detections.classes.tolist()) == [0, 2]


def _demo(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "perception.cli", "demo", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )


@pytest.mark.parametrize("case", ["missing", "corrupt", "empty"])
def test_demo_refuses_bad_video_with_one_line(tmp_path: Path, case: str) -> None:
    path = tmp_path / "in.mp4"
    if case == "corrupt":
        path.write_bytes(b"this is not a video" * 100)
    elif case == "empty":
        path.write_bytes(b"")
    res = _demo([str(path), "--model", str(tmp_path / "none.onnx")])
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("perception:")]
    assert res.returncode != 0
    assert len(lines) == 1 and "in.mp4" in lines[0], res.stderr
    assert "Traceback" not in res.stderr


def _video(path: Path, size: tuple[int, int], n: int, fourcc: str = "mp4v") -> Path:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 20.0, size)
    rng = np.random.default_rng(0)
    for _ in range(n):
        w.write(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    w.release()
    return path


@pytest.mark.slow
@pytest.mark.parametrize("size", [(854, 480), (1920, 1080), (720, 1280)])
def test_demo_runs_on_odd_sizes(tmp_path: Path, onnx_model: Path, size: tuple[int, int]) -> None:
    video = _video(tmp_path / "in.mp4", size, 6)
    out, jsonl = tmp_path / "out.mp4", tmp_path / "out.jsonl"
    res = _demo([str(video), "--model", str(onnx_model), "--out", str(out), "--jsonl", str(jsonl)])
    assert res.returncode == 0, res.stderr[-2000:]
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 6
    assert (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))) == size
    assert len(jsonl.read_text().splitlines()) == 6


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["gray", "bgra"])
def test_demo_on_gray_and_four_channel_frames(tmp_path: Path, onnx_model: Path, mode: str) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        img = rng.integers(0, 255, (360, 640) if mode == "gray" else (360, 640, 4), dtype=np.uint8)
        cv2.imwrite(str(folder / f"{i:03d}.png"), img)
    res = _demo([str(folder), "--model", str(onnx_model), "--jsonl", str(tmp_path / "o.jsonl")])
    assert res.returncode == 0, res.stderr[-2000:]
    assert len((tmp_path / "o.jsonl").read_text().splitlines()) == 4


@pytest.mark.slow
def test_demo_refuses_a_model_without_contract(tmp_path: Path, onnx_model: Path) -> None:
    import onnx

    model = onnx.load(str(onnx_model))
    del model.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(model, str(bare))
    video = _video(tmp_path / "in.mp4", (320, 180), 3)
    res = _demo([str(video), "--model", str(bare)])
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("perception:")]
    assert res.returncode != 0 and len(lines) == 1 and "no model contract" in lines[0]


@pytest.mark.slow
def test_source_dying_mid_stream_leaves_playable_video_and_whole_lines(
    tmp_path: Path, onnx_model: Path
) -> None:
    full = _video(tmp_path / "full.avi", (320, 180), 30, "MJPG")
    data = full.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    out, jsonl = tmp_path / "out.mp4", tmp_path / "out.jsonl"
    res = _demo([str(cut), "--model", str(onnx_model), "--out", str(out), "--jsonl", str(jsonl)])
    # not a success: one line naming the input, the outputs kept under their partial names
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("perception:")]
    assert res.returncode == 2 and len(errors) == 1 and "cut.avi" in errors[0], res.stderr
    assert "partial" in errors[0] and not out.exists() and not jsonl.exists()
    import json

    lines = (tmp_path / ".out.partial.jsonl").read_text().splitlines()
    assert 0 < len(lines) < 30
    assert all(json.loads(ln)["frame"] == i for i, ln in enumerate(lines))
    cap = cv2.VideoCapture(str(tmp_path / ".out.partial.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == len(lines)
