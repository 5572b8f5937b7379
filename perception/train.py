"""`perception train`: single process, or DistributedDataParallel under torchrun.

    perception train --data data/sim --splits data/splits.json --model models/model.pt
    torchrun --standalone --nproc-per-node 2 -m perception.cli train ...   (gloo on CPU,
                                                                        nccl on CUDA)

Rank 0 alone logs (DVCLive), shows progress and writes files; every write is atomic. A
checkpoint after each epoch lets `--resume` continue an interrupted run where it stopped.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler
from tqdm import tqdm

from perception.dataset.split import load_splits
from perception.errors import UserError, first_line
from perception.model import loss as losses
from perception.model.data import FrameCache, FrameStream, TrainSet
from perception.model.files import load_model, load_torch_file, model_file, save_atomic
from perception.model.net import NetConfig, PerceptionNet, contract_for
from perception.params import TrainParams, load_params, section


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    amp: torch.dtype | None = None  # mixed precision: float16 on CUDA, bfloat16 on CPUs with it
    progress: bool = True

    @property
    def main(self) -> bool:
        return self.rank == 0


def amp_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """Mixed precision for `train.precision` auto|fp32|bf16|fp16. auto: float16 on CUDA,
    bfloat16 on a CPU whose oneDNN has native bf16 (AVX512-BF16 / AMX: ~2x faster training
    here), else full float32."""
    if precision == "fp32":
        return None
    if precision in ("bf16", "fp16"):
        return torch.bfloat16 if precision == "bf16" else torch.float16
    if device.type == "cuda":
        return torch.float16
    return torch.bfloat16 if torch.ops.mkldnn._is_mkldnn_bf16_supported() else None


def setup_dist() -> Dist:
    """Join the torchrun group when launched by it; pick the device (CUDA when present)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    cuda = torch.cuda.is_available()
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
        # the cores are shared between the processes of a DDP run
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    if world > 1:
        dist.init_process_group("nccl" if cuda else "gloo")
    return Dist(rank, world, device)


def _loader(ds: TrainSet, p: TrainParams, d: Dist, shuffle: bool) -> DataLoader:
    if d.world > 1:
        sampler: Any = DistributedSampler(ds, d.world, d.rank, shuffle=shuffle, seed=p.seed)
    elif shuffle:
        sampler = RandomSampler(ds, generator=torch.Generator().manual_seed(p.seed))
    else:
        sampler = None
    return DataLoader(
        ds,
        batch_size=p.batch_size,
        sampler=sampler,
        num_workers=p.loader_workers,
        drop_last=shuffle,
    )


def _epoch(
    net: torch.nn.Module,
    dl: DataLoader,
    opt: torch.optim.Optimizer | None,
    sched: Any,
    scaler: Any,
    d: Dist,
    desc: str,
    ema: AveragedModel | None = None,
) -> dict[str, float]:
    """One pass; trains when opt is given (and moves ema, the weights' moving average, after
    each step). Returns mean loss parts (this rank's share)."""
    net.train(opt is not None)
    sums: dict[str, float] = {}
    n = 0
    for batch in tqdm(
        dl, desc=desc, disable=not (d.main and d.progress), leave=False, unit="batch"
    ):
        batch = {k: v.to(d.device, non_blocking=True) for k, v in batch.items()}
        image = batch["image"].contiguous(memory_format=torch.channels_last)
        with (
            torch.set_grad_enabled(opt is not None),
            torch.autocast(d.device.type, enabled=d.amp is not None, dtype=d.amp or torch.float32),
        ):
            out = net(image)
            loss, parts = losses.total(out, batch)
        if opt is not None:
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sched.step()
            if ema is not None:
                ema.update_parameters(_unwrap(net))
        for k, v in {"loss": float(loss.detach()), **parts}.items():
            sums[k] = sums.get(k, 0.0) + v
        n += 1
    return {k: v / max(n, 1) for k, v in sums.items()}


@dataclass
class Run:
    """The pieces of one training run."""

    d: Dist
    train_ds: TrainSet
    raw: PerceptionNet  # the network (net is the same, wrapped in DDP with several ranks)
    net: nn.Module
    opt: torch.optim.Optimizer
    sched: Any
    scaler: Any
    dl: DataLoader
    vdl: DataLoader
    ema: AveragedModel | None = None  # train.ema_decay > 0

    @property
    def shipped(self) -> nn.Module:
        """The weights that are validated, kept as the best and written: the moving average
        when there is one."""
        return self.ema.module if self.ema is not None else self.raw


def _unwrap(net: nn.Module) -> nn.Module:
    return net.module if isinstance(net, DistributedDataParallel) else net


