"""`perception real-vs-sim`: real frames beside simulated ones, for the data report.

A person judging whether the simulator transfers looks at both side by side: the top row
holds real frames (the real-footage test set), the row below simulated frames taken evenly
over the dataset's clear-day clips (the real set is all sunny daylight). Only a
picture: nothing here feeds training, and the real frames are read, never copied.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from perception.dataset.schema import Dataset
from perception.errors import UserError
from serving.files import atomic_write_bytes
from serving.io import SourceError, read_image

TILE_W, TILE_H = 426, 240
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def _tile(img: np.ndarray, caption: str) -> np.ndarray:
    t = cv2.resize(img, (TILE_W, TILE_H), interpolation=cv2.INTER_AREA)
    cv2.rectangle(t, (0, 0), (TILE_W, 18), (0, 0, 0), -1)
    cv2.putText(t, caption, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1)
    return t


def sim_frames(root: str | Path, n: int) -> list[tuple[Path, str]]:
    """n frame paths spread evenly over the clear-day clips (any clips when there are none):
    (path, caption)."""
    clips = Dataset(root).clips()
    day = [
        c
        for c in clips
        if c.meta.tags.get("time_of_day") == "day" and c.meta.tags.get("weather") == "clear"
    ]
    pool = (day or clips)[:: max(1, len(day or clips) // max(n, 1))][:n]
    out = []
    for clip in pool:
        label = clip.labels[len(clip.labels) // 2]
        tags = clip.meta.tags
        out.append(
            (clip.frame_path(label), f"sim {tags.get('kind', '')} {tags.get('weather', '')}")
        )
    return out


def side_by_side(real_dir: str | Path, sim_root: str | Path, n: int = 4) -> np.ndarray:
    """uint8[2 * TILE_H, n * TILE_W, 3] BGR: real frames above, simulated below."""
    real = sorted(p for p in Path(real_dir).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not real:
        raise UserError(f"{real_dir}: no images")
    rows = []
    for items in (
        [(p, f"real {p.stem}") for p in real[:: max(1, len(real) // n)][:n]],
        sim_frames(sim_root, n),
    ):
        tiles = []
        for path, caption in items:
            try:
                tiles.append(_tile(read_image(path, cv2.IMREAD_COLOR), caption))
            except SourceError as e:
                raise UserError(str(e)) from None
        tiles += [np.zeros((TILE_H, TILE_W, 3), np.uint8)] * (n - len(tiles))
        rows.append(np.hstack(tiles))
    return np.vstack(rows)


def _run(args: argparse.Namespace) -> int:
    grid = side_by_side(args.real, args.sim, args.n)
    ok, png = cv2.imencode(".png", grid)
    if not ok:
        raise UserError(f"{args.out}: could not encode the picture")
    atomic_write_bytes(args.out, png.tobytes())
    print(f"{args.out}: {args.n} real and {args.n} simulated frames")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("real-vs-sim", help="real frames beside simulated ones (a picture)")
    p.add_argument("--real", required=True, help="folder of real images")
    p.add_argument("--sim", required=True, help="simulated dataset root")
    p.add_argument("--out", required=True, help="PNG to write")
    p.add_argument("--n", type=int, default=4, help="frames per row (default 4)")
    p.set_defaults(func=_run)
