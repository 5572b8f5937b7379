"""The BDD100K importer (Scalabel JSON boxes and lane polylines) on tiny synthetic fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dataset_factory import lane_label, write_bdd

from perception.dataset.bdd100k import clip_box, import_bdd100k
from perception.dataset.schema import Dataset, FormatError, FrameLabel, Lane
from serving.geometry import Calib

H_SAMPLES = list(range(160, 720, 10))


def lanes_by_slot(label: FrameLabel) -> dict[str, Lane]:
    return {lane.slot: lane for lane in label.lanes}


@pytest.fixture
def bdd(tmp_path: Path) -> dict[str, Path]:
    return write_bdd(tmp_path)


def test_bdd_import_groups_tags_and_boxes(bdd: dict[str, Path]) -> None:
    report = import_bdd100k(bdd["images"], bdd["det"], bdd["out"], lane_labels=bdd["lanes"])
    ds = Dataset(bdd["out"])
    assert ds.clip_ids() == ["bdd100k-a", "bdd100k-c", "bdd100k-d"]
    assert (report.clips, report.frames) == (3, 4)
    assert report.dropped["boxes of category 'traffic light'"] == 1
    assert report.dropped["boxes empty after clipping to the image"] == 1
    tags = {c.clip_id: c.meta.tags for c in ds.clips()}
    assert tags["bdd100k-a"] == {
        "time_of_day": "day",
        "weather": "clear",
        "road": "unknown",
        "traffic": "unknown",
    }
    assert (tags["bdd100k-c"]["time_of_day"], tags["bdd100k-c"]["weather"]) == ("night", "rain")
    assert (tags["bdd100k-d"]["time_of_day"], tags["bdd100k-d"]["weather"]) == ("dusk", "fog")
    assert [m["tags"] for m in ds.manifest["clips"]] == list(tags.values())

    clip = ds.clip("bdd100k-a")
    a, b = clip.labels
    assert (a.frame, a.timestamp_ns, b.frame, b.timestamp_ns) == (0, 0, 1, 50_000_000)
    assert clip.frame_path(b).read_bytes() == (bdd["images"] / "b.jpg").read_bytes()
    assert [o.cls for o in a.obstacles] == [
        "car",
        "truck",
        "pedestrian",
        "cyclist",
        "cyclist",
        "car",
    ]
    assert [o.cls for o in b.obstacles] == ["truck", "cyclist", "pedestrian", "cyclist"]
    ids = [o.track_id for o in a.obstacles + b.obstacles]
    assert len(set(ids)) == len(ids) == 10
    car, clipped = a.obstacles[0], a.obstacles[5]
    assert car.box == [100.5, 200.0, 300.0, 400.0]
    assert (car.occlusion, car.truncation) == (0.5, 0.0)
    assert clipped.box == [1200.0, 0.0, 1279.0, 100.0]
    assert clipped.occlusion == 0.0
    assert clipped.truncation == pytest.approx(1 - (79 * 100) / (150 * 110), abs=1e-4)
    assert a.obstacles[3].truncation == 0.5
    assert clip.meta.h_samples == H_SAMPLES and clip.calib == Calib.default(1280, 720)
    assert ds.manifest["importer"]["frames_are_independent"] is True


def test_bdd_lanes_resampled_and_slotted(bdd: dict[str, Path]) -> None:
    report = import_bdd100k(bdd["images"], bdd["det"], bdd["out"], lane_labels=bdd["lanes"])
    a = Dataset(bdd["out"]).clip("bdd100k-a").labels[0]
    lanes = lanes_by_slot(a)
    assert sorted(lanes) == ["ego_left", "ego_right", "outer_left", "outer_right"]
    row = H_SAMPLES.index
    left, right = lanes["ego_left"], lanes["ego_right"]
    assert left.x_at_h[row(710)] == pytest.approx(400 + 200 * 10 / 320)
    assert left.x_at_h[row(400)] == pytest.approx(600.0)
    assert left.x_at_h[row(390)] == -2 and left.points[0] == [406.25, 710.0]
    assert right.x_at_h[row(710)] == pytest.approx(900 - 200 * 10 / 320)
    assert (left.style, right.style) == ("solid", "dashed")
    outer = lanes["outer_left"]
    assert outer.x_at_h[row(600)] == pytest.approx(150.0, abs=0.01)
    assert outer.x_at_h[row(710)] == -2 and outer.x_at_h[row(700)] == pytest.approx(100.0)
    assert (lanes["outer_right"].style, lanes["outer_right"].color) == ("double", "yellow")
    assert report.dropped["lane markings across the road"] == 1
    b = Dataset(bdd["out"]).clip("bdd100k-a").labels[1]
    assert b.lanes == []


def test_bdd_lanes_from_det_file_and_frames_per_clip(bdd: dict[str, Path]) -> None:
    frames = json.loads(bdd["det"].read_text())
    frames[0]["labels"].append(
        lane_label("lane/single yellow", [[300, 720], [600, 400]], laneStyle="solid")
    )
    bdd["det"].write_text(json.dumps(frames))
    import_bdd100k(bdd["images"], bdd["det"], bdd["out"], frames_per_clip=1)
    ds = Dataset(bdd["out"])
    assert ds.clip_ids() == ["bdd100k-a", "bdd100k-b", "bdd100k-c", "bdd100k-d"]
    (b,) = ds.clip("bdd100k-b").labels
    assert [(lane.slot, lane.color) for lane in b.lanes] == [("ego_left", "yellow")]
    assert ds.clip("bdd100k-a").labels[0].lanes == []


def test_bdd_imported_dataset_passes_validation(bdd: dict[str, Path]) -> None:
    validate = pytest.importorskip("perception.dataset.validate")
    import_bdd100k(bdd["images"], bdd["det"], bdd["out"], lane_labels=bdd["lanes"])
    assert validate.validate_dataset(bdd["out"], workers=1).errors == []


def test_bdd_bad_inputs_name_the_file(bdd: dict[str, Path]) -> None:
    (bdd["images"] / "c.jpg").unlink()
    with pytest.raises(FormatError, match=r"det\.json: frame c\.jpg: image .*c\.jpg not found"):
        import_bdd100k(bdd["images"], bdd["det"], bdd["out"])
    bdd["det"].write_text("[{")
    with pytest.raises(FormatError, match=r"det\.json: not valid JSON"):
        import_bdd100k(bdd["images"], bdd["det"], bdd["out"])
    bdd["det"].write_text(
        json.dumps([{"name": "a.jpg", "labels": [{"category": "car", "box2d": {"x1": 1}}]}])
    )
    with pytest.raises(FormatError, match=r"det\.json: frame a\.jpg: malformed box2d"):
        import_bdd100k(bdd["images"], bdd["det"], bdd["out"])
    with pytest.raises(FormatError, match=r"nope\.json: missing file"):
        import_bdd100k(bdd["images"], bdd["det"].with_name("nope.json"), bdd["out"])


def test_clip_box() -> None:
    assert clip_box([-5, 700, 1300, 730], 1280, 720) == [0.0, 700.0, 1279.0, 719.0]
