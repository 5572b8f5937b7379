"""The data report written by `perception validate`: report.json (counts, errors, warnings),
plots (class_counts.png, box_sizes.png, brightness.png, scenario_mix.png), a grid of labelled
sample frames (samples.png) and the data profile (profile.json, see data_profile.py).

Everything is rendered in memory before the first file is written, and each file is written
atomically: a failure while drawing leaves the report folder as it was. Sample frames come
only from clips that passed every check (a label that failed may not even be drawable)."""

from __future__ import annotations

import io
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from perception.dataset.checks import ClipResult
from perception.dataset.data_profile import build_profile, write_profile
from perception.dataset.schema import TAG_KEYS, Clip, FormatError, FrameLabel
from serving.contract import CLASS_NAMES, LANE_SLOTS
from serving.files import atomic_write_bytes, atomic_write_json
from serving.io import read_image
from serving.source import SourceError

MAX_ERRORS_IN_REPORT = 1000
SAMPLE_GRID = (3, 4)  # rows, columns of samples.png
SAMPLE_WIDTH = 320  # pixels per sample tile
SLOT_COLORS = {
    "ego_left": (0, 255, 255),
    "ego_right": (0, 255, 0),  # BGR
    "outer_left": (255, 128, 0),
    "outer_right": (255, 0, 255),
}
CLASS_COLORS = {
    "car": (0, 0, 255),
    "truck": (0, 128, 255),
    "pedestrian": (255, 255, 0),
    "cyclist": (255, 0, 128),
}


def summarize(
    results: Sequence[ClipResult], errors: Sequence[str], warnings: Sequence[str]
) -> dict[str, Any]:
    """The content of report.json: counts over all clips, tag mix (clips per tag value),
    the number of errors and the first MAX_ERRORS_IN_REPORT of them, and the warnings."""
    cls: Counter[str] = Counter({c: 0 for c in CLASS_NAMES})
    slots: Counter[str] = Counter({s: 0 for s in LANE_SLOTS})
    tags: dict[str, Counter[str]] = {k: Counter() for k in TAG_KEYS}
    for r in results:
        cls.update(r.class_counts)
        slots.update(r.slot_counts)
        for k, v in r.tags.items():
            tags.setdefault(k, Counter())[str(v)] += 1
    return {
        "ok": not errors,
        "counts": {
            "clips": len(results),
            "frames": sum(r.num_frames for r in results),
            "objects": sum(cls.values()),
            "objects_per_class": dict(cls),
            "lanes_per_slot": dict(slots),
            "tags": {k: dict(sorted(c.items())) for k, c in tags.items()},
        },
        "num_errors": len(errors),
        "errors": list(errors[:MAX_ERRORS_IN_REPORT]),
        "num_warnings": len(warnings),
        "warnings": list(warnings),
    }


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def plot_class_counts(counts: dict[str, int]) -> bytes:
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    ax.bar(list(counts), list(counts.values()), color="tab:blue")
    ax.set_ylabel("objects")
    ax.set_title("Objects per class")
    return _png(fig)


