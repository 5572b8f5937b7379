"""The checks of the data quality gate, one clip at a time (leakage.py checks across splits).

Every problem becomes one line ``<file>: clip <id> frame <n> <field>: <problem>`` (frame and
field left out where they do not apply), so that a failing gate tells the user which file to
open and where. ``check_clip`` runs in worker processes: it takes plain arguments and returns
a picklable ``ClipResult`` that also carries the label and image statistics for the report.

The checks of one frame's labels (boxes, lanes) are perception.dataset.label_checks.
"""

from __future__ import annotations

import hashlib
import io
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from perception.dataset.data_profile import image_stats
from perception.dataset.label_checks import check_lanes, check_obstacles, problem
from perception.dataset.schema import (
    Clip,
    ClipMeta,
    FormatError,
    FrameLabel,
)
from serving.files import UnsafeFileError, read_regular

JPEG_EOI = b"\xff\xd9"  # every complete JPEG ends with this marker


@dataclass
class ClipResult:
    """Outcome of checking one clip. Box sizes are pixels; image stats come from frames
    decoded at 1/4 size (see data_profile.image_stats)."""

    clip_id: str
    path: str
    errors: list[str] = field(default_factory=list)
    num_frames: int = 0  # labels read from labels.jsonl
    tags: dict[str, str] = field(default_factory=dict)
    image_size: tuple[int, int] | None = None  # (width, height) from calib.json
    class_counts: dict[str, int] = field(default_factory=dict)
    slot_counts: dict[str, int] = field(default_factory=dict)
    objects_per_frame: list[int] = field(default_factory=list)
    lanes_per_frame: list[int] = field(default_factory=list)
    boxes: list[tuple[str, float, float]] = field(default_factory=list)  # (class, w, h)
    hashes: list[tuple[str, int, str]] = field(default_factory=list)  # (hash, frame, image)
    image_stats: list[dict[str, float]] = field(default_factory=list)  # sampled frames


