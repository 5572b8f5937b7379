"""Small valid datasets for the dataset tests, written with schema.ClipWriter, and helpers
that corrupt them in one precise way."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from perception.dataset.schema import (
    ClipMeta,
    ClipWriter,
    FrameLabel,
    Lane,
    Obstacle,
    write_manifest,
)
from serving.contract import CLASS_NAMES, tusimple_h_samples
from serving.geometry import Calib

FRAME_DT_NS = 50_000_000  # 20 Hz camera
SENSOR_DT_NS = 10_000_000  # 100 Hz sensors
T0_NS = 1_000_000_000

DEFAULT_TAGS = (
    {"time_of_day": "day", "weather": "clear", "road": "highway", "traffic": "light"},
    {"time_of_day": "night", "weather": "rain", "road": "urban", "traffic": "dense"},
    {"time_of_day": "dusk", "weather": "fog", "road": "rural", "traffic": "light"},
)


def encode_jpeg(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 85])
    assert ok
    return buf.tobytes()


def synthetic_image(rng: np.random.Generator, w: int, h: int, brightness: int) -> np.ndarray:
    """A road-like gradient plus noise, so that every frame has distinct content."""
    ramp = np.linspace(0, 60, h, dtype=np.float32)[:, None, None]
    noise = rng.normal(0, 12, (h, w, 3)).astype(np.float32)
    return np.clip(brightness + ramp + noise, 0, 255).astype(np.uint8)


def frame_label(k: int, w: int, h: int, classes: Sequence[str]) -> FrameLabel:
    """Two obstacles and two lanes that satisfy every check on a w x h image."""
    obstacles = [
        Obstacle(
            track_id=i, cls=c, box=[(0.05 + 0.15 * i) * w, 0.5 * h, (0.15 + 0.15 * i) * w, 0.65 * h]
        )
        for i, c in enumerate(classes)
    ]
    lanes = [
        Lane(
            slot=slot,
            points=[[u0, h - 1.0], [u0 + du, 0.75 * h], [u0 + 2 * du, 0.55 * h]],
            x_at_h=[],
        )
        for slot, u0, du in (("ego_left", 0.25 * w, 0.1 * w), ("ego_right", 0.75 * w, -0.1 * w))
    ]
    return FrameLabel(
        frame=k,
        image=f"frames/{k:06d}.jpg",
        timestamp_ns=T0_NS + k * FRAME_DT_NS,
        lanes=lanes,
        obstacles=obstacles,
    )


def make_dataset(
    root: Path,
    n_clips: int = 3,
    frames: int = 5,
    size: tuple[int, int] = (320, 180),
    tags: Sequence[dict[str, str]] = DEFAULT_TAGS,
    classes: Callable[[int, int], Sequence[str]] | None = None,
    seed: int = 0,
) -> Path:
    """Write a valid dataset: n_clips clips c0000.. of `frames` frames, tags cycled from
    `tags`, classes(clip, frame) -> class names of the two obstacles (default: all classes)."""
    rng = np.random.default_rng(seed)
    w, h = size
    classes = classes or (lambda c, k: (CLASS_NAMES[(c + k) % 4], CLASS_NAMES[(c + k + 1) % 4]))
    entries = []
    for c in range(n_clips):
        cid = f"c{c:04d}"
        writer = ClipWriter(root / "clips", cid)
        for k in range(frames):
            img = synthetic_image(rng, w, h, 40 + 30 * (c % 4))
            writer.write_frame(frame_label(k, w, h, classes(c, k)), encode_jpeg(img))
        t = np.arange(T0_NS - SENSOR_DT_NS, T0_NS + frames * FRAME_DT_NS, SENSOR_DT_NS)
        sensors = np.stack(
            [t, np.full(len(t), 10.0), np.zeros(len(t)), np.zeros(len(t)), np.zeros(len(t))], axis=1
        ).astype(np.float64)
        meta = ClipMeta(cid, "test", 20.0, frames, tusimple_h_samples(h), dict(tags[c % len(tags)]))
        writer.close(Calib.default(w, h), meta, sensors)
        entries.append({"clip_id": cid, "num_frames": frames})
    write_manifest(root, "test", entries)
    return root


def edit_label(clip_dir: Path, frame: int, fn: Callable[[dict], None]) -> None:
    """Apply fn to the JSON dict of one frame's label in labels.jsonl."""
    p = clip_dir / "labels.jsonl"
    lines = p.read_text().splitlines()
    d = json.loads(lines[frame])
    fn(d)
    lines[frame] = json.dumps(d)
    p.write_text("\n".join(lines) + "\n")


