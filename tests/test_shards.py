"""Sharded generation: `generate --shard i/n` on each "machine", then `--merge`, gives the bytes
of one unsharded generation with the same seed."""

from __future__ import annotations

from pathlib import Path

import pytest

from perception.cli import main
from perception.dataset.shards import Shard
from perception.params import DataParams
from perception.sim.generate import generate

P = DataParams(seed=11, clips=5, frames=2, width=320, height=180, workers=1)


def _files(root: Path) -> dict[str, bytes]:
    return {str(f.relative_to(root)): f.read_bytes() for f in root.rglob("*") if f.is_file()}


def test_shard_selection_is_disjoint_and_complete() -> None:
    shards = [Shard.parse(f"{i}/3").indices(8) for i in range(3)]
    assert shards == [[0, 3, 6], [1, 4, 7], [2, 5]]
    for bad in ("3/3", "-1/2", "1", "a/b", "0/0"):
        with pytest.raises(Exception, match="--shard"):
            Shard.parse(bad)


def test_merged_shards_equal_an_unsharded_generation_byte_for_byte(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    generate(tmp_path / "whole", P, progress=False)
    params = tmp_path / "params.yaml"
    params.write_text(
        "data: {seed: 11, clips: 5, frames: 2, width: 320, height: 180, workers: 1}\n"
    )
    shards = [tmp_path / "s1", tmp_path / "s0"]  # any order
    for i, d in ((1, shards[0]), (0, shards[1])):
        argv = ["generate", "--out", str(d), "--params", str(params), "--shard", f"{i}/2"]
        assert main([*argv, "--quiet"]) == 0
    assert len(list((tmp_path / "s0" / "clips").iterdir())) == 3
    assert len(list((tmp_path / "s1" / "clips").iterdir())) == 2
    merged = tmp_path / "merged"
    assert main(["generate", "--merge", *map(str, shards), "--out", str(merged)]) == 0
    want, got = _files(tmp_path / "whole"), _files(merged)
    assert sorted(got) == sorted(want) and len(want) == 1 + 5 * (4 + 2)
    assert [k for k in want if want[k] != got[k]] == []
    # one shard missing: one line naming it, the output folder not created
    capsys.readouterr()
    assert main(["generate", "--merge", str(shards[0]), "--out", str(tmp_path / "m2")]) == 2
    err = capsys.readouterr().err
    assert "shards [0] of 2 missing" in err and err.count("\n") == 1
    assert not (tmp_path / "m2").exists()