def content_hash(data: bytes) -> str:
    """Hex digest identifying an image file's bytes (128-bit BLAKE2b)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def read_labels(clip: Clip, err: list[str]) -> list[FrameLabel]:
    """Parse labels.jsonl line by line, recording malformed lines (and images outside the
    clip folder) instead of stopping."""
    p = clip.path / "labels.jsonl"
    labels = []
    try:
        for n, label in clip.label_lines():
            if isinstance(label, str):
                err.append(problem(p, clip.clip_id, label, None, f"line {n}"))
            else:
                labels.append(label)
    except FormatError as e:  # missing, not a regular file, too large
        err.append(problem(p, clip.clip_id, str(e).split(": ", 1)[-1]))
    return labels


def check_timing(
    labels: list[FrameLabel],
    t_sensor: np.ndarray | None,
    tol_ms: float,
    err: list[str],
    path: Path,
    clip: str,
) -> None:
    """Frame indices and timestamps strictly increasing; a sensor sample within tol_ms of
    every frame (timestamps are nanoseconds)."""
    sorted_t = np.sort(t_sensor) if t_sensor is not None and len(t_sensor) else None
    for k, lab in enumerate(labels):
        if k and lab.frame <= labels[k - 1].frame:
            err.append(
                problem(
                    path,
                    clip,
                    f"frame index not after previous {labels[k - 1].frame}",
                    lab.frame,
                    "frame",
                )
            )
        if k and lab.timestamp_ns <= labels[k - 1].timestamp_ns:
            err.append(
                problem(
                    path,
                    clip,
                    f"{lab.timestamp_ns} not after the previous "
                    f"frame's {labels[k - 1].timestamp_ns}",
                    lab.frame,
                    "timestamp_ns",
                )
            )
        if sorted_t is None:
            continue
        i = int(np.searchsorted(sorted_t, lab.timestamp_ns))
        near = [
            abs(int(sorted_t[j]) - lab.timestamp_ns) for j in (i - 1, i) if 0 <= j < len(sorted_t)
        ]
        gap_ms = min(near) / 1e6
        if gap_ms > tol_ms:
            err.append(
                problem(
                    path,
                    clip,
                    f"no sensor sample within {tol_ms:g} ms (nearest {gap_ms:.1f} ms away)",
                    lab.frame,
                    "timestamp_ns",
                )
            )


def check_sensors(clip: Clip, err: list[str]) -> np.ndarray | None:
    """sensors.csv: readable, finite, t_ns strictly increasing. Returns t_ns or None."""
    p = clip.path / "sensors.csv"
    try:
        rows = clip.sensors()
    except FormatError as e:
        msg = str(e)
        err.append(problem(p, clip.clip_id, msg.split(": ", 1)[1] if ": " in msg else msg))
        return None
    t = rows["t_ns"]
    for name in rows.dtype.names or ():
        bad = np.flatnonzero(~np.isfinite(rows[name].astype(np.float64)))
        if len(bad):
            err.append(problem(p, clip.clip_id, "not finite", None, f"line {bad[0] + 2} {name}"))
    steps = np.flatnonzero(np.diff(t) <= 0)
    if len(steps):
        k = int(steps[0]) + 1
        err.append(
            problem(
                p,
                clip.clip_id,
                f"{t[k]} not after the previous line's {t[k - 1]} "
                "(timestamps must strictly increase)",
                None,
                f"line {k + 2} t_ns",
            )
        )
    return t


def read_frame(clip: Clip, lab: FrameLabel) -> bytes:
    """The bytes of a frame's image; FormatError holding one problem line when it is missing,
    outside the clip folder (a link made after the labels were read), not a regular file (a
    FIFO, a device) or larger than serving.files.MAX_IMAGE_BYTES."""
    try:
        p = clip.frame_path(lab)
    except FormatError as e:
        what = str(e).split(": image ", 1)[-1]
        where = clip.path / "labels.jsonl"
        raise FormatError(problem(where, clip.clip_id, what, lab.frame, "image")) from None
    try:
        return read_regular(p)
    except FileNotFoundError:
        raise FormatError(problem(p, clip.clip_id, "missing file", lab.frame, "image")) from None
    except UnsafeFileError as e:
        what = str(e).removeprefix(f"{p}: ")
        raise FormatError(problem(p, clip.clip_id, what, lab.frame, "image")) from None


def check_image(
    clip: Clip, lab: FrameLabel, size: tuple[int, int] | None, sample: bool, res: ClipResult
) -> None:
    """Decode one frame; check completeness and size; hash it; stats when sampled."""
    try:
        data = read_frame(clip, lab)
    except FormatError as e:
        res.errors.append(str(e))
        return
    p = clip.frame_path(lab)
    res.hashes.append((content_hash(data), lab.frame, lab.image))
    # Every byte of the image is decoded, at 1/4 size (libjpeg scales in its inverse DCT:
    # ~3x faster than a full decode, and the stats want the small image anyway); the size
    # comes from the header, which the decoder has just read (a 1279- and a 1280-pixel-wide
    # frame both decode 320 wide).
    small = (
        cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_REDUCED_COLOR_4) if data else None
    )
    size_wh = _header_size(data) if small is not None else None
    truncated = p.suffix.lower() in (".jpg", ".jpeg") and not data.rstrip(b"\0").endswith(JPEG_EOI)
    if small is None or size_wh is None or truncated:
        what = "truncated JPEG (no end-of-image marker)" if small is not None else "unreadable"
        res.errors.append(
            problem(p, clip.clip_id, f"{what} image ({len(data)} bytes)", lab.frame, "image")
        )
        return
    w, h = size_wh
    if size is not None and (w, h) != size:
        res.errors.append(
            problem(
                p,
                clip.clip_id,
                f"size {w}x{h}, calib.json says {size[0]}x{size[1]}",
                lab.frame,
                "image",
            )
        )
    if sample:
        res.image_stats.append({"frame": float(lab.frame), **image_stats(small)})


def _header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the image's header (Pillow reads only the header here)."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            return int(im.width), int(im.height)
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def _calib_size(clip: Clip, err: list[str]) -> tuple[int, int] | None:
    try:
        calib = clip.calib
    except FormatError as e:
        err.append(problem(clip.path / "calib.json", clip.clip_id, str(e).split(": ", 1)[-1]))
        return None
    if calib.image_width <= 0 or calib.image_height <= 0:
        err.append(
            problem(
                clip.path / "calib.json",
                clip.clip_id,
                "must be positive",
                None,
                "image_width/image_height",
            )
        )
        return None
    return int(calib.image_width), int(calib.image_height)


def _meta(clip: Clip, err: list[str]) -> ClipMeta | None:
    p = clip.path / "meta.json"
    try:
        meta = clip.meta
    except FormatError as e:
        err.append(problem(p, clip.clip_id, str(e).split(": ", 1)[-1]))
        return None
    if meta.clip_id != clip.clip_id:
        err.append(
            problem(p, clip.clip_id, f"{meta.clip_id!r} is not the folder name", None, "clip_id")
        )
    return meta


def _label_stats(lab: FrameLabel, res: ClipResult, cls: Counter, slots: Counter) -> None:
    res.objects_per_frame.append(len(lab.obstacles))
    res.lanes_per_frame.append(len(lab.lanes))
    cls.update(o.cls for o in lab.obstacles)
    slots.update(lane.slot for lane in lab.lanes)
    for o in lab.obstacles:
        if len(o.box) == 4 and o.box[2] > o.box[0] and o.box[3] > o.box[1]:
            res.boxes.append((o.cls, float(o.box[2] - o.box[0]), float(o.box[3] - o.box[1])))


def check_clip(
    clip_dir: str, sync_tolerance_ms: float, sample_every: int = 0, check_images: bool = True
) -> ClipResult:
    """Run every per-clip check on the folder clip_dir. Frames at positions
    sample_every//2, +sample_every, ... get image statistics (0: none)."""
    cv2.setNumThreads(1)
    clip = Clip(clip_dir)
    res = ClipResult(clip.clip_id, str(clip.path))
    if not clip.path.is_dir():
        res.errors.append(problem(clip.path, clip.clip_id, "missing clip folder"))
        return res
    size = _calib_size(clip, res.errors)
    meta = _meta(clip, res.errors)
    labels = read_labels(clip, res.errors)
    t_sensor = check_sensors(clip, res.errors)
    res.num_frames, res.image_size = len(labels), size
    res.tags = dict(meta.tags) if meta else {}
    lp = clip.path / "labels.jsonl"
    if meta is not None and lp.is_file() and meta.num_frames != len(labels):
        res.errors.append(
            problem(
                clip.path / "meta.json",
                clip.clip_id,
                f"{meta.num_frames} but labels.jsonl has {len(labels)} frames",
                None,
                "num_frames",
            )
        )
    check_timing(labels, t_sensor, sync_tolerance_ms, res.errors, lp, clip.clip_id)
    cls: Counter[str] = Counter()
    slots: Counter[str] = Counter()
    n_h = len(meta.h_samples) if meta else 0
    for k, lab in enumerate(labels):
        try:
            check_obstacles(lab, size, res.errors, lp, clip.clip_id)
            check_lanes(lab, size, n_h, res.errors, lp, clip.clip_id)
            _label_stats(lab, res, cls, slots)
        except (TypeError, ValueError, IndexError) as e:  # a field of the wrong JSON type
            res.errors.append(problem(lp, clip.clip_id, f"malformed label ({e})", lab.frame))
        if check_images:
            sample = sample_every > 0 and k % sample_every == sample_every // 2
            check_image(clip, lab, size, sample, res)
    res.class_counts, res.slot_counts = dict(cls), dict(slots)
    return res