def plot_box_sizes(results: Sequence[ClipResult], max_points: int = 20000) -> bytes:
    """Box width vs height (pixels, log-log) per class, at most max_points per class."""
    by_cls: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for r in results:
        for c, w, h in r.boxes:
            by_cls[c].append((w, h))
    fig, ax = plt.subplots(figsize=(6, 5), layout="constrained")
    for c, wh in sorted(by_cls.items()):
        a = np.asarray(wh[:: max(1, len(wh) // max_points)])
        rgb = [v / 255 for v in reversed(CLASS_COLORS.get(c, (128, 128, 128)))]
        ax.scatter(a[:, 0], a[:, 1], s=3, alpha=0.4, color=rgb, label=f"{c} ({len(wh)})")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="box width (px)",
        ylabel="box height (px)",
        title="Box sizes",
    )
    if by_cls:
        ax.legend(markerscale=4)
    return _png(fig)


def plot_brightness(results: Sequence[ClipResult]) -> bytes:
    """Histogram of the mean brightness of the sampled frames per time_of_day."""
    by_tod: dict[str, list[float]] = defaultdict(list)
    for r in results:
        by_tod[r.tags.get("time_of_day", "unknown")] += [s["brightness"] for s in r.image_stats]
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    for tod, vals in sorted(by_tod.items()):
        if vals:
            ax.hist(
                vals,
                bins=list(np.linspace(0.0, 255.0, 52)),
                histtype="step",
                lw=2,
                label=f"{tod} ({len(vals)})",
            )
    ax.set(
        xlabel="mean grey level (0-255)",
        ylabel="sampled frames",
        title="Frame brightness by time of day",
    )
    if any(by_tod.values()):
        ax.legend()
    return _png(fig)


def plot_scenario_mix(tags: dict[str, dict[str, int]]) -> bytes:
    keys = [k for k in tags if tags[k]] or list(TAG_KEYS)
    fig, axes = plt.subplots(
        1, len(keys), figsize=(4 * len(keys), 4), layout="constrained", squeeze=False
    )
    for ax, k in zip(axes[0], keys, strict=True):
        ax.bar(list(tags.get(k, {})), list(tags.get(k, {}).values()), color="tab:green")
        ax.set_title(k)
        ax.set_ylabel("clips")
        ax.tick_params(axis="x", rotation=30)
    return _png(fig)


def draw_labels(img: np.ndarray, lab: FrameLabel, scale: float) -> np.ndarray:
    """Draw lanes (polyline per slot colour) and boxes with class names onto a copy of img,
    whose pixels are the label's pixels times scale."""
    out = img.copy()
    for lane in lab.lanes:
        pts = np.round(np.asarray(lane.points, dtype=np.float64) * scale).astype(np.int32)
        if len(pts) >= 2:
            cv2.polylines(out, [pts], False, SLOT_COLORS.get(lane.slot, (255, 255, 255)), 2)
    for ob in lab.obstacles:
        x1, y1, x2, y2 = (round(v * scale) for v in ob.box)
        col = CLASS_COLORS.get(ob.cls, (255, 255, 255))
        cv2.rectangle(out, (x1, y1), (x2, y2), col, 1)
        cv2.putText(out, ob.cls, (x1, max(8, y1 - 2)), cv2.FONT_HERSHEY_SIMPLEX, 0.3, col, 1)
    return out


def pick_samples(results: Sequence[ClipResult], n: int) -> list[tuple[ClipResult, float]]:
    """Up to n (clip, relative position) pairs among the clips that passed every check,
    round-robin over the (time_of_day, weather) groups so that the grid shows as many
    conditions as possible."""
    groups: dict[tuple[str, str], list[ClipResult]] = defaultdict(list)
    for r in results:
        if r.num_frames and not r.errors:
            groups[(r.tags.get("time_of_day", "?"), r.tags.get("weather", "?"))].append(r)
    picks: list[tuple[ClipResult, float]] = []
    for pos in (0.5, 0.25, 0.75, 0.0):
        for depth in range(max((len(g) for g in groups.values()), default=0)):
            for key in sorted(groups):
                if depth < len(groups[key]) and len(picks) < n:
                    picks.append((groups[key][depth], pos))
    return picks


def _sample_tile(r: ClipResult, pos: float) -> np.ndarray | None:
    try:
        labels = Clip(r.path).labels
    except FormatError:
        return None
    lab = labels[min(len(labels) - 1, int(pos * len(labels)))]
    try:
        img = read_image(Clip(r.path).frame_path(lab), cv2.IMREAD_COLOR)
    except (FormatError, SourceError):  # changed since it was checked
        return None
    scale = SAMPLE_WIDTH / img.shape[1]
    small = cv2.resize(
        img, (SAMPLE_WIDTH, round(img.shape[0] * scale)), interpolation=cv2.INTER_AREA
    )
    tile = draw_labels(small, lab, scale)
    text = f"{r.clip_id} f{lab.frame} {r.tags.get('time_of_day', '')} {r.tags.get('weather', '')}"
    cv2.putText(tile, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1)
    return tile


def draw_samples(results: Sequence[ClipResult]) -> bytes:
    """samples.png: a SAMPLE_GRID of labelled frames, SAMPLE_WIDTH pixels wide each."""
    rows, cols = SAMPLE_GRID
    tiles = [
        t
        for r, pos in pick_samples(results, rows * cols)
        if (t := _sample_tile(r, pos)) is not None
    ]
    th = max((t.shape[0] for t in tiles), default=SAMPLE_WIDTH * 9 // 16)
    grid = np.zeros((rows * th, cols * SAMPLE_WIDTH, 3), np.uint8)
    for i, t in enumerate(tiles):
        y, x = (i // cols) * th, (i % cols) * SAMPLE_WIDTH
        grid[y : y + t.shape[0], x : x + t.shape[1]] = t[:th]
    ok, png = cv2.imencode(".png", grid, [cv2.IMWRITE_PNG_COMPRESSION, 6])
    if not ok:
        raise RuntimeError("could not encode samples.png")
    return png.tobytes()


def write_report(
    results: Sequence[ClipResult],
    errors: Sequence[str],
    warnings: Sequence[str],
    report_dir: str | Path,
    profile_out: str | Path | None = None,
) -> dict[str, Any]:
    """Write report.json, the plots, samples.png and the profile (default
    <report_dir>/profile.json). Returns the report.json content."""
    out = Path(report_dir)
    report = summarize(results, errors, warnings)
    pngs = {
        "class_counts.png": plot_class_counts(report["counts"]["objects_per_class"]),
        "box_sizes.png": plot_box_sizes(results),
        "brightness.png": plot_brightness(results),
        "scenario_mix.png": plot_scenario_mix(report["counts"]["tags"]),
        "samples.png": draw_samples(results),
    }
    boxes = [(c, w, h, *r.image_size) for r in results if r.image_size for c, w, h in r.boxes]
    profile = build_profile(
        [s for r in results for s in r.image_stats],
        [n for r in results for n in r.objects_per_frame],
        [n for r in results for n in r.lanes_per_frame],
        boxes,
    )
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "report.json", report)
    for name, png in pngs.items():
        atomic_write_bytes(out / name, png)
    write_profile(profile_out or out / "profile.json", profile)
    return report
