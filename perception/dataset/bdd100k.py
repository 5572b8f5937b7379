"""BDD100K import: detection boxes and lane markings (Scalabel JSON) into our format.

Label files are a JSON list of frames (or an object with a "frames" list)::

    {"name": "b1c66a42-6f7d68ca.jpg",
     "attributes": {"weather": "rainy", "timeofday": "night", "scene": "highway"},
     "labels": [{"id": "1", "category": "car",
                 "box2d": {"x1": .., "y1": .., "x2": .., "y2": ..},
                 "attributes": {"occluded": true, "truncated": false}},
                {"category": "single white",   # or "lane", "lane/single white"
                 "attributes": {"laneDirection": "parallel", "laneStyle": "dashed"},
                 "poly2d": [{"vertices": [[x, y], ...], "types": "LLCCL", "closed": false}]}]}

BDD100K images are unrelated single frames (the 10th second of separate videos). To keep
clips a useful unit, frames are grouped ``frames_per_clip`` at a time in sorted name order
within groups of equal image size, time of day and weather (so that a clip's tags hold for
all its frames), with timestamps index * 50 ms at a nominal 20 fps. The frames of a clip are
NOT a sequence: temporal models and trackers must not use these clips, and every box gets a
track id of its own within its clip so that no association across frames is implied.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from perception.dataset.convert import (
    ImportReport,
    SourceFrame,
    frame_image_name,
    inside_root,
    read_image_size,
    safe_id,
    write_imported_clip,
)
from perception.dataset.lane_rows import (
    MIN_LANE_POINTS,
    NO_POINT,
    assign_lane_slots,
    xs_to_points,
)
from perception.dataset.output import provenance_path, staged_dataset_dir
from perception.dataset.scalabel import load_frames
from perception.dataset.schema import (
    ClipMeta,
    FormatError,
    FrameLabel,
    Lane,
    Obstacle,
    write_manifest,
)
from serving.contract import tusimple_h_samples
from serving.geometry import Calib

FRAME_PERIOD_NS = 50_000_000
CATEGORY_MAP = {
    "car": "car",
    "truck": "truck",
    "bus": "truck",
    "person": "pedestrian",
    "pedestrian": "pedestrian",
    "rider": "cyclist",
    "bike": "cyclist",
    "bicycle": "cyclist",
    "motor": "cyclist",
    "motorcycle": "cyclist",
}
WEATHER_MAP = {"rainy": "rain", "foggy": "fog"}  # anything else -> clear
TIME_OF_DAY_MAP = {"night": "night", "dawn/dusk": "dusk"}  # anything else -> day
LANE_TYPES = (
    "crosswalk",
    "double other",
    "double white",
    "double yellow",
    "road curb",
    "single other",
    "single white",
    "single yellow",
)
BEZIER_STEPS = 10


# ---------------------------------------------------------------- boxes


def clip_box(box: Sequence[float], width: int, height: int) -> list[float]:
    """x1 y1 x2 y2 pixels clipped to the image, i.e. to [0, width - 1] x [0, height - 1]
    (pixel centres; any reading of "inside the image" accepts it)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    xmax, ymax = width - 1.0, height - 1.0
    return [
        min(max(x1, 0.0), xmax),
        min(max(y1, 0.0), ymax),
        min(max(x2, 0.0), xmax),
        min(max(y2, 0.0), ymax),
    ]


def _area(box: Sequence[float]) -> float:
    return max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0)


def label_to_obstacle(label: dict, track_id: int, width: int, height: int) -> Obstacle | None:
    """A BDD box label -> Obstacle with the box clipped to the image, or None when the box is
    empty after clipping. Occlusion and truncation are 0.5 when flagged, else 0.0; truncation
    is at least the fraction of the box area cut off by the clipping."""
    b = label["box2d"]
    raw = [float(b["x1"]), float(b["y1"]), float(b["x2"]), float(b["y2"])]
    box = clip_box(raw, width, height)
    if _area(box) <= 0.0:
        return None
    attrs = label.get("attributes") or {}
    cut = 1.0 - _area(box) / _area(raw) if _area(raw) > 0 else 0.0
    return Obstacle(
        track_id=track_id,
        cls=CATEGORY_MAP[label["category"]],
        box=box,
        occlusion=0.5 if attrs.get("occluded") else 0.0,
        truncation=max(0.5 if attrs.get("truncated") else 0.0, round(cut, 4)),
    )


# ---------------------------------------------------------------- lanes


def poly2d_to_polyline(vertices: Sequence[Sequence[float]], types: str = "") -> np.ndarray:
    """Scalabel poly2d -> float[N, 2] (x, y) pixels. ``types`` has one letter per vertex: 'L'
    a vertex of the line, 'C' a cubic Bezier control point (two between line vertices); the
    curves are sampled at BEZIER_STEPS points."""
    v = np.asarray(vertices, dtype=np.float64).reshape(-1, 2)
    types = types if len(types) == len(v) else "L" * len(v)
    out, i = [v[0]], 1
    while i < len(v):
        if types[i] == "C" and i + 2 < len(v) and types[i + 1] == "C":
            p0, p1, p2, p3 = v[i - 1], v[i], v[i + 1], v[i + 2]
            for t in np.linspace(0.0, 1.0, BEZIER_STEPS + 1)[1:]:
                s = 1.0 - t
                out.append(s**3 * p0 + 3 * s * s * t * p1 + 3 * s * t * t * p2 + t**3 * p3)
            i += 3
        else:
            out.append(v[i])
            i += 1
    return np.array(out)


