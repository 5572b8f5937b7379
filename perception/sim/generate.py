"""`perception generate`: simulate a dataset of driving clips in the project's format.

Clips are independent, so they are spread over worker processes (one per core); each clip's
randomness comes from SeedSequence(seed).spawn, so the bytes do not depend on the number of
workers or on scheduling. A clip is written into a hidden folder and renamed into place when
complete; the manifest is written last. --out is replaced only when it is a dataset (or an
interrupted write of one): perception.dataset.output. Worker processes die with the command
(Linux: PR_SET_PDEATHSIG), so a `kill -9` leaves nothing writing on.

On several machines: `--shard i/n` writes clips k with k mod n == i, `--merge SHARD... --out
DIR` joins the n shards into the dataset one machine would have written, byte for byte
(perception.dataset.shards).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from perception.dataset.output import fresh_dataset_dir
from perception.dataset.schema import ClipMeta, ClipWriter, FrameLabel, write_manifest
from perception.dataset.shards import Shard, merge_shards
from perception.params import DataParams, load_params, section
from perception.sim.actors import SENSOR_HZ, Traffic
from perception.sim.render import Renderer
from perception.sim.road import Road
from perception.sim.scenario import sample_scenario
from serving.contract import tusimple_h_samples

GENERATOR_VERSION = "sim-2"


def clip_seeds(seed: int, n: int) -> list[int]:
    """Independent 63-bit seeds, one per clip, stable for a given (seed, clip index)."""
    return [
        int(s.generate_state(2, np.uint64)[0] >> np.uint64(1))
        for s in np.random.SeedSequence(seed).spawn(n)
    ]


def _sensor_rows(traffic: Traffic, road: Road, rng: np.random.Generator, t0_ns: int) -> np.ndarray:
    """CAN-like signals at 100 Hz with noise: t_ns, speed, yaw rate, acceleration, steering."""
    n = traffic.n
    heading = np.array([road.heading(float(s)) for s in traffic.ego_s])
    lat_yaw = np.arctan2(np.gradient(traffic.ego_lat), np.maximum(np.gradient(traffic.ego_s), 1e-6))
    yaw_rate = np.gradient(heading + lat_yaw) * SENSOR_HZ
    speed = traffic.ego_v
    curvature = yaw_rate / np.maximum(speed, 0.5)
    steering = np.arctan(2.8 * curvature) * 15.0  # wheelbase 2.8 m, ratio 15:1
    jitter = rng.integers(-200_000, 200_001, n)  # +-0.2 ms timestamp jitter
    t = t0_ns + (np.arange(n) * (1e9 / SENSOR_HZ)).astype(np.int64) + jitter
    bias = rng.normal(0.0, 0.002)
    return np.stack(
        [
            t.astype(np.float64),
            np.round(np.maximum(speed + rng.normal(0, 0.05, n), 0.0), 2),
            yaw_rate + bias + rng.normal(0, 0.003, n),
            traffic.ego_a + rng.normal(0, 0.08, n),
            steering + rng.normal(0, 0.002, n),
        ],
        axis=1,
    )


def generate_clip(out: Path, clip_id: str, seed: int, p: DataParams) -> dict:
    """Simulate and write one clip; returns its manifest entry."""

    cv2.setNumThreads(1)
    sc = sample_scenario(clip_id, seed, p.width, p.height, p.fps, p.frames)
    rng = np.random.default_rng(seed + 1)
    road = Road(sc.road, sc.ego_speed_mps * p.frames / p.fps + 500.0)
    traffic = Traffic(sc, road, rng)
    renderer = Renderer(sc, road, traffic, rng)
    h_samples = tusimple_h_samples(p.height)
    t0_ns = int(rng.integers(1, 10**6)) * 1_000_000
    sensors = _sensor_rows(traffic, road, rng, t0_ns)
    writer = ClipWriter(out / "clips", clip_id)
    try:
        for i in range(p.frames):
            img, lanes, obstacles = renderer.render(i, h_samples)
            quality = min(p.jpeg_quality, sc.conditions.jpeg_quality)  # params: the ceiling
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
            assert ok, "JPEG encoding failed"
            step = i * traffic.steps_per_frame
            t_ns = t0_ns + round(step * 1e9 / SENSOR_HZ) + int(rng.integers(-500_000, 500_001))
            label = FrameLabel(i, f"frames/{i:06d}.jpg", t_ns, lanes, obstacles)
            writer.write_frame(label, buf.tobytes())
        meta = ClipMeta(
            clip_id,
            "sim",
            p.fps,
            p.frames,
            h_samples,
            dict(sc.tags),
            sorted(sc.traffic.events),
            sensors="sim",
        )
        writer.close(sc.calib, meta, sensors)
    except BaseException:
        writer.abort()
        raise
    return {
        "clip_id": clip_id,
        "num_frames": p.frames,
        "seed": seed,
        "tags": dict(sc.tags),
        "events": sorted(sc.traffic.events),
    }


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _worker_init(parent: int) -> None:
    """In each worker: one OpenMP thread, and death with the parent. The kernel sends the
    worker SIGKILL when the process that forked it dies, even by SIGKILL; the parent may have
    died before the request, hence the check of getppid after it."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the pool's own broken-pipe exit remains
        return
    if os.getppid() != parent:
        os._exit(1)


