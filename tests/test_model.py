"""Model side: targets round-trip through the serving decode, a training step learns,
and a 2-process DDP run of the tiny profile works on the CPU."""

from __future__ import annotations

import json
import math
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
from serving.contract import ModelContract, ModelOutputs
from serving.postprocess import LANE_FIT_MAX_RESIDUAL_CELLS, NO_POINT, Postprocessor

TINY = DataParams(seed=3, clips=5, frames=4, width=640, height=360, workers=1)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny") / "data"
    generate(root, TINY, progress=False)
    return root


def _iou(a: list[float], b: list[float]) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@pytest.mark.parametrize(("stride", "cells"), [(8, 100), (4, 32)])
def test_targets_round_trip_through_decode(tiny: Path, stride: int, cells: int) -> None:
    """Boxes and lanes encoded as targets and decoded as the loop decodes them land where the
    labels put them: lanes to within the decode's smoothing and quadratic fit (the targets
    hold the exact position, so no half-cell quantisation is left)."""
    c = ModelContract(stride=stride, lane_cells=cells)
    checked_boxes = checked_points = checked_bends = 0
    for clip in Dataset(tiny).clips():
        w, h = clip.calib.image_width, clip.calib.image_height
        post = Postprocessor(c, w, h)
        for lb in clip.labels:
            t = encode(lb, w, h, clip.meta.h_samples, c)
            heat = (t.heat == 1.0).astype(np.float32)  # ideal network: ones at centres only
            pred = post(ModelOutputs(heat, t.box, logits_from_targets(t, c), t.lane_exist))
            got = list(zip(pred.detections.classes, pred.detections.boxes, strict=True))
            centres = {}
            for ob in lb.obstacles:
                cx = (ob.box[0] + ob.box[2]) / 2 * c.input_width / w // c.stride
                cy = (ob.box[1] + ob.box[3]) / 2 * c.input_height / h // c.stride
                centres.setdefault((cx, cy), []).append(ob)
            for obs in centres.values():
                if len(obs) > 1:
                    continue  # two objects share a centre cell (and its box): the smaller wins
                if any(
                    o is not obs[0] and o.cls == obs[0].cls and _iou(o.box, obs[0].box) > c.nms_iou
                    for o in lb.obstacles
                ):
                    continue  # NMS keeps one of two same-class boxes that overlap this much
                k = c.class_names.index(obs[0].cls)
                want = np.array(obs[0].box, np.float32)
                assert any(int(kk) == k and np.abs(b - want).max() < 0.05 for kk, b in got), (
                    k,
                    want,
                    got,
                )
                checked_boxes += 1
            rows = post.rows.astype(np.float64)
            for lane in lb.lanes:
                k = c.lane_slots.index(lane.slot)
                truth = lane_xs_at_anchors(lane.x_at_h, clip.meta.h_samples, rows)
                ok = (truth >= 0) & (pred.lanes.xs[k] != NO_POINT)
                assert ok.sum() >= 0.8 * (truth >= 0).sum()
                half_cell = w / c.lane_cells / 2
                # the decode fits a lane with a quadratic in the row when the quadratic misses
                # its points by less than LANE_FIT_MAX_RESIDUAL_CELLS on average: then it is as
                # far from the true lane as the best quadratic through it; a lane clearly past
                # the gate (an S-bend) keeps its points
                miss = np.abs(np.polyval(np.polyfit(rows[ok], truth[ok], 2), rows[ok]) - truth[ok])
                fitted = miss.mean() < 1.5 * LANE_FIT_MAX_RESIDUAL_CELLS * 2 * half_cell
                checked_bends += not fitted
                # smoothing of jitter (at most a sixth of a cell) + the source pixel grid
                bound = half_cell / 3 + 0.5 + (miss.max() if fitted else 0.0)
                assert np.abs(pred.lanes.xs[k][ok] - truth[ok]).max() <= bound
                checked_points += int(ok.sum())
    assert checked_boxes > 20 and checked_points > 100
    if cells == 100:  # the tiny set's S-bends miss the fit gate's 6.4 px, not its 20 px at 32
        assert checked_bends > 0


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


