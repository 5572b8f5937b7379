"""The data quality gate: one test per defect class, each corrupting a fresh valid dataset in
exactly one way and checking that the failure names the file, the clip, the frame and the
field; plus the report of a valid dataset and the imbalance warning."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from dataset_factory import FRAME_DT_NS, edit_json, edit_label, encode_jpeg, make_dataset

from perception.dataset import validate
from perception.dataset.schema import FormatError, sensors_to_csv
from perception.dataset.split import SPLITS_VERSION
from perception.params import ValidateParams

CLIP = "c0001"
FRAME = 2
REPORT_FILES = (
    "report.json",
    "class_counts.png",
    "box_sizes.png",
    "brightness.png",
    "scenario_mix.png",
    "samples.png",
    "profile.json",
)


@pytest.fixture
def dataset(tmp_path: Path) -> Callable[..., Path]:
    """Factory: a fresh valid dataset under tmp_path (keyword args go to make_dataset)."""
    counter = iter(range(1000))

    def make(**kw: object) -> Path:
        return make_dataset(tmp_path / f"ds{next(counter)}", **kw)  # type: ignore[arg-type]

    return make


def fails(
    root: Path, path: Path, frame: int | None, fld: str, clip: str = CLIP, **kw: object
) -> str:
    """Run the gate (no report), assert it fails with one line that starts with path and
    names clip, frame and field; return the line."""
    with pytest.raises(validate.ValidationError) as exc:
        validate.run_validate(root, None, workers=1, **kw)  # type: ignore[arg-type]
    msg = str(exc.value)
    assert "\n" not in msg
    assert msg.startswith(f"{path}: clip {clip}"), msg
    if frame is not None:
        assert f" frame {frame} " in msg, msg
    assert fld in msg, msg
    return msg


def test_valid_dataset_passes_and_writes_report(dataset, tmp_path):
    root = dataset(n_clips=3, frames=5)
    report_dir = tmp_path / "report"
    res = validate.run_validate(root, report_dir, workers=2)  # exercises the process pool
    assert res.ok and not res.errors
    for name in REPORT_FILES:
        assert (report_dir / name).stat().st_size > 0, name
    assert (report_dir / "samples.png").stat().st_size < 3_000_000
    report = json.loads((report_dir / "report.json").read_text())
    counts = report["counts"]
    assert counts["clips"] == 3 and counts["frames"] == 15 and counts["objects"] == 30
    assert sum(counts["objects_per_class"].values()) == 30
    assert counts["lanes_per_slot"] == {
        "ego_left": 15,
        "ego_right": 15,
        "outer_left": 0,
        "outer_right": 0,
    }
    assert counts["tags"]["time_of_day"] == {"day": 1, "dusk": 1, "night": 1}
    assert report["num_errors"] == 0 and report["ok"]
    profile = json.loads((report_dir / "profile.json").read_text())
    hist = profile["image"]["brightness"]
    assert len(hist["counts"]) == len(hist["bin_edges"]) - 1 and hist["n"] > 0
    assert profile["labels"]["objects_per_frame"]["n"] == 15


def test_profile_out_and_many_errors_summary(dataset, tmp_path):
    root = dataset()
    for k in range(3):
        edit_label(root / "clips" / CLIP, k, lambda d: d["obstacles"][0].update(cls="bus"))
    with pytest.raises(validate.ValidationError, match=r"and 2 more errors, see .*report.json"):
        validate.run_validate(root, tmp_path / "r", workers=1, profile_out=tmp_path / "p.json")
    assert (tmp_path / "p.json").exists()
    assert json.loads((tmp_path / "r" / "report.json").read_text())["num_errors"] == 3


@pytest.mark.parametrize("kind", ["garbage", "truncated", "empty"])
def test_unreadable_or_truncated_image(dataset, kind):
    root = dataset()
    img = root / "clips" / CLIP / "frames" / f"{FRAME:06d}.jpg"
    data = img.read_bytes()
    img.write_bytes(
        {"garbage": b"not a jpeg" * 50, "truncated": data[: len(data) * 2 // 3], "empty": b""}[kind]
    )
    msg = fails(root, img, FRAME, "image")
    assert ("truncated" in msg) if kind == "truncated" else ("unreadable" in msg)


def test_image_size_disagrees_with_calib(dataset):
    root = dataset()
    img = root / "clips" / CLIP / "frames" / f"{FRAME:06d}.jpg"
    img.write_bytes(encode_jpeg(np.full((160, 320, 3), 90, np.uint8)))
    assert "size 320x160" in fails(root, img, FRAME, "image")


def test_a_frame_one_pixel_off_is_caught(dataset):
    """Frames decode at 1/4 size; the size comes from the header, so a frame one pixel
    narrower than calib.json (which decodes as wide at 1/4) still fails the gate."""
    root = dataset()
    img = root / "clips" / CLIP / "frames" / f"{FRAME:06d}.jpg"
    h, w = cv2.imread(str(img)).shape[:2]
    img.write_bytes(encode_jpeg(np.full((h, w - 1, 3), 90, np.uint8)))
    assert f"size {w - 1}x{h}" in fails(root, img, FRAME, "image")


@pytest.mark.parametrize(
    ("box", "what"),
    [
        ([300.0, 10.0, 330.0, 40.0], "outside"),
        ([-3.0, 10.0, 30.0, 40.0], "outside"),
        ([10.0, 20.0, 10.0, 40.0], "zero area"),
        ([50.0, 20.0, 10.0, 40.0], "negative area"),
    ],
)
def test_bad_box(dataset, box, what):
    root = dataset()
    edit_label(root / "clips" / CLIP, FRAME, lambda d: d["obstacles"][1].update(box=box))
    assert what in fails(root, root / "clips" / CLIP / "labels.jsonl", FRAME, "obstacles[1].box")


def test_box_within_half_pixel_tolerance_passes(dataset):
    root = dataset()
    edit_label(
        root / "clips" / CLIP,
        FRAME,
        lambda d: d["obstacles"][1].update(box=[-0.4, 0.0, 320.4, 180.0]),
    )
    assert validate.validate_dataset(root, workers=1).ok


def test_unknown_class(dataset):
    root = dataset()
    edit_label(root / "clips" / CLIP, FRAME, lambda d: d["obstacles"][0].update(cls="bus"))
    fails(root, root / "clips" / CLIP / "labels.jsonl", FRAME, "obstacles[0].cls")


@pytest.mark.parametrize(
    ("points", "what"),
    [
        ([[50.0, 170.0], [60.0, 100.0], [70.0, 120.0]], "v strictly decreasing"),
        ([[50.0, 170.0], [60.0, 170.0]], "v strictly decreasing"),
        ([[50.0, 170.0], [400.0, 100.0]], "off the 320x180 image"),
        ([[50.0, 185.0], [60.0, 100.0]], "off the 320x180 image"),
    ],
)
def test_bad_lane_points(dataset, points, what):
    root = dataset()
    edit_label(root / "clips" / CLIP, FRAME, lambda d: d["lanes"][1].update(points=points))
    msg = fails(root, root / "clips" / CLIP / "labels.jsonl", FRAME, "lanes[1].points[")
    assert what in msg


@pytest.mark.parametrize(("slot", "what"), [("middle", "unknown slot"), ("ego_left", "twice")])
def test_bad_lane_slot(dataset, slot, what):
    root = dataset()
    edit_label(root / "clips" / CLIP, FRAME, lambda d: d["lanes"][1].update(slot=slot))
    assert what in fails(root, root / "clips" / CLIP / "labels.jsonl", FRAME, "lanes[1].slot")


def _rewrite_sensors(clip_dir: Path, fn: Callable[[np.ndarray], np.ndarray]) -> None:
    p = clip_dir / "sensors.csv"
    rows = np.loadtxt(p, delimiter=",", skiprows=1, dtype=np.float64)
    p.write_text(sensors_to_csv(fn(rows)))


def test_sensor_timestamps_not_increasing(dataset):
    root = dataset()

    def swap(rows: np.ndarray) -> np.ndarray:
        rows[[4, 5]] = rows[[5, 4]]
        return rows

    _rewrite_sensors(root / "clips" / CLIP, swap)
    msg = fails(root, root / "clips" / CLIP / "sensors.csv", None, "line 7 t_ns")
    assert "strictly increase" in msg


def test_frame_without_sensor_sample(dataset):
    root = dataset()
    t_frame = 1_000_000_000 + FRAME * FRAME_DT_NS
    _rewrite_sensors(root / "clips" / CLIP, lambda r: r[np.abs(r[:, 0] - t_frame) > 20_000_000])
    msg = fails(
        root,
        root / "clips" / CLIP / "labels.jsonl",
        FRAME,
        "timestamp_ns",
        params=ValidateParams(sync_tolerance_ms=15.0),
    )
    assert "no sensor sample within 15 ms" in msg


def test_frame_timestamps_not_increasing(dataset):
    root = dataset()
    edit_label(
        root / "clips" / CLIP,
        FRAME,
        lambda d: d.update(timestamp_ns=d["timestamp_ns"] - 2 * FRAME_DT_NS),
    )
    assert "not after" in fails(root, root / "clips" / CLIP / "labels.jsonl", FRAME, "timestamp_ns")


@pytest.mark.parametrize(
    "name", ["calib.json", "meta.json", "labels.jsonl", "sensors.csv", "image", "clip"]
)
def test_missing_file(dataset, name):
    root = dataset()
    clip_dir = root / "clips" / CLIP
    if name == "image":
        path = clip_dir / "frames" / f"{FRAME:06d}.jpg"
        path.unlink()
        assert "missing file" in fails(root, path, FRAME, "image")
    elif name == "clip":
        shutil.rmtree(clip_dir)
        assert "missing clip folder" in fails(root, clip_dir, None, "")
    else:
        (clip_dir / name).unlink()
        assert "missing file" in fails(root, clip_dir / name, None, "")


def test_missing_manifest(dataset):
    root = dataset()
    (root / "manifest.json").unlink()
    with pytest.raises(FormatError, match=r"manifest.json: missing file"):
        validate.run_validate(root, None, workers=1)


@pytest.mark.parametrize("where", ["meta", "manifest"])
def test_frame_count_disagrees(dataset, where):
    root = dataset()
    path = root / "clips" / CLIP / "meta.json" if where == "meta" else root / "manifest.json"
    if where == "meta":
        edit_json(path, lambda d: d.update(num_frames=7))
    else:
        edit_json(path, lambda d: d["clips"][1].update(num_frames=7))
    assert "7 but labels.jsonl has 5 frames" in fails(root, path, None, "num_frames")


def _write_splits(path: Path, train: list[str], val: list[str], test: list[str]) -> Path:
    path.write_text(
        json.dumps({"schema_version": SPLITS_VERSION, "train": train, "val": val, "test": test})
    )
    return path


@pytest.mark.parametrize("kind", ["same_clip", "same_image"])
def test_leakage_between_splits(dataset, tmp_path, kind):
    root = dataset()
    if kind == "same_clip":
        splits = _write_splits(tmp_path / "s.json", ["c0000", CLIP], [CLIP], ["c0002"])
        assert "in both train and val" in fails(root, splits, None, "", splits_path=splits)
    else:
        splits = _write_splits(tmp_path / "s.json", ["c0000"], [CLIP], ["c0002"])
        src = root / "clips" / "c0000" / "frames" / "000000.jpg"
        dst = root / "clips" / CLIP / "frames" / f"{FRAME:06d}.jpg"
        shutil.copy(src, dst)
        msg = fails(root, dst, FRAME, "image", splits_path=splits)
        assert "identical to clip c0000 frame 0" in msg


def test_imbalance_warning(dataset, tmp_path, capsys):
    root = dataset(classes=lambda c, k: ("car", "car") if (c, k) != (0, 0) else ("car", "truck"))
    res = validate.run_validate(
        root, tmp_path / "r", ValidateParams(imbalance_ratio=5.0), workers=1
    )
    assert res.ok
    err = capsys.readouterr().err
    assert "truck 1" in err and "no pedestrian instances" in err
    assert json.loads((tmp_path / "r" / "report.json").read_text())["num_warnings"] == 3


def test_image_stats_sampled(dataset):
    root = dataset(frames=3)
    res = validate.validate_dataset(root, workers=1)
    assert sum(len(r.image_stats) for r in res.clips) == 9  # few frames: every one sampled
    night = next(r for r in res.clips if r.tags["time_of_day"] == "night")
    assert all(0 < s["brightness"] < 255 and s["sharpness"] > 0 for s in night.image_stats)


def _params_file(tmp_path: Path) -> Path:
    p = tmp_path / "params.yaml"
    p.write_text(
        "validate:\n  imbalance_ratio: 25.0\n  sync_tolerance_ms: 15.0\n"
        "split:\n  seed: 1\n  val: 0.34\n  test: 0.33\n"
    )
    return p


def test_cli_validate(dataset, tmp_path, capsys):
    from perception.cli import main

    root, params = dataset(), _params_file(tmp_path)
    report = tmp_path / "r"
    args = [
        "validate",
        str(root),
        "--report-dir",
        str(report),
        "--params",
        str(params),
        "--workers",
        "1",
    ]
    assert main(args) == 0
    assert (report / "profile.json").exists()
    edit_label(root / "clips" / CLIP, FRAME, lambda d: d["obstacles"][0].update(cls="bus"))
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "labels.jsonl: clip c0001 frame 2 obstacles[0].cls" in err[0]


def test_wrong_json_types_are_reported_not_raised(dataset):
    root = dataset()
    edit_label(root / "clips" / CLIP, FRAME, lambda d: d["obstacles"][0].update(box=None))
    msg = fails(root, root / "clips" / CLIP / "labels.jsonl", None, "")
    assert f"line {FRAME + 1}: malformed label (obstacles[0].box: null is not a list" in msg


def test_validate_by_hand_writes_beside_its_dataset(dataset, tmp_path, monkeypatch, capsys):
    """`perception validate OTHER` from the project folder never touches the pipeline's
    reports/data/ (profile.json is what the split stage depends on): without --report-dir the
    report goes beside the dataset, <dir>-report."""
    from perception.cli import main

    root = dataset()
    project = tmp_path / "project"
    (project / "reports" / "data").mkdir(parents=True)
    (project / "reports" / "data" / "profile.json").write_text("{}")
    shutil.copy(Path(__file__).resolve().parents[1] / "params.yaml", project / "params.yaml")
    monkeypatch.chdir(project)
    assert main(["validate", str(root), "--workers", "1"]) == 0
    assert (project / "reports" / "data" / "profile.json").read_text() == "{}"
    assert sorted(p.name for p in (project / "reports" / "data").iterdir()) == ["profile.json"]
    report = root.with_name(f"{root.name}-report")
    assert (report / "report.json").is_file() and (report / "profile.json").is_file()
    assert str(report) in capsys.readouterr().out
