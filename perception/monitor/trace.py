"""Run the loop with its monitor over an input and keep what the monitor saw and said on
every frame: the record `perception monitor` reports on and `monitor-profile` bins.

An input is a video, an image folder, a clip folder (serving.io.open_source) or a dataset
root, whose clips (all of them, or a split's) run one after another as one stream: the
monitor's windows go on across clips, as they would on a drive through many scenes, while
each clip is a new camera for the frame checks and the pitch reference
(Monitor.new_source).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from serving.app import App, bgr
from serving.files import atomic_write_bytes
from serving.io import ClipSource, open_source
from serving.monitor import Monitor
from serving.monitor_hook import MonitorHook
from serving.source import Source

THUMB_WIDTH = 320  # pixels: the report's pictures of the frames where alerts began
MAX_THUMBS = 12


@dataclass
class Trace:
    """Per frame: property values (float64[P]), class counts, each scored row's
    out-of-range share, the state (0 ok, 1 warn, 2 alert) and its cause, the clip; the
    frames where an alert began (with a thumbnail path once written)."""

    rows: tuple[str, ...]
    values: list[np.ndarray] = field(default_factory=list)
    class_counts: list[np.ndarray] = field(default_factory=list)
    out: list[np.ndarray] = field(default_factory=list)
    psi: list[np.ndarray] = field(default_factory=list)
    state: list[int] = field(default_factory=list)
    cause: list[str] = field(default_factory=list)
    clip: list[str] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)

    def add(self, m: Monitor, clip: str) -> bool:
        """Record the monitor's view of the frame it just observed; True when an alert
        began on it."""
        began = m.state == 2 and (not self.state or self.state[-1] < 2)
        self.values.append(m.values.copy())
        self.class_counts.append(m.class_counts.copy())
        self.out.append(m.scores[0].copy())
        self.psi.append(m.scores[1].copy())
        self.state.append(m.state)
        self.cause.append(m.cause if m.state else "")
        self.clip.append(clip)
        if began:
            self.alerts.append(
                {"frame": len(self.state) - 1, "clip": clip, "cause": m.cause, "reason": m.reason()}
            )
        return began

    def array(self, name: str) -> np.ndarray:
        """values, class_counts, out, psi or state as one array (frames first)."""
        items = getattr(self, name)
        return np.array(items) if items else np.zeros((0, 0))


def dataset_clips(root: Path, splits: str | None, split: str) -> list[tuple[Path, int]]:
    """(folder, frames) of a dataset root's clips: the split's (from the splits file) or
    every one; frames as the manifest counts them (0 when it does not say)."""
    from perception.dataset.schema import Dataset
    from perception.dataset.split import load_splits

    ds = Dataset(root)
    ids = load_splits(splits)[split] if splits else ds.clip_ids()
    if not ids:
        raise ValueError(f"{splits or root}: {split}: no clips")
    n = {c.get("clip_id"): c.get("num_frames") for c in ds.manifest.get("clips", [])}
    return [(ds.clip(i).path, n[i] if isinstance(n.get(i), int) else 0) for i in ids]


def open_sources(spec: str, splits: str | None, split: str) -> tuple[int | None, Iterator[Source]]:
    """(frames expected or None, the sources of an input, opened one at a time)."""
    root = Path(spec)
    if not (root / "manifest.json").is_file():
        src = open_source(spec)
        return src.frame_count, iter([src])
    clips = dataset_clips(root, splits, split)
    return sum(n for _, n in clips) or None, (ClipSource(p) for p, _ in clips)


def run(
    app: App,
    hook: MonitorHook,
    sources: Iterator[Source],
    total: int | None,
    thumbs: Path | None = None,
    progress: bool = True,
) -> Trace:
    """Every frame of every source through the application with its monitor (hook, plugged
    into app); thumbnails of the frames where alerts began written under `thumbs` (at most
    MAX_THUMBS)."""
    m = hook.monitor
    trace = Trace(m.rows)
    clip = [""]

    def keep(frame: Any, result: Any, record: dict[str, Any]) -> None:
        began = trace.add(m, clip[0])
        if began and thumbs is not None and len(trace.alerts) <= MAX_THUMBS:
            trace.alerts[-1]["thumb"] = _thumb(frame.image, trace.alerts[-1], thumbs)

    app.hooks.append(keep)
    quiet = not (progress and sys.stderr.isatty())
    bar = tqdm(total=total, unit="frame", desc="monitor", disable=quiet)
    for src in sources:
        with src:
            app.runtime.for_size(*src.size)
            app.runtime.reset()
            hook.new_source(src.calib_or_default())
            clip[0] = Path(src.name).name
            app.run(src, on_frame=lambda t: bar.update(1))
            if src.ended_early:
                raise ValueError(src.end_reason)
    bar.close()
    return trace


def _thumb(image: np.ndarray, alert: dict[str, Any], folder: Path) -> str:
    """A small JPEG of the frame with the alert's cause written on it; its file name."""
    img = bgr(image)
    h = round(img.shape[0] * THUMB_WIDTH / img.shape[1])
    small = cv2.resize(img, (THUMB_WIDTH, max(h, 1)), interpolation=cv2.INTER_AREA)
    text = f"{alert['frame']}: {alert['cause']}"
    for colour, width in (((0, 0, 0), 3), ((0, 255, 255), 1)):
        cv2.putText(small, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, width, cv2.LINE_AA)
    ok, buf = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 85])
    name = f"alert_{alert['frame']:06d}.jpg"
    if ok:
        atomic_write_bytes(folder / name, buf.tobytes())
    return name