def generate(
    out: str | Path, p: DataParams, progress: bool = True, shard: Shard | None = None
) -> dict:
    """Write a whole dataset to `out` (replacing a dataset there, refusing any other folder),
    or only one shard of it (perception.dataset.shards). Returns timing figures."""
    picked = shard.indices(p.clips) if shard else list(range(p.clips))
    out = fresh_dataset_dir(out)
    all_seeds = clip_seeds(p.seed, p.clips)
    ids = [f"sim-{p.seed:04d}-{i:04d}" for i in picked]
    seeds = [all_seeds[i] for i in picked]
    start = time.perf_counter()
    bar = tqdm(total=len(ids) * p.frames, unit="frame", disable=not progress, desc="generate")
    entries: dict[str, dict] = {}
    workers = max(1, min(p.workers, len(ids)))
    if workers == 1:
        for cid, s in zip(ids, seeds, strict=True):
            entries[cid] = generate_clip(out, cid, s, p)
            bar.update(p.frames)
    else:
        parent = (os.getpid(),)
        with ProcessPoolExecutor(workers, initializer=_worker_init, initargs=parent) as pool:
            futs = {
                pool.submit(generate_clip, out, cid, s, p): cid
                for cid, s in zip(ids, seeds, strict=True)
            }
            for fut in futs:
                entries[futs[fut]] = fut.result()
                bar.update(p.frames)
    bar.close()
    elapsed = time.perf_counter() - start
    write_manifest(
        out,
        "sim",
        [entries[c] for c in ids],
        generator=GENERATOR_VERSION,
        seed=p.seed,
        width=p.width,
        height=p.height,
        fps=p.fps,
        **(shard.manifest_field(p.clips) if shard else {}),
    )
    fps = len(ids) * p.frames / elapsed
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    return {"frames": len(ids) * p.frames, "seconds": elapsed, "frames_per_s": fps, "bytes": size}


def run(args: argparse.Namespace) -> int:
    if args.merge:
        n = merge_shards(args.merge, args.out)
        print(f"merged {len(args.merge)} shards, {n} clips -> {args.out}")
        return 0
    p = section(load_params(args.params), DataParams)
    overrides = {
        k: v
        for k, v in (
            ("clips", args.clips),
            ("frames", args.frames),
            ("seed", args.seed),
            ("workers", args.workers),
        )
        if v is not None
    }
    p = replace(p, **overrides)
    if p.clips < 1 or p.frames < 1:
        raise ValueError("--clips and --frames must be at least 1")
    shard = Shard.parse(args.shard) if args.shard else None
    stats = generate(args.out, p, progress=not args.quiet, shard=shard)
    print(
        f"generated {stats['frames']} frames in {stats['seconds']:.1f} s "
        f"({stats['frames_per_s']:.1f} frames/s), {stats['bytes'] / 2**20:.0f} MiB "
        f"-> {args.out}"
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="simulate driving clips with exact labels")
    p.add_argument("--out", required=True, help="dataset folder to (re)create")
    p.add_argument("--clips", type=int, help="number of clips (default: params data.clips)")
    p.add_argument("--frames", type=int, help="frames per clip (default: params data.frames)")
    p.add_argument("--seed", type=int, help="seed (default: params data.seed)")
    p.add_argument("--workers", type=int, help="processes (default: params data.workers)")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--shard", metavar="I/N", help="write only shard I of N (0-based): clips k with k %% N == I"
    )
    p.add_argument(
        "--merge",
        nargs="+",
        metavar="SHARD_DIR",
        help="merge the N shard folders into --out (one manifest; same bytes as unsharded)",
    )
    p.set_defaults(func=run)


__all__ = ["DataParams", "generate", "generate_clip"]