def resample_to_rows(polyline: np.ndarray, h_samples: Sequence[int], width: int) -> list[float]:
    """x (pixels) of a polyline at each h_samples row by linear interpolation in v, only within
    the polyline's v range and inside the image; -2 elsewhere. Where the polyline crosses a
    row more than once, the crossing nearest its bottom end counts."""
    pts = polyline if polyline[0, 1] >= polyline[-1, 1] else polyline[::-1]
    xs: list[float] = []
    for h in h_samples:
        x = float(NO_POINT)
        for (u0, v0), (u1, v1) in itertools.pairwise(pts):
            if min(v0, v1) <= h <= max(v0, v1):
                x = u0 if v0 == v1 else u0 + (u1 - u0) * (h - v0) / (v1 - v0)
                break
        xs.append(round(float(x), 2) if 0.0 <= x <= width - 1 else float(NO_POINT))
    return xs


def _lane_kind(label: dict) -> str | None:
    """The lane type ('single white', ...) of a lane-marking label, or None if it is not one."""
    category = str(label.get("category", "")).lower()
    attrs = label.get("attributes") or {}
    if category.startswith("lane"):
        kind = category.partition("/")[2] or str(attrs.get("laneType", attrs.get("laneTypes", "")))
        return kind.lower() or "unknown"
    return category if category in LANE_TYPES else None


def lane_style_color(kind: str, attrs: dict) -> tuple[str, str]:
    """Our (style, color) for a BDD lane type and its attributes: double types -> double, road
    curb -> none, else laneStyle solid/dashed; yellow types -> yellow, else white."""
    if "double" in kind:
        style = "double"
    elif "curb" in kind:
        style = "none"
    else:
        style = {"solid": "solid", "dashed": "dashed"}.get(str(attrs.get("laneStyle")), "none")
    return style, "yellow" if "yellow" in kind else "white"


def labels_to_lanes(
    labels: list[dict], h_samples: list[int], width: int, height: int, report: ImportReport
) -> list[Lane]:
    """BDD lane-marking labels of one frame -> our lanes: markings along the road (laneDirection
    "parallel" or none given; crosswalks excluded), each poly2d resampled to the h_samples rows,
    kept with >= 2 points, slots assigned as for TuSimple. Drops are counted in report."""
    cands: list[tuple[list[float], str, str]] = []
    for label in labels:
        kind = _lane_kind(label)
        attrs = label.get("attributes") or {}
        if kind is None or "poly2d" not in label:
            continue
        if "crosswalk" in kind or attrs.get("laneDirection", "parallel") != "parallel":
            report.dropped["lane markings across the road"] += 1
            continue
        style, color = lane_style_color(kind, attrs)
        for poly in label["poly2d"]:
            line = poly2d_to_polyline(poly["vertices"], str(poly.get("types", "")))
            cands.append((resample_to_rows(line, h_samples, width), style, color))
    points = [xs_to_points(xs, h_samples) for xs, _, _ in cands]
    keep = [i for i, p in enumerate(points) if len(p) >= MIN_LANE_POINTS]
    report.dropped["lanes with fewer than 2 points"] += len(cands) - len(keep)
    slots = assign_lane_slots([points[i] for i in keep], width, height)
    report.dropped["lanes beyond the 4 slots"] += slots.count(None)
    return [
        Lane(slot, points[i], cands[i][0], cands[i][1], cands[i][2])
        for i, slot in zip(keep, slots, strict=True)
        if slot is not None
    ]


# ---------------------------------------------------------------- frames and clips


def frame_tags(frame: dict) -> dict[str, str]:
    """Our scenario tags from a BDD frame's attributes (road and traffic are not labelled)."""
    attrs = frame.get("attributes") or {}
    return {
        "time_of_day": TIME_OF_DAY_MAP.get(str(attrs.get("timeofday")), "day"),
        "weather": WEATHER_MAP.get(str(attrs.get("weather")), "clear"),
        "road": "unknown",
        "traffic": "unknown",
    }


@dataclass
class BddFrame:
    name: str
    image: Path
    size: tuple[int, int]  # width, height pixels
    tags: dict[str, str]
    labels: list[dict]  # box labels
    lane_labels: list[dict]