def make_ema(net: nn.Module, decay: float) -> AveragedModel:
    """An exponential moving average of net's weights and buffers (BatchNorm statistics
    included), decay per optimiser step; its first update copies the weights. torch's own
    AveragedModel: ema = decay * ema + (1 - decay) * weights (a lerp over every tensor)."""
    return AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def _build(data: str, splits_path: str, p: TrainParams, progress: bool) -> Run:
    d = setup_dist()
    d.amp = amp_dtype(d.device, p.precision)
    d.progress = progress
    torch.manual_seed(p.seed)
    splits = load_splits(splits_path)
    cfg = NetConfig(
        backbone=p.backbone,
        freeze_blocks=p.freeze_blocks,
        det_stride=p.det_stride,
        lane_cells=p.lane_cells,
    )
    contract = contract_for(cfg)
    limit = p.max_frames or None
    frames = FrameStream if p.stream else FrameCache  # from disk in the loader, or in memory
    train_cache = frames(data, splits["train"], contract, progress and d.main, limit)
    val_cache = frames(
        data, splits["val"], contract, progress and d.main, max(limit // 4, 8) if limit else None
    )
    train_ds, val_ds = TrainSet(train_cache, True, p.seed), TrainSet(val_cache, False, p.seed)
    raw = PerceptionNet(contract, cfg).to(d.device).to(memory_format=torch.channels_last)
    net: nn.Module = DistributedDataParallel(raw) if d.world > 1 else raw
    trainable = [q for q in net.parameters() if q.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=p.lr, weight_decay=p.weight_decay)
    dl, vdl = _loader(train_ds, p, d, True), _loader(val_ds, p, d, False)
    steps = max(20, p.epochs * len(dl))  # OneCycleLR needs a few steps per phase
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, p.lr, total_steps=steps, pct_start=0.1)
    scaler = torch.amp.GradScaler(enabled=d.amp == torch.float16)
    ema = make_ema(raw, p.ema_decay) if p.ema_decay > 0 else None
    return Run(d, train_ds, raw, net, opt, sched, scaler, dl, vdl, ema)


