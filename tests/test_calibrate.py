"""`perception calibrate` on chessboard photos rendered with a known camera, its one-line
errors, and the pitch from the vanishing point of lane labels."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from perception.calibrate import calibrate, read_photos, vanishing_row
from perception.cli import main
from perception.errors import UserError
from serving.geometry import Calib

W, H = 640, 480
K_TRUE = np.array([[520.0, 0.0, 322.0], [0.0, 518.0, 236.0], [0.0, 0.0, 1.0]])
SQUARE_PX, SQUARES = 24, (10, 7)  # 9x6 inner corners


def _board_image() -> np.ndarray:
    """A white-margined 10x7-square chessboard, one square SQUARE_PX pixels."""
    cols, rows = SQUARES
    img = np.full(((rows + 2) * SQUARE_PX, (cols + 2) * SQUARE_PX), 255, np.uint8)
    for r in range(rows):
        for c in range(cols):
            if (r + c) % 2 == 0:
                y, x = (r + 1) * SQUARE_PX, (c + 1) * SQUARE_PX
                img[y : y + SQUARE_PX, x : x + SQUARE_PX] = 0
    return img


def _view(board: np.ndarray, rvec: tuple[float, float, float], t: tuple[float, float, float]):
    """The board seen by the pinhole camera K_TRUE from pose (rvec, t metres); one board
    pixel is 1 mm on the board plane."""
    r, _ = cv2.Rodrigues(np.array(rvec, np.float64))
    to_m = np.diag([0.001, 0.001, 1.0])
    hom = K_TRUE @ np.column_stack([r[:, 0], r[:, 1], np.array(t)]) @ to_m
    return cv2.warpPerspective(board, hom, (W, H), borderValue=255)


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("boards")
    board = _board_image()
    poses = [  # the board (240 x 168 mm) fills much of the frame, tilted several ways
        ((0.0, 0.0, 0.0), (-0.12, -0.084, 0.32)),
        ((0.35, 0.0, 0.0), (-0.12, -0.07, 0.34)),
        ((-0.35, 0.1, 0.0), (-0.12, -0.09, 0.33)),
        ((0.0, 0.4, 0.1), (-0.13, -0.084, 0.34)),
        ((0.0, -0.4, -0.1), (-0.10, -0.084, 0.33)),
        ((0.3, 0.3, 0.05), (-0.12, -0.08, 0.36)),
    ]
    for i, (rvec, t) in enumerate(poses):
        cv2.imwrite(str(folder / f"board{i}.png"), _view(board, rvec, t))
    cv2.imwrite(str(folder / "blank.png"), np.full((H, W), 200, np.uint8))
    return folder


def test_calibration_recovers_the_camera(photos: Path, tmp_path: Path, capsys):
    out = tmp_path / "calib.json"
    assert main(["calibrate", str(photos), "--out", str(out), "--camera-height-m", "1.3"]) == 0
    line = capsys.readouterr().out
    assert "board found in 6 of 7 photos" in line and "RMS reprojection error" in line
    doc = json.loads(out.read_text())
    calib = Calib.from_dict(doc)
    assert (calib.image_width, calib.image_height, calib.camera_height_m) == (W, H, 1.3)
    np.testing.assert_allclose(calib.K, K_TRUE, rtol=0.02, atol=3.0)
    # rendered without distortion: the fitted lens moves no pixel of the board's area much
    # (k3 alone is poorly fixed by six boards; the displacement it causes is what matters)
    grid = np.stack(np.meshgrid(np.linspace(140, 500, 7), np.linspace(110, 370, 5)), -1)
    grid = grid.reshape(-1, 2)
    assert np.abs(calib.distort_pixels(grid) - grid).max() < 1.5
    assert doc["calibration"]["boards_found"] == 6 and doc["calibration"]["rms_px"] < 0.5
    assert doc["calibration"]["missed"] == ["blank.png"]


def test_calibrate_errors_are_one_line(photos: Path, tmp_path: Path, capsys):
    out = str(tmp_path / "calib.json")
    # too few boards
    assert main(["calibrate", str(photos / "board0.png"), str(photos / "blank.png"),
                 "--out", out]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert "found in 1 of 2 photos, at least 5" in err and len(err.splitlines()) == 1
    # another size, unreadable, missing
    small = tmp_path / "small.png"
    cv2.imwrite(str(small), np.zeros((100, 100), np.uint8))
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"not an image")
    for args, text in (
        ([str(photos), str(small)], "small.png: 100x100 pixels, but 7 other photos"),
        ([str(junk)], "junk.jpg: not a readable image"),
        ([str(tmp_path / "nothing")], "nothing: no such photo"),
    ):
        assert main(["calibrate", *args, "--out", out]) == 2
        err = capsys.readouterr().err.strip()
        assert text in err and len(err.splitlines()) == 1
    assert not Path(out).exists()
    # odd sizes can be left out on request
    kept, skipped = read_photos([photos / "board0.png", small], skip_other_sizes=True)
    assert skipped == [small] and len(kept) == 1
    with pytest.raises(UserError, match="found in 0 of 0"):
        calibrate([], min_boards=1)


def test_vanishing_row_gives_the_pitch(tmp_path: Path):
    """Two straight road lines of a camera pitched 2 deg down meet on the horizon row
    cy - fy tan(2 deg), wherever the lens put their points."""
    cam = Calib(1280, 720, 1000.0, 1000.0, 640.0, 360.0, 1.3, math.radians(2.0),
                dist=(-0.2, 0.05, 0.0, 0.0, 0.0))  # fmt: skip
    h_samples = list(range(160, 720, 10))
    lanes = []
    for y_m in (1.8, -1.7):
        ground = np.array([[x, y_m, 0.0] for x in np.linspace(4.0, 80.0, 400)])
        uv, _ = cam.project(ground)
        uv = cam.distort_pixels(uv)  # what the real lens records
        order = np.argsort(uv[:, 1])
        xs = np.interp(h_samples, uv[order, 1], uv[order, 0], left=-2, right=-2)
        lanes.append([round(float(x), 1) if x >= 0 else -2 for x in xs])
    line = {"raw_file": "a.jpg", "h_samples": h_samples, "lanes": lanes}
    labels = tmp_path / "lanes.json"
    labels.write_text(json.dumps(line) + "\n")
    v, n = vanishing_row(labels, cam)
    assert n == 1 and v == pytest.approx(cam.horizon_v, abs=1.0)
