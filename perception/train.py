"""`perception train`: single process, or DistributedDataParallel under torchrun.

    perception train --data data/sim --splits data/splits.json --model models/model.pt
    torchrun --standalone --nproc-per-node 2 -m perception.cli train ...   (gloo on CPU,
                                                                        nccl on CUDA)

Rank 0 alone logs (DVCLive), shows progress and writes files; every write is atomic. A
checkpoint after each epoch lets `--resume` continue an interrupted run where it stopped.
"""

from __future__ import annotations

import argparse
import io
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler
from tqdm import tqdm

from perception.dataset.split import load_splits
from perception.model import loss as losses
from perception.model.data import FrameCache, TrainSet
from perception.model.net import NetConfig, PerceptionNet
from perception.params import TrainParams, load_params, section
from serving.contract import ModelContract
from serving.files import atomic_write_bytes


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


def save_atomic(obj: Any, path: str | Path) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def model_file(net: PerceptionNet, params: TrainParams, extra: dict[str, Any]) -> dict:
    """What models/model.pt holds: weights plus everything needed to rebuild and decode."""
    return {
        "format": "perception-model/1",
        "state_dict": net.state_dict(),
        "contract": asdict(net.contract),
        "net": asdict(net.cfg),
        "train_params": asdict(params),
        **extra,
    }


def load_model(path: str | Path, device: str | torch.device = "cpu") -> PerceptionNet:
    """Rebuild the network saved by `perception train` (weights only: no pickled code)."""
    blob = torch.load(path, map_location=device, weights_only=True)
    if not isinstance(blob, dict) or blob.get("format") != "perception-model/1":
        raise ValueError(f"{path}: not a model file written by perception train")
    contract = ModelContract(**_tuples(blob["contract"]))
    cfg = NetConfig(**_tuples(blob["net"]))
    net = PerceptionNet(contract, cfg)
    net.load_state_dict(blob["state_dict"])
    return net.eval()


def _tuples(d: dict[str, Any]) -> dict[str, Any]:
    """Lists back to the tuples of the frozen dataclasses they came from."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}


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
) -> dict[str, float]:
    """One pass; trains when opt is given. Returns mean loss parts (this rank's share)."""
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
        for k, v in {"loss": float(loss.detach()), **parts}.items():
            sums[k] = sums.get(k, 0.0) + v
        n += 1
    return {k: v / max(n, 1) for k, v in sums.items()}


def train(
    data: str,
    splits_path: str,
    out: str,
    checkpoint: str,
    live_dir: str,
    p: TrainParams,
    resume: bool = False,
    progress: bool = True,
) -> dict[str, float]:
    d = setup_dist()
    d.amp = amp_dtype(d.device, p.precision)
    d.progress = progress
    torch.manual_seed(p.seed)
    splits = load_splits(splits_path)
    contract = ModelContract()
    limit = p.max_frames or None
    train_cache = FrameCache(data, splits["train"], contract, progress and d.main, limit)
    val_cache = FrameCache(
        data, splits["val"], contract, progress and d.main, max(limit // 4, 8) if limit else None
    )
    train_ds, val_ds = TrainSet(train_cache, True, p.seed), TrainSet(val_cache, False, p.seed)
    raw = PerceptionNet(contract).to(d.device).to(memory_format=torch.channels_last)
    net: torch.nn.Module = raw
    if d.world > 1:
        net = DistributedDataParallel(net)
    opt = torch.optim.AdamW(net.parameters(), lr=p.lr, weight_decay=p.weight_decay)
    dl, vdl = _loader(train_ds, p, d, True), _loader(val_ds, p, d, False)
    steps = max(20, p.epochs * len(dl))  # OneCycleLR needs a few steps per phase
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, p.lr, total_steps=steps, pct_start=0.1)
    scaler = torch.amp.GradScaler(enabled=d.amp == torch.float16)
    start = 0
    if resume and Path(checkpoint).exists():
        ck = torch.load(checkpoint, map_location=d.device, weights_only=True)
        raw.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        sched.load_state_dict(ck["sched"])
        start = int(ck["epoch"]) + 1
    live = _live(live_dir, p, resume and start > 0) if d.main else None
    t0 = time.perf_counter()
    history: dict[str, float] = {}
    for epoch in range(start, p.epochs):
        train_ds.epoch = epoch
        if isinstance(dl.sampler, DistributedSampler):
            dl.sampler.set_epoch(epoch)
        tr = _epoch(net, dl, opt, sched, scaler, d, f"epoch {epoch + 1}/{p.epochs}")
        va = _epoch(net, vdl, None, None, None, d, "val")
        if d.main:
            history = {
                **{f"train/{k}": v for k, v in tr.items()},
                **{f"val/{k}": v for k, v in va.items()},
            }
            assert live is not None
            for k, v in history.items():
                live.log_metric(k, v)
            live.log_metric("lr", sched.get_last_lr()[0])
            live.next_step()
            save_atomic(
                {
                    "model": raw.state_dict(),
                    "opt": opt.state_dict(),
                    "sched": sched.state_dict(),
                    "epoch": epoch,
                },
                checkpoint,
            )
            print(
                f"epoch {epoch + 1}/{p.epochs}: train {tr['loss']:.3f} val {va['loss']:.3f} "
                f"({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )
    if d.main:
        minutes = (time.perf_counter() - t0) / 60
        save_atomic(model_file(raw, p, {"history": history, "train_minutes": minutes}), out)
        if live is not None:
            live.summary["train_minutes"] = round(minutes, 2)
            live.end()
    if d.world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return history


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
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)