def labels_to_obstacles(
    labels: list[dict], size: tuple[int, int], where: str, report: ImportReport, next_id: int
) -> list[Obstacle]:
    """The box2d labels of one frame -> Obstacles (``label_to_obstacle``) with track ids
    next_id, next_id + 1, ...; other categories and boxes empty after clipping are dropped
    and counted. size: (width, height) pixels; where: "<file>: frame <name>" for errors."""
    width, height = size
    obstacles: list[Obstacle] = []
    for label in labels:
        if "box2d" not in label:
            continue
        if label.get("category") not in CATEGORY_MAP:
            report.dropped[f"boxes of category {label.get('category')!r}"] += 1
            continue
        try:
            obs = label_to_obstacle(label, next_id + len(obstacles), width, height)
        except (KeyError, TypeError, ValueError) as e:
            raise FormatError(f"{where}: malformed box2d ({e})") from None
        if obs is None:
            report.dropped["boxes empty after clipping to the image"] += 1
        else:
            obstacles.append(obs)
    return obstacles


def _frame_label(
    frame: BddFrame, index: int, origin: Path, report: ImportReport, next_id: int
) -> FrameLabel:
    width, height = frame.size
    where = f"{origin}: frame {frame.name}"
    obstacles = labels_to_obstacles(frame.labels, frame.size, where, report, next_id)
    try:
        h_samples = tusimple_h_samples(height)
        lanes = labels_to_lanes(frame.lane_labels, h_samples, width, height, report)
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise FormatError(f"{origin}: frame {frame.name}: malformed poly2d ({e})") from None
    return FrameLabel(
        index,
        frame_image_name(index, frame.image),
        index * FRAME_PERIOD_NS,
        lanes=lanes,
        obstacles=obstacles,
    )


def _write_clip(
    frames: list[BddFrame], clips_dir: Path, origin: Path, link: bool, report: ImportReport
) -> dict:
    clip_id = "bdd100k-" + safe_id(Path(frames[0].name).stem)
    out, next_id = [], 0
    for index, frame in enumerate(frames):
        label = _frame_label(frame, index, origin, report, next_id)
        next_id += len(label.obstacles)
        out.append(SourceFrame(label, frame.image))
    width, height = frames[0].size
    tags = dict(frames[0].tags)
    meta = ClipMeta(
        clip_id, "bdd100k", 20.0, len(out), tusimple_h_samples(height), tags, sensors="none"
    )
    write_imported_clip(clips_dir, out, Calib.default(width, height), meta, link)
    return {"clip_id": clip_id, "num_frames": len(out), "tags": tags}


def _group_frames(
    det: list[dict],
    lanes_by_name: dict[str, list[dict]] | None,
    images: Path,
    det_path: Path,
    progress: bool,
) -> dict[tuple, list[BddFrame]]:
    """The frames by (image size, time of day, weather), each group in name order: a clip
    takes its frames from one group, so its tags hold for all of them."""
    groups: dict[tuple, list[BddFrame]] = defaultdict(list)
    ordered = sorted(det, key=lambda f: f["name"])
    for f in tqdm(ordered, desc="bdd100k images", unit="img", disable=not progress):
        labels = f.get("labels") or []
        lane = labels if lanes_by_name is None else lanes_by_name.get(f["name"], [])
        where = f"{det_path}: frame {f['name']}"
        image = inside_root(images, f["name"], f"{where}: name")
        size = read_image_size(image, where)
        bf = BddFrame(f["name"], image, size, frame_tags(f), labels, lane)
        groups[(bf.size, bf.tags["time_of_day"], bf.tags["weather"])].append(bf)
    return groups


def import_bdd100k(
    images: str | Path,
    det_labels: str | Path,
    out: str | Path,
    lane_labels: str | Path | None = None,
    frames_per_clip: int = 20,
    link: bool = True,
    progress: bool = False,
) -> ImportReport:
    """Import BDD100K frames listed in det_labels (images under ``images``) into a dataset at
    ``out``. Lane markings come from lane_labels when given, else from lane labels found in
    det_labels (the 2018 combined files hold both). Frames only in lane_labels are left out."""
    images, det_path, out = Path(images), Path(det_labels), Path(out)
    if frames_per_clip < 1:
        raise ValueError(f"frames per clip must be >= 1, got {frames_per_clip}")
    if not images.is_dir():
        raise FormatError(f"{images}: not a folder")
    det = load_frames(det_path)
    lanes_by_name: dict[str, list[dict]] | None = None
    if lane_labels is not None:
        lanes_by_name = {f["name"]: f.get("labels") or [] for f in load_frames(Path(lane_labels))}
    report = ImportReport(out)
    groups = _group_frames(det, lanes_by_name, images, det_path, progress)
    clips = []
    with staged_dataset_dir(out) as stage:  # out replaced only once everything is written
        for key in sorted(groups):
            group = groups[key]
            for start in range(0, len(group), frames_per_clip):
                chunk = group[start : start + frames_per_clip]
                clips.append(_write_clip(chunk, stage / "clips", det_path, link, report))
                report.clips += 1
                report.frames += len(chunk)
        clips.sort(key=lambda c: c["clip_id"])
        importer = {
            "name": "perception.dataset.bdd100k",
            "images": provenance_path(images),
            "det_labels": provenance_path(det_path),
            "lane_labels": provenance_path(lane_labels) if lane_labels else None,
            "frames_per_clip": frames_per_clip,
            "frames_are_independent": True,
            "dropped": dict(report.dropped),
        }
        write_manifest(stage, "bdd100k", clips=clips, importer=importer)
    return report