def train(
    data: str,
    splits_path: str,
    out: str,
    checkpoint: str,
    live_dir: str,
    p: TrainParams,
    resume: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
) -> dict[str, float]:
    """Train on the train clips of splits_path, pick the epoch with the lowest validation
    loss, write it to `out`; a checkpoint after every epoch. stop_after: end after that many
    epochs in all (an interrupted run, for --resume), without writing `out`."""
    r = _build(data, splits_path, p, progress)
    d = r.d
    state = _resume(checkpoint, r, p) if resume else TrainState()
    live = _live(live_dir, p, resume and state.epoch > 0) if d.main else None
    t0 = time.perf_counter()
    last = p.epochs if stop_after is None else min(stop_after, p.epochs)
    for epoch in range(state.epoch, last):
        r.train_ds.epoch = epoch
        if isinstance(r.dl.sampler, DistributedSampler):
            r.dl.sampler.set_epoch(epoch)
        desc = f"epoch {epoch + 1}/{p.epochs}"
        tr = _epoch(r.net, r.dl, r.opt, r.sched, r.scaler, d, desc, r.ema)
        va = _epoch(r.shipped, r.vdl, None, None, None, d, "val")
        # each rank saw its share of the frames: log and choose on the mean over the ranks
        tr, va = ({k: _all_mean(v, d) for k, v in x.items()} for x in (tr, va))
        va_loss = va["loss"]
        if va_loss < state.best_val:  # keep the weights that generalise best, not the last
            state.best_val, state.best_epoch = va_loss, epoch
            state.best = {k: v.detach().clone() for k, v in r.shipped.state_dict().items()}
        state.epoch = epoch + 1
        if d.main:
            assert live is not None
            _log_epoch(live, r, state, tr, va)
            save_atomic(_checkpoint(r, state, p), checkpoint)
            best = " (best)" if state.best_epoch == epoch else ""
            print(
                f"epoch {epoch + 1}/{p.epochs}: train {tr['loss']:.3f} val {va['loss']:.3f}"
                f"{best} ({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )
    if d.main and last == p.epochs:
        _finish(r, state, p, out, live, (time.perf_counter() - t0) / 60)
    if d.world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return state.history


def _log_epoch(
    live: Any, r: Run, state: TrainState, tr: dict[str, float], va: dict[str, float]
) -> None:
    state.history = {
        **{f"train/{k}": v for k, v in tr.items()},
        **{f"val/{k}": v for k, v in va.items()},
    }
    for k, v in state.history.items():
        live.log_metric(k, v)
    live.log_metric("lr", r.sched.get_last_lr()[0])
    live.next_step()


def _finish(r: Run, state: TrainState, p: TrainParams, out: str, live: Any, minutes: float) -> None:
    """Write the best epoch's weights as the model; close the DVCLive run."""
    r.raw.load_state_dict(state.best if state.best is not None else r.shipped.state_dict())
    # model.pt holds only what the inputs determine (no clock): the same code, params and
    # data give the same bytes, so a DVC remote filled anywhere serves everyone
    extra = {"history": state.history, "best_epoch": state.best_epoch}
    save_atomic(model_file(r.raw, p, extra), out)
    if live is not None:
        live.summary["train_minutes"] = round(minutes, 2)
        live.summary["best_epoch"] = state.best_epoch + 1
        live.summary["best_val_loss"] = round(state.best_val, 4)
        live.end()


@dataclass
class TrainState:
    """What a resumed run needs besides the model, optimiser and schedule."""

    epoch: int = 0  # epochs done
    best_val: float = float("inf")
    best_epoch: int = -1
    best: dict[str, torch.Tensor] | None = None
    history: dict[str, float] = field(default_factory=dict)


def _all_mean(x: float, d: Dist) -> float:
    """The mean of a per-rank number over the ranks (every rank picks the same best)."""
    if d.world == 1:
        return x
    t = torch.tensor([x], dtype=torch.float64, device=d.device)
    dist.all_reduce(t)
    return float(t.item()) / d.world


def _checkpoint(r: Run, state: TrainState, p: TrainParams) -> dict[str, Any]:
    """Everything that makes a resumed run continue exactly as the uninterrupted one: the
    weights, optimiser and schedule, the random states (dropout, shuffling) and the best
    weights so far."""
    gen = getattr(r.dl.sampler, "generator", None)
    return {
        "format": "perception-checkpoint/4",
        "model": r.raw.state_dict(),
        "opt": r.opt.state_dict(),
        "sched": r.sched.state_dict(),
        "epoch": state.epoch - 1,
        "epochs": p.epochs,
        "best_val": state.best_val,
        "best_epoch": state.best_epoch,
        "best": state.best,
        "history": state.history,
        "torch_rng": torch.get_rng_state(),
        "sampler_rng": gen.get_state() if gen is not None else None,
        "ema": r.ema.state_dict() if r.ema is not None else None,
    }


def _resume(path: str, r: Run, p: TrainParams) -> TrainState:
    """Load a checkpoint written by _checkpoint; refuse (one line) a missing or foreign file
    and a run whose schedule would differ (train.epochs changed: the one-cycle schedule
    spans all epochs, so it cannot be stretched)."""
    if not Path(path).is_file():
        raise UserError(f"{path}: no checkpoint to resume from")
    ck = load_torch_file(path, r.d.device)
    if ck.get("format") != "perception-checkpoint/4":
        raise UserError(f"{path}: not a checkpoint written by this version of perception train")
    if int(ck["epochs"]) != p.epochs:
        raise UserError(
            f"{path}: written by a run of {ck['epochs']} epochs, train.epochs is {p.epochs}; "
            "resume with the same epochs, or train afresh"
        )
    try:
        r.raw.load_state_dict(ck["model"])
    except RuntimeError as e:  # another network: train.lane_cells, det_stride, backbone, ...
        raise UserError(
            f"{path}: its network differs from this run's params ({first_line(e)[:80]}); "
            "resume with the params that wrote it, or train afresh"
        ) from None
    if (ck["ema"] is None) != (r.ema is None):
        raise UserError(
            f"{path}: written by a run with train.ema_decay "
            f"{'0' if ck['ema'] is None else '> 0'}; resume with the params that wrote it, "
            "or train afresh"
        )
    if r.ema is not None:
        r.ema.load_state_dict(ck["ema"])
    r.opt.load_state_dict(ck["opt"])
    r.sched.load_state_dict(ck["sched"])
    torch.set_rng_state(ck["torch_rng"])
    gen = getattr(r.dl.sampler, "generator", None)
    if gen is not None and ck["sampler_rng"] is not None:
        gen.set_state(ck["sampler_rng"])
    return TrainState(
        int(ck["epoch"]) + 1,
        float(ck["best_val"]),
        int(ck["best_epoch"]),
        ck["best"],
        dict(ck["history"]),
    )


def _live(live_dir: str, p: TrainParams, resume: bool) -> Any:
    from dvclive import Live

    live = Live(live_dir, dvcyaml=None, save_dvc_exp=False, resume=resume, report=None)
    live.log_params(asdict(p))
    return live


def run(args: argparse.Namespace) -> int:
    p = section(load_params(args.params), TrainParams)
    if args.epochs is not None:
        p = replace(p, epochs=args.epochs)
    for path in (args.data, args.splits):
        if not Path(path).exists():
            raise FileNotFoundError(f"{path}: missing")
    np.seterr(all="ignore")
    train(
        args.data,
        args.splits,
        args.model,
        args.checkpoint,
        args.live_dir,
        p,
        resume=args.resume,
        progress=not args.quiet,
        stop_after=args.stop_after,
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train the lane and obstacle network")
    p.add_argument("--data", required=True, help="dataset root")
    p.add_argument("--splits", required=True, help="splits file from perception split")
    p.add_argument("--model", required=True, help="model file to write (.pt)")
    p.add_argument("--checkpoint", default="models/checkpoint.pt")
    p.add_argument("--live-dir", default="reports/train", help="DVCLive metrics and plots")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--epochs", type=int, help="override train.epochs")
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    p.add_argument(
        "--stop-after",
        type=int,
        metavar="N",
        help="stop after N epochs in all, leaving the checkpoint for --resume (time-boxed runs)",
    )
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)


__all__ = ["load_model", "model_file", "save_atomic", "train"]  # load_model: older imports