def edit_json(path: Path, fn: Callable[[dict], None]) -> None:
    d = json.loads(path.read_text())
    fn(d)
    path.write_text(json.dumps(d))


def write_image(path: Path, width: int = 1280, height: int = 720) -> Path:
    """A plain grey BGR image file (its folders made), for importer fixtures."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.full((height, width, 3), 90, dtype=np.uint8)
    assert cv2.imwrite(str(path), img)
    return path


# ---------------------------------------------------------------- BDD100K files


def box(x1: float, y1: float, x2: float, y2: float) -> dict:
    return {"x1": x1, "y1": y1, "x2": x2, "y2": y2}


def det_label(category: str, b: dict, occluded: bool = False, truncated: bool = False) -> dict:
    return {
        "id": "7",
        "category": category,
        "box2d": b,
        "attributes": {"occluded": occluded, "truncated": truncated},
    }


def lane_label(category: str, vertices: list, types: str = "", **attrs: str) -> dict:
    return {
        "category": category,
        "attributes": attrs,
        "poly2d": [{"vertices": vertices, "types": types or "L" * len(vertices), "closed": False}],
    }


BDD_DET = [
    {
        "name": "b.jpg",
        "attributes": {"weather": "clear", "timeofday": "daytime"},
        "labels": [
            det_label("truck", box(10, 10, 50, 50)),
            det_label("motor", box(1, 2, 3, 4)),
            det_label("pedestrian", box(5, 5, 9, 20)),
            det_label("bicycle", box(5, 5, 9, 20)),
        ],
    },
    {
        "name": "a.jpg",
        "attributes": {"weather": "partly cloudy", "timeofday": "daytime"},
        "labels": [
            det_label("car", box(100.5, 200, 300, 400), occluded=True),
            det_label("bus", box(400, 300, 500, 450)),
            det_label("person", box(600, 300, 620, 380)),
            det_label("rider", box(700, 300, 720, 380), truncated=True),
            det_label("bike", box(700, 340, 725, 390)),
            det_label("traffic light", box(10, 10, 20, 30)),
            det_label("car", box(1200, -10, 1350, 100)),
            det_label("car", box(1300, 10, 1400, 100)),
            {"category": "drivable area", "poly2d": [{"vertices": [[0, 0], [1, 1]]}]},
        ],
    },
    {"name": "c.jpg", "attributes": {"weather": "rainy", "timeofday": "night"}, "labels": []},
    {"name": "d.jpg", "attributes": {"weather": "foggy", "timeofday": "dawn/dusk"}},
]
BDD_LANES = [
    {
        "name": "a.jpg",
        "labels": [
            lane_label(
                "single white",
                [[400, 720], [600, 400]],
                laneDirection="parallel",
                laneStyle="solid",
            ),
            lane_label("single white", [[900, 720], [700, 400]], laneStyle="dashed"),
            lane_label(
                "single white",
                [[100, 700], [150, 600], [200, 500], [250, 400]],
                "LCCL",
                laneDirection="parallel",
                laneStyle="dashed",
            ),
            lane_label(
                "double yellow",
                [[1200, 720], [800, 400]],
                laneDirection="parallel",
                laneStyle="solid",
            ),
            lane_label("crosswalk", [[300, 600], [900, 600]], laneDirection="vertical"),
        ],
    },
    {"name": "only-in-lanes.jpg", "labels": []},
]


def write_bdd(tmp_path: Path) -> dict[str, Path]:
    """Four BDD100K images, a detection file and a lane file (Scalabel JSON) under
    tmp_path/bdd; "out" is where an import should go."""
    images = tmp_path / "bdd" / "images"
    for name in ("a.jpg", "b.jpg", "c.jpg", "d.jpg"):
        write_image(images / name)
    det = tmp_path / "bdd" / "det.json"
    det.write_text(json.dumps(BDD_DET))
    lanes = tmp_path / "bdd" / "lane.json"
    lanes.write_text(json.dumps({"frames": BDD_LANES}))
    return {"images": images, "det": det, "lanes": lanes, "out": tmp_path / "ds"}
