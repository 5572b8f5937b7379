"""Streaming training data (train.stream): the same samples as the in-memory cache, through a
DataLoader with worker processes, and a training run that reads its frames that way."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, RandomSampler

from perception.dataset.schema import Dataset
from perception.dataset.split import run_split
from perception.model.data import FrameCache, FrameStream, TrainSet
from perception.params import DataParams, SplitParams
from perception.sim.generate import generate
from serving.contract import ModelContract


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("stream") / "data"
    generate(root, DataParams(seed=4, clips=3, frames=3, width=640, height=360, workers=1), False)
    return root


def _batches(ds: TrainSet, workers: int) -> list[dict[str, torch.Tensor]]:
    sampler = RandomSampler(ds, generator=torch.Generator().manual_seed(1))
    return list(DataLoader(ds, batch_size=3, sampler=sampler, num_workers=workers))


def test_streamed_batches_equal_cached_batches(data: Path) -> None:
    c, ids = ModelContract(), Dataset(data).clip_ids()
    cache, stream = FrameCache(str(data), ids, c, progress=False), FrameStream(str(data), ids, c)
    assert len(stream) == len(cache) == 9
    for i in range(len(cache)):  # the same pixels
        assert (stream.image(i) == cache.image(i)).all()
    cached, streamed = TrainSet(cache, augment=True, seed=5), TrainSet(stream, augment=True, seed=5)
    # augmentation depends on (seed, epoch, index), not on the worker; both sides run in loader
    # workers (one torch thread each: the jitter's sums round otherwise with two threads)
    for epoch in (0, 1):
        cached.epoch = streamed.epoch = epoch
        want, got = _batches(cached, 1), _batches(streamed, 2)
        assert len(want) == len(got) == 3
        for a, b in zip(want, got, strict=True):
            for k in a:
                assert torch.equal(a[k], b[k]), (epoch, k)


@pytest.mark.slow
def test_training_with_stream(data: Path, tmp_path: Path) -> None:
    from perception.cli import main
    from perception.model.files import load_torch_file

    run_split(data, tmp_path / "splits.json", SplitParams(seed=1, val=0.34, test=0.0))
    params = tmp_path / "params.yaml"
    params.write_text(
        "train: {epochs: 1, batch_size: 2, seed: 1, stream: true, loader_workers: 2}\n"
    )
    code = main([
        "train", "--data", str(data), "--splits", str(tmp_path / "splits.json"),
        "--model", str(tmp_path / "model.pt"), "--checkpoint", str(tmp_path / "ck.pt"),
        "--live-dir", str(tmp_path / "live"), "--params", str(params), "--quiet",
    ])  # fmt: skip
    assert code == 0
    blob = load_torch_file(tmp_path / "model.pt")
    assert blob["train_params"]["stream"] is True and blob["history"]["train/loss"] > 0
