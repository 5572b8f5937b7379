"""The world the hostile-input tests run in: a valid dataset, its splits, and a folder that
no command may read; the commands that read a dataset; the guard that nothing outside a
command's output changed."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from dataset_factory import edit_label, encode_jpeg, make_dataset
from guards import Outcome, none_inside, tree_hashes

from serving.contract import tusimple_h_samples

SIZE = (160, 96)  # small frames: every command here runs in well under a second


@pytest.fixture
def world(tmp_path: Path) -> Path:
    """tmp_path with a valid dataset ds/ (3 clips of 3 frames), splits.json with every clip
    in train, and a folder outside/ that no command may read: a valid JPEG and a copy of a
    whole clip."""
    make_dataset(tmp_path / "ds", n_clips=3, frames=3, size=SIZE)
    n_h = len(tusimple_h_samples(SIZE[1]))  # TuSimple xs, which evaluate's outputs need
    for clip in (tmp_path / "ds" / "clips").iterdir():
        for k in range(3):
            edit_label(clip, k, lambda d: [lane.update(x_at_h=[-2.0] * n_h) for lane in d["lanes"]])
    splits = {"schema_version": 1, "train": ["c0000", "c0001", "c0002"], "val": [], "test": []}
    (tmp_path / "splits.json").write_text(json.dumps(splits))
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.jpg").write_bytes(encode_jpeg(np.full((SIZE[1], SIZE[0], 3), 7, np.uint8)))
    shutil.copytree(tmp_path / "ds" / "clips" / "c0000", outside / "clip")
    return tmp_path


def split_file(world: Path) -> Path:
    return world / "splits.json"


def dataset_commands(world: Path) -> dict[str, list[str]]:
    """The commands that read a dataset, each writing only into world/out."""
    ds, out = str(world / "ds"), world / "out"
    return {
        "validate": ["validate", ds, "--report-dir", str(out / "r"), "--workers", "1"],
        "split": ["split", ds, "--out", str(out / "s.json")],
        "evaluate": [
            *("evaluate", "--data", ds, "--splits", str(split_file(world))),
            *("--out", str(out / "e"), "--split", "train"),
        ],
        "export": ["export-labels", "coco", "--data", ds, "--out", str(out / "coco.json")],
    }


def unchanged_outside_out(world: Path, fn: Callable[[], Outcome]) -> Outcome:
    """Run fn; assert every file of world except out/ is byte for byte what it was and
    nothing in outside/ was opened."""
    before = tree_hashes(world, skip=(world / "out",))
    outcome = fn()
    assert tree_hashes(world, skip=(world / "out",)) == before
    none_inside(outcome.opened, world / "outside")
    return outcome
