"""The data report's real-beside-simulated picture: two rows of tiles, one-line errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest
from dataset_factory import make_dataset, write_image

from perception.cli import main
from perception.dataset.real_vs_sim import TILE_H, TILE_W, side_by_side


def test_two_rows_real_above_simulated(tmp_path: Path) -> None:
    sim = make_dataset(tmp_path / "sim", n_clips=3, frames=2)
    real = tmp_path / "real"
    real.mkdir()
    for k in range(3):
        write_image(real / f"r{k}.jpg", 640, 360)
    grid = side_by_side(real, sim, n=2)
    assert grid.shape == (2 * TILE_H, 2 * TILE_W, 3)
    assert grid[:TILE_H].std() > 0 and grid[TILE_H:].std() > 0  # both rows drawn


def test_cli_writes_the_png_and_refuses_an_empty_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sim = make_dataset(tmp_path / "sim", n_clips=2, frames=2)
    (tmp_path / "empty").mkdir()
    out = tmp_path / "out.png"
    args = ["real-vs-sim", "--sim", str(sim), "--out", str(out), "--n", "2"]
    assert main([*args, "--real", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert "empty: no images" in err and err.strip().count("\n") == 0 and not out.exists()
    write_image(tmp_path / "empty" / "a.jpg", 320, 180)
    assert main([*args, "--real", str(tmp_path / "empty")]) == 0
    img = cv2.imread(str(out))
    assert img is not None and img.shape == (2 * TILE_H, 2 * TILE_W, 3)