def _torchrun_train(nproc: int, tiny: Path, tmp: Path, batch: int) -> tuple[str, dict]:
    """`torchrun --nproc-per-node nproc ... train` for 1 epoch of the tiny fixture: stdout and
    the DVCLive metrics (losses averaged over the ranks)."""
    tmp.mkdir()
    run_split(tiny, tmp / "splits.json", SplitParams(seed=1, val=0.2, test=0.2))
    # det_stride 8: the config the DDP test's bar was measured on (DDP does not depend on it)
    (tmp / "params.yaml").write_text(
        f"train: {{epochs: 1, batch_size: {batch}, seed: 1, det_stride: 8}}\n"
    )
    torchrun = Path(sys.executable).parent / "torchrun"
    cmd = [
        str(torchrun), "--standalone", "--nproc-per-node", str(nproc), "-m", "perception.cli",
        "train", "--data", str(tiny), "--splits", str(tmp / "splits.json"),
        "--model", str(tmp / "model.pt"), "--checkpoint", str(tmp / "ck.pt"),
        "--live-dir", str(tmp / "live"), "--params", str(tmp / "params.yaml"), "--quiet",
    ]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout, json.loads((tmp / "live" / "metrics.json").read_text())


@pytest.mark.slow
def test_ddp_two_processes_match_one_process_on_cpu(tiny: Path, tmp_path: Path) -> None:
    """2 processes of batch 2 (gloo) against 1 process of batch 4: the same global batch and
    steps; the orders of the frames and the batch-norm batches differ, so the losses agree
    only within the run-to-run noise. Measured on this config (1 epoch), on the simulator
    with fog by distance: the validation loss of 1-process runs spans 1.17 over seeds 1-3
    (10.67-11.83); 2 against 1 process differed by 0.16, 0.45 and 1.05 on the same seeds (the
    2-process run higher each time). The bar, 1.75, is 1.5 times the seed spread. (On the
    row-based fog the spread was 0.064 and the bar 0.1: the fixture's frames changed, and
    with them the noise; whether batch-norm over 2 frames a process costs more than noise
    here is open.)"""
    from perception.model.files import load_model

    out2, two = _torchrun_train(2, tiny, tmp_path / "two", batch=2)
    assert isinstance(load_model(tmp_path / "two" / "model.pt"), PerceptionNet)
    assert out2.count("epoch 1/1:") == 1, "only rank 0 reports"
    _out1, one = _torchrun_train(1, tiny, tmp_path / "one", batch=4)
    assert abs(two["val"]["loss"] - one["val"]["loss"]) < 1.75, (two["val"], one["val"])


def test_affine_moves_labels_with_the_pixels_hand_computed() -> None:
    """A 1000 x 500 source, zoom 2 about (0, 0) then shift by (-100, -50): a box and a lane
    point land where the same affine puts the pixels (worked out by hand below)."""
    from perception.dataset.schema import FrameLabel, Lane, Obstacle
    from perception.model.targets import Affine

    c = ModelContract(row_anchors=(0.5, 0.7), lane_cells=100, stride=8)
    w, h = 1000, 500
    lane = Lane("ego_left", [[300.0, 300.0], [320.0, 200.0]], x_at_h=[-2, 320.0, 300.0])
    ob = Obstacle(1, "car", [200.0, 100.0, 300.0, 200.0])
    label = FrameLabel(0, "f.jpg", 0, [lane], [ob])
    aff = Affine(2.0, -100.0, -50.0)
    t = encode(label, w, h, [100, 200, 300], c, aff=aff)
    # box: x 200..300 -> 300..500, y 100..200 -> 150..350 (source px); input is 448 x 256,
    # so x * 0.448, y * 0.512: 134.4..224.0, 76.8..179.2; centre (179.2, 128.0) -> cell (22, 16)
    iy, ix = np.argwhere(t.box_mask == 1)[0]
    assert (iy, ix) == (16, 22)
    px, py = (ix + 0.5) * 8, (iy + 0.5) * 8
    np.testing.assert_allclose(
        t.box[:, iy, ix], [px - 134.4, py - 76.8, 224.0 - px, 179.2 - py], atol=1e-3
    )
    # lane: source points (300, 300), (320, 200) -> (500, 550), (540, 350); the anchor rows
    # are 0.5 * 500 = 250 (outside 350..550: no point) and 0.7 * 500 = 350 -> x 540 -> cell 54
    assert t.lane_cls[0].tolist() == [c.lane_cells, 54]
    # ... and the expectation's target is that x unquantised, in cells from cell 0's centre:
    # 540 / 1000 * 100 - 0.5 = 53.5 (0 on the row without a point)
    assert t.lane_pos[0].tolist() == [0.0, 53.5]
    # the image moves the same way: a bright source pixel at (300, 200) lands at (500, 350)
    m = aff.matrix(1.0, 1.0)
    np.testing.assert_allclose(m @ np.array([300.0, 200.0, 1.0]), [500.0, 350.0])


