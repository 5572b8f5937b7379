"""COCO detection export, and the box conversions that evaluation reuses for predictions.

Our boxes are x1 y1 x2 y2 pixels; COCO's are [x, y, width, height] pixels from the top-left
corner. Category ids are serving.contract.CLASS_NAMES index + 1. Images get ids 1.. in
manifest and frame order, annotations 1.. in the same order; ``file_name`` is the image path
relative to the dataset root, and each image also carries clip_id and frame so that
predictions can be matched back to our labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from perception.dataset.convert import select_clips
from perception.dataset.schema import Clip, Dataset, FormatError, FrameLabel, Obstacle
from serving.contract import CLASS_NAMES
from serving.files import atomic_write_json


def coco_categories() -> list[dict]:
    """COCO categories for CLASS_NAMES: id = index + 1."""
    return [
        {"id": i + 1, "name": name, "supercategory": "object"} for i, name in enumerate(CLASS_NAMES)
    ]


def category_id(cls: str) -> int:
    """COCO category id of one of CLASS_NAMES; any other name is a ValueError."""
    try:
        return CLASS_NAMES.index(cls) + 1
    except ValueError:
        raise ValueError(f"unknown class {cls!r} (known: {', '.join(CLASS_NAMES)})") from None


def obstacle_to_coco_bbox(obs: Obstacle | Sequence[float]) -> list[float]:
    """An obstacle's box (or a bare box), x1 y1 x2 y2 pixels -> COCO [x, y, width, height]
    pixels."""
    box = obs.box if isinstance(obs, Obstacle) else obs
    x1, y1, x2, y2 = (float(v) for v in box)
    return [x1, y1, x2 - x1, y2 - y1]


def coco_bbox_to_box(bbox: Sequence[float]) -> list[float]:
    """COCO [x, y, width, height] pixels -> x1 y1 x2 y2 pixels."""
    x, y, w, h = (float(v) for v in bbox)
    return [x, y, x + w, y + h]


def obstacle_to_coco_annotation(obs: Obstacle, ann_id: int, image_id: int) -> dict:
    """One COCO annotation: bbox, area (width * height, pixels²), iscrowd 0, category_id, plus
    track_id and, when known, distance_m (metres)."""
    bbox = obstacle_to_coco_bbox(obs)
    ann = {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category_id(obs.cls),
        "bbox": bbox,
        "area": bbox[2] * bbox[3],
        "iscrowd": 0,
        "track_id": obs.track_id,
    }
    if obs.distance_m is not None:
        ann["distance_m"] = obs.distance_m
    return ann


def coco_image(
    image_id: int, clip: Clip, label: FrameLabel, root: Path, size: tuple[int, int]
) -> dict:
    """A COCO image entry; size is (width, height) pixels, file_name relative to root."""
    file_name = clip.frame_path(label).relative_to(root).as_posix()
    return {
        "id": image_id,
        "file_name": file_name,
        "width": size[0],
        "height": size[1],
        "clip_id": clip.clip_id,
        "frame": label.frame,
    }


def to_coco(dataset: Dataset, out_path: str | Path, clip_ids: list[str] | None = None) -> dict:
    """Write the boxes of every frame of the chosen clips (default: all, manifest order) as one
    COCO detection JSON at out_path, atomically; image sizes come from each clip's calib.
    Returns the written object."""
    images: list[dict] = []
    annotations: list[dict] = []
    for clip in select_clips(dataset, clip_ids):
        calib = clip.calib
        size = (calib.image_width, calib.image_height)
        for label in clip.labels:
            image_id = len(images) + 1
            images.append(coco_image(image_id, clip, label, dataset.root, size))
            for obs in label.obstacles:
                try:
                    annotations.append(
                        obstacle_to_coco_annotation(obs, len(annotations) + 1, image_id)
                    )
                except ValueError as e:
                    raise FormatError(
                        f"{clip.path / 'labels.jsonl'}: frame {label.frame}: {e}"
                    ) from None
    coco = {
        "info": {"description": f"perception dataset {dataset.root}", "version": "1"},
        "images": images,
        "annotations": annotations,
        "categories": coco_categories(),
    }
    atomic_write_json(out_path, coco, indent=None)
    return coco
