"""Model side: targets round-trip through the serving decode, a training step learns,
and a 2-process DDP run of the tiny profile works on the CPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from perception.dataset.schema import Dataset
from perception.dataset.split import run_split
from perception.model import loss as losses
from perception.model.data import FrameCache, TrainSet
from perception.model.net import PerceptionNet
from perception.model.targets import encode, lane_xs_at_anchors, logits_from_targets
from perception.params import DataParams, SplitParams
from perception.sim.generate import generate
from serving.contract import ModelContract
from serving.postprocess import NO_POINT, Postprocessor

TINY = DataParams(seed=3, clips=5, frames=4, width=640, height=360, workers=1)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny") / "data"
    generate(root, TINY, progress=False)
    return root


def test_targets_round_trip_through_decode(tiny: Path) -> None:
    c = ModelContract()
    checked_boxes = checked_points = 0
    for clip in Dataset(tiny).clips():
        w, h = clip.calib.image_width, clip.calib.image_height
        post = Postprocessor(c, w, h)
        for lb in clip.labels:
            t = encode(lb, w, h, clip.meta.h_samples, c)
            heat = (t.heat == 1.0).astype(np.float32)  # ideal network: ones at centres only
            pred = post(heat, t.box, logits_from_targets(t, c), t.lane_exist)
            got = {
                (int(k), tuple(np.round(b, 1)))
                for b, k in zip(pred.detections.boxes, pred.detections.classes, strict=True)
            }
            centres = {}
            for ob in lb.obstacles:
                cx = (ob.box[0] + ob.box[2]) / 2 * c.input_width / w // c.stride
                cy = (ob.box[1] + ob.box[3]) / 2 * c.input_height / h // c.stride
                centres.setdefault((c.class_names.index(ob.cls), cx, cy), []).append(ob)
            for (k, _, _), obs in centres.items():
                if len(obs) > 1:
                    continue  # two objects share a centre cell: the smaller one wins it
                want = (k, tuple(np.round(np.array(obs[0].box, np.float32), 1)))
                assert want in got, (want, got)
                checked_boxes += 1
            rows = post.rows.astype(np.float64)
            for lane in lb.lanes:
                k = c.lane_slots.index(lane.slot)
                truth = lane_xs_at_anchors(lane.x_at_h, clip.meta.h_samples, rows)
                ok = (truth >= 0) & (pred.lanes.xs[k] != NO_POINT)
                assert ok.sum() >= 0.8 * (truth >= 0).sum()
                half_cell = w / c.lane_cells / 2
                # quantisation (half a cell) + smoothing of jitter (at most a sixth of a cell)
                assert np.abs(pred.lanes.xs[k][ok] - truth[ok]).max() <= half_cell * 4 / 3 + 0.5
                checked_points += int(ok.sum())
    assert checked_boxes > 20 and checked_points > 100


def test_a_training_step_lowers_the_loss_on_a_fixed_batch(tiny: Path) -> None:
    torch.manual_seed(0)
    c = ModelContract()
    ids = Dataset(tiny).clip_ids()[:2]
    ds = TrainSet(FrameCache(str(tiny), ids, c, progress=False), augment=False, seed=0)
    batch = {k: torch.stack([ds[i][k] for i in range(4)]) for k in ds[0]}
    net = PerceptionNet(c)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    first = None
    for _ in range(8):
        loss, _parts = losses.total(net(batch["image"]), batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = float(loss.detach()) if first is None else first
    with torch.no_grad():  # same (training) mode: batch-norm statistics of the batch
        after, _ = losses.total(net(batch["image"]), batch)
    assert float(after) < 0.8 * first


@pytest.mark.slow
def test_ddp_two_processes_on_cpu(tiny: Path, tmp_path: Path) -> None:
    splits = tmp_path / "splits.json"
    run_split(tiny, splits, SplitParams(seed=1, val=0.2, test=0.2))
    params = tmp_path / "params.yaml"
    params.write_text("train: {epochs: 1, batch_size: 2, seed: 1}\n")
    model = tmp_path / "model.pt"
    torchrun = Path(sys.executable).parent / "torchrun"
    cmd = [
        str(torchrun),
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "perception.cli",
        "train",
        "--data",
        str(tiny),
        "--splits",
        str(splits),
        "--model",
        str(model),
        "--checkpoint",
        str(tmp_path / "ck.pt"),
        "--live-dir",
        str(tmp_path / "live"),
        "--params",
        str(params),
        "--quiet",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    from perception.train import load_model

    net = load_model(model)
    assert isinstance(net, PerceptionNet)
    assert (tmp_path / "live" / "metrics.json").exists()
    assert res.stdout.count("epoch 1/1:") == 1, "only rank 0 reports"