def test_warped_pixels_and_moved_box_agree() -> None:
    """The image warp (Affine.matrix at model resolution) and the label transform agree: a
    white rectangle drawn where a box is ends up inside the box the targets describe."""
    import cv2

    from perception.dataset.schema import FrameLabel, Obstacle
    from perception.model.targets import Affine

    c = ModelContract()
    w, h = 1280, 720
    sx, sy = c.input_width / w, c.input_height / h
    box = [400.0, 300.0, 560.0, 420.0]
    img = np.zeros((c.input_height, c.input_width), np.uint8)
    cv2.rectangle(
        img, (round(box[0] * sx), round(box[1] * sy)), (round(box[2] * sx), round(box[3] * sy)),
        255, -1,
    )  # fmt: skip
    for aff in (Affine(1.2, -150.0, -60.0), Affine(0.85, 90.0, 40.0)):
        warped = cv2.warpAffine(img, aff.matrix(sx, sy), (c.input_width, c.input_height))
        ys, xs = np.nonzero(warped > 127)
        t = encode(FrameLabel(0, "f", 0, [], [Obstacle(1, "car", list(box))]), w, h, [], c, aff=aff)
        iy, ix = np.argwhere(t.box_mask == 1)[0]
        px, py = (ix + 0.5) * c.stride, (iy + 0.5) * c.stride
        left, top, r, b = t.box[:, iy, ix]
        assert abs(xs.min() - (px - left)) <= 1.5 and abs(xs.max() - (px + r)) <= 1.5
        assert abs(ys.min() - (py - top)) <= 1.5 and abs(ys.max() - (py + b)) <= 1.5


def _train_cli(
    tiny: Path, tmp: Path, capsys: pytest.CaptureFixture[str], *extra: str
) -> tuple[int, str]:
    """`perception train` in this process (torch is imported once): exit code and stderr."""
    from perception.cli import main

    params = tmp / "params.yaml"
    if not params.exists():
        # the moving average on, so that a resume must carry it (see the refusal test)
        params.write_text(
            "train: {epochs: 2, batch_size: 4, seed: 1, max_frames: 12, ema_decay: 0.9}\n"
        )
    capsys.readouterr()
    code = main([
        "train", "--data", str(tiny), "--splits", str(tmp / "splits.json"),
        "--model", str(tmp / "model.pt"), "--checkpoint", str(tmp / "ck.pt"),
        "--live-dir", str(tmp / "live"), "--params", str(params), "--quiet", *extra,
    ])  # fmt: skip
    return code, capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("ema_decay", [0.0, 0.9], ids=["last-weights", "moving-average"])
def test_resume_gives_the_same_model_as_an_uninterrupted_run(
    tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], ema_decay: float
) -> None:
    from perception.model.files import load_model

    weights = []
    for name, runs in (("once", [()]), ("twice", [("--stop-after", "1"), ("--resume",)])):
        d = tmp_path / name
        d.mkdir()
        run_split(tiny, d / "splits.json", SplitParams(seed=1, val=0.2, test=0.2))
        (d / "params.yaml").write_text(
            "train: {epochs: 2, batch_size: 4, seed: 1, max_frames: 12, "
            f"ema_decay: {ema_decay}}}\n"
        )
        for extra in runs:
            code, err = _train_cli(tiny, d, capsys, *extra)
            assert code == 0, err
            if extra == ("--stop-after", "1"):
                assert (d / "ck.pt").exists() and not (d / "model.pt").exists()
        weights.append(load_model(d / "model.pt").state_dict())
    for k, v in weights[0].items():
        assert torch.equal(v, weights[1][k]), k
    # two trainings on the same code, params and data write the same bytes (no clock, path
    # or run id in the file), so a DVC remote filled on one machine serves every clone
    once, twice = (tmp_path / n / "model.pt" for n in ("once", "twice"))
    assert once.read_bytes() == twice.read_bytes()


