"""The COCO export of our labels, read back by pycocotools."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from perception.dataset.coco import coco_bbox_to_box, obstacle_to_coco_bbox, to_coco
from perception.dataset.schema import (
    ClipMeta,
    ClipWriter,
    Dataset,
    FormatError,
    FrameLabel,
    Obstacle,
    write_manifest,
)
from serving.geometry import Calib

H_SAMPLES = list(range(160, 720, 10))


def write_boxes_dataset(root: Path) -> Dataset:
    w = ClipWriter(root / "clips", "c0")
    obstacles = [
        Obstacle(3, "car", [10.0, 20.0, 110.0, 70.0]),
        Obstacle(4, "cyclist", [0.5, 1.5, 3.0, 9.5], distance_m=12.5),
    ]
    w.write_frame(
        FrameLabel(0, "frames/000000.jpg", 0, obstacles=obstacles),
        cv2.imencode(".jpg", np.zeros((360, 640, 3), np.uint8))[1].tobytes(),
    )
    w.write_frame(
        FrameLabel(
            1,
            "frames/000001.jpg",
            50_000_000,
            obstacles=[Obstacle(3, "truck", [100, 100, 200, 300])],
        )
    )
    meta = ClipMeta("c0", "sim", 20.0, 2, H_SAMPLES)
    w.close(Calib.default(640, 360), meta, np.array([[0, 0, 0, 0, 0], [5e7, 0, 0, 0, 0]]))
    write_manifest(root, "sim", clips=[{"clip_id": "c0", "num_frames": 2}])
    return Dataset(root)


def test_coco_export_boxes(tmp_path: Path) -> None:
    ds = write_boxes_dataset(tmp_path / "ds")
    out = tmp_path / "coco.json"
    to_coco(ds, out)
    coco = json.loads(out.read_text())
    assert [c["name"] for c in coco["categories"]] == ["car", "truck", "pedestrian", "cyclist"]
    assert [c["id"] for c in coco["categories"]] == [1, 2, 3, 4]
    img0, img1 = coco["images"]
    assert img0 == {
        "id": 1,
        "file_name": "clips/c0/frames/000000.jpg",
        "width": 640,
        "height": 360,
        "clip_id": "c0",
        "frame": 0,
    }
    assert img1["id"] == 2 and img1["file_name"] == "clips/c0/frames/000001.jpg"
    car, cyc, truck = coco["annotations"]
    assert car == {
        "id": 1,
        "image_id": 1,
        "category_id": 1,
        "bbox": [10.0, 20.0, 100.0, 50.0],
        "area": 5000.0,
        "iscrowd": 0,
        "track_id": 3,
    }
    assert cyc["bbox"] == [0.5, 1.5, 2.5, 8.0] and cyc["area"] == 20.0
    assert (cyc["category_id"], cyc["distance_m"], cyc["track_id"]) == (4, 12.5, 4)
    assert (truck["image_id"], truck["category_id"], truck["bbox"]) == (2, 2, [100, 100, 100, 200])


def test_coco_loads_and_evaluates_with_pycocotools(tmp_path: Path) -> None:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    ds = write_boxes_dataset(tmp_path / "ds")
    out = tmp_path / "coco.json"
    to_coco(ds, out)
    gt = COCO(str(out))
    assert sorted(gt.getImgIds()) == [1, 2] and len(gt.getAnnIds(imgIds=[1])) == 2
    dets = [
        {
            "image_id": a["image_id"],
            "category_id": a["category_id"],
            "bbox": a["bbox"],
            "score": 1.0,
        }
        for a in gt.dataset["annotations"]
    ]
    ev = COCOeval(gt, gt.loadRes(dets), "bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0)


def test_coco_unknown_class_names_labels_file(tmp_path: Path) -> None:
    ds = write_boxes_dataset(tmp_path / "ds")
    p = ds.root / "clips/c0/labels.jsonl"
    p.write_text(p.read_text().replace('"truck"', '"tram"'))
    with pytest.raises(FormatError, match=r"labels\.jsonl: frame 1: unknown class 'tram'"):
        to_coco(ds, tmp_path / "coco.json")
    assert not (tmp_path / "coco.json").exists()


def test_bbox_helpers_round_trip() -> None:
    obs = Obstacle(0, "car", [1.0, 2.0, 4.0, 8.0])
    assert obstacle_to_coco_bbox(obs) == [1.0, 2.0, 3.0, 6.0]
    assert obstacle_to_coco_bbox([1, 2, 4, 8]) == [1.0, 2.0, 3.0, 6.0]
    assert coco_bbox_to_box(obstacle_to_coco_bbox(obs)) == obs.box
