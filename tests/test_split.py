"""Clip-level split: determinism, stratification, minimum shares, no leakage."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import pytest
from dataset_factory import make_dataset

from perception.cli import UserError
from perception.dataset import split
from perception.dataset.leakage import SPLIT_NAMES
from perception.dataset.schema import FormatError
from perception.params import SplitParams

STRATA_TAGS = [
    {"time_of_day": tod, "weather": w, "road": "urban", "traffic": "light"}
    for tod, w in itertools.product(("day", "night"), ("clear", "rain"))
]


@pytest.fixture(scope="module")
def strata_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """32 tiny clips, 8 in each of 4 time_of_day/weather strata (read-only for the tests)."""
    return make_dataset(
        tmp_path_factory.mktemp("strata"), n_clips=32, frames=2, size=(64, 36), tags=STRATA_TAGS
    )


def test_deterministic_for_a_seed(strata_dataset):
    a = split.make_splits(strata_dataset, SplitParams(seed=3))
    b = split.make_splits(strata_dataset, SplitParams(seed=3))
    c = split.make_splits(strata_dataset, SplitParams(seed=4))
    assert a == b
    assert [a[s] for s in SPLIT_NAMES] != [c[s] for s in SPLIT_NAMES]


def test_stratified_every_clip_once(strata_dataset, tmp_path):
    out = tmp_path / "splits.json"
    doc = split.run_split(strata_dataset, out, SplitParams(seed=7, val=0.15, test=0.15))
    assert json.loads(out.read_text()) == doc
    assert doc["schema_version"] == 1 and doc["seed"] == 7
    ids = [c for s in SPLIT_NAMES for c in doc[s]]
    assert sorted(ids) == [f"c{i:04d}" for i in range(32)]  # each clip in exactly one split
    assert set(doc["strata"]) == {"day/clear", "day/rain", "night/clear", "night/rain"}
    for stratum, n in doc["strata"].items():
        assert n["clips"] == 8 and n["train"] >= 5 and n["val"] >= 1 and n["test"] >= 1, stratum
    clips = doc["counts"]["clips"]
    for s, f in doc["fractions"].items():  # 32 clips: 22.4 / 4.8 / 4.8 expected
        assert abs(clips[s] - 32 * f) < 1, clips
    assert doc["counts"]["frames"] == {s: 2 * n for s, n in clips.items()}
    assert split.load_splits(out) == {s: doc[s] for s in SPLIT_NAMES}


def test_small_strata_fall_back_to_coarser(tmp_path):
    root = make_dataset(tmp_path / "ds", n_clips=12, frames=1, size=(64, 36), tags=STRATA_TAGS)
    doc = split.make_splits(root, SplitParams(val=0.15, test=0.15))  # needs 7 per stratum
    assert set(doc["strata"]) == {"*"}  # 3 per stratum, 6 per time of day: all pooled
    assert doc["counts"]["clips"]["val"] >= 1 and doc["counts"]["clips"]["test"] >= 1
    doc = split.make_splits(root, SplitParams(val=0.25, test=0.25))  # needs 4 per stratum
    assert set(doc["strata"]) == {"day/*", "night/*"}


def test_few_clips_still_fill_val_and_test(tmp_path):
    root = make_dataset(tmp_path / "ds", n_clips=3, frames=1, size=(64, 36))
    doc = split.make_splits(root, SplitParams(val=0.1, test=0.1))
    assert doc["counts"]["clips"] == {"train": 1, "val": 1, "test": 1}


def test_identical_image_in_two_splits_fails(tmp_path):
    root = make_dataset(tmp_path / "ds", n_clips=3, frames=2, size=(64, 36))
    doc = split.make_splits(root, SplitParams(val=0.34, test=0.33))
    a, b = doc["train"][0], doc["test"][0]
    dst = root / "clips" / b / "frames" / "000001.jpg"
    shutil.copy(root / "clips" / a / "frames" / "000000.jpg", dst)
    with pytest.raises(FormatError) as exc:
        split.run_split(root, tmp_path / "s.json", SplitParams(val=0.34, test=0.33))
    msg = str(exc.value)
    assert msg.startswith(f"{dst}: clip {b} frame 1 image: identical to clip {a} frame 0"), msg


def test_load_splits_rejects_bad_files(tmp_path):
    p = tmp_path / "s.json"
    p.write_text(json.dumps({"schema_version": 1, "train": ["a"], "val": "b", "test": []}))
    with pytest.raises(FormatError, match=r"s.json: val: expected a list"):
        split.load_splits(p)
    with pytest.raises(FormatError, match="missing file"):
        split.load_splits(tmp_path / "none.json")


def test_bad_fractions(strata_dataset):
    with pytest.raises(UserError, match="sum below 1"):
        split.make_splits(strata_dataset, SplitParams(val=0.6, test=0.5))


def test_cli_split(tmp_path, capsys):
    from perception.cli import main

    root = make_dataset(tmp_path / "ds", n_clips=3, frames=1, size=(64, 36))
    params = tmp_path / "params.yaml"
    params.write_text("split:\n  seed: 1\n  val: 0.2\n  test: 0.2\n")
    out = tmp_path / "s.json"
    assert (
        main(["split", str(root), "--out", str(out), "--params", str(params), "--seed", "5"]) == 0
    )
    doc = json.loads(out.read_text())
    assert doc["seed"] == 5 and doc["fractions"]["val"] == 0.2
    assert "train 1 clips" in capsys.readouterr().out
    report = tmp_path / "r"
    assert (
        main(
            [
                "validate",
                str(root),
                "--report-dir",
                str(report),
                "--params",
                str(params),
                "--splits",
                str(out),
                "--workers",
                "1",
            ]
        )
        == 0
    )