@pytest.mark.slow
def test_resume_refuses_a_missing_checkpoint_or_other_epochs(
    tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_split(tiny, tmp_path / "splits.json", SplitParams(seed=1, val=0.2, test=0.2))
    code, err = _train_cli(tiny, tmp_path, capsys, "--resume")
    assert code == 2 and err.strip().count("\n") == 0 and "ck.pt: no checkpoint" in err
    assert not (tmp_path / "model.pt").exists()
    assert _train_cli(tiny, tmp_path, capsys, "--stop-after", "1")[0] == 0
    code, err = _train_cli(tiny, tmp_path, capsys, "--resume", "--epochs", "3")
    assert code == 2 and "written by a run of 2 epochs" in err
    params = tmp_path / "params.yaml"
    written = params.read_text()
    params.write_text(written.replace("max_frames: 12", "max_frames: 12, lane_cells: 20"))
    code, err = _train_cli(tiny, tmp_path, capsys, "--resume")
    assert code == 2 and "its network differs from this run's params" in err
    assert err.strip().count("\n") == 0
    params.write_text(written.replace("ema_decay: 0.9", "ema_decay: 0"))
    code, err = _train_cli(tiny, tmp_path, capsys, "--resume")
    assert code == 2 and "written by a run with train.ema_decay > 0" in err
    assert err.strip().count("\n") == 0
    params.write_text(written)
    (tmp_path / "ck.pt").write_bytes(b"PK\x03\x04 not really a zip")
    code, err = _train_cli(tiny, tmp_path, capsys, "--resume")
    assert code == 2 and "ck.pt: not a readable" in err and err.strip().count("\n") == 0


def test_the_moving_average_of_the_weights_follows_the_formula() -> None:
    """train.ema_decay: the first update copies the weights, then ema = d * ema + (1 - d) *
    weights after each step, BatchNorm statistics included. d = 0.75, a weight 1 -> 3 -> 5:
    1, then 0.75 * 1 + 0.25 * 3 = 1.5, then 0.75 * 1.5 + 0.25 * 5 = 2.375; a running mean
    0 -> 4 -> 8: 0, 1, 2.75."""
    from perception.train import make_ema

    net = torch.nn.Sequential(torch.nn.Linear(1, 1, bias=False), torch.nn.BatchNorm1d(1))
    ema = make_ema(net, 0.75)
    seen = []
    for w, m in ((1.0, 0.0), (3.0, 4.0), (5.0, 8.0)):
        with torch.no_grad():
            net[0].weight.fill_(w)
            net[1].running_mean.fill_(m)
        ema.update_parameters(net)
        seen.append((ema.module[0].weight.item(), ema.module[1].running_mean.item()))
    assert seen == [(1.0, 0.0), (1.5, 1.0), (2.375, 2.75)]
    assert net[0].weight.item() == 5.0  # the trained weights are not touched


def test_lane_regression_targets_the_exact_position_not_the_cell() -> None:
    """A curved lane over three rows, x = 527.5, 545, 565 of 1000 px with 100 cells: exact
    positions 52.25, 54.0, 56.0 cells (from cell 0's centre), cells 52, 54, 56. Logits whose
    softmax expectation is exactly there (0.75 / 0.25 on cells 52 / 53 in the first row)
    make the regression and shape terms zero against the exact targets; against the cell
    indices (UFLD's target) the L1 adds 0.25 / 3 cells and the second difference 0.25 cells,
    each scaled by 10 / cells: 0.0333 more, with the same cross entropy."""
    from perception.model.targets import lane_cells, lane_positions

    cells, xs = 100, np.array([527.5, 545.0, 565.0])
    gt_cls = torch.from_numpy(lane_cells(xs, 1000.0, cells)).view(1, 1, 3)
    gt_pos = torch.from_numpy(lane_positions(xs, 1000.0, cells)).view(1, 1, 3)
    assert gt_cls.flatten().tolist() == [52, 54, 56]
    assert gt_pos.flatten().tolist() == [52.25, 54.0, 56.0]
    logits = torch.full((1, 1, 3, cells + 1), -50.0)
    logits[0, 0, 0, 52], logits[0, 0, 0, 53] = math.log(0.75), math.log(0.25)
    logits[0, 0, 1, 54] = logits[0, 0, 2, 56] = 0.0
    exist, gt_exist = torch.ones(1, 1), torch.ones(1, 1)
    exact = losses.lanes(logits, exist, gt_cls, gt_exist, gt_pos)
    quantised = losses.lanes(logits, exist, gt_cls, gt_exist, gt_cls.float())
    assert float(quantised - exact) == pytest.approx((0.25 / 3 + 0.25) * 10 / cells, abs=1e-5)


def test_lane_positions_stay_where_an_expectation_can_reach() -> None:
    """Points in the outer half cells are clipped to the first and last centres (0, G-1); rows
    without a point (x < 0 or past the width) read 0, masked by the cell target."""
    from perception.model.targets import lane_positions

    got = lane_positions(np.array([1.0, 998.0, -2.0, 1000.0, 255.0]), 1000.0, 50)
    np.testing.assert_allclose(got, [0.0, 49.0, 0.0, 0.0, 12.25])
