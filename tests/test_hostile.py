"""Bad and hostile input, one test per case of the data-safety issue: each builds its hostile
files in a temporary folder, runs the command as a user would (`perception ...`, in this
process so that the files it opens can be watched), and asserts the exit status, one line
naming the file, and that nothing outside the output was changed (hashes) or read. The
demo, generate and model files: tests/test_hostile_run.py."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from dataset_factory import edit_json, edit_label, encode_jpeg
from guards import refused, run, tree_hashes
from hostile_world import SIZE, dataset_commands, split_file, unchanged_outside_out, world

from perception.params import SplitParams

ROOT = Path(__file__).resolve().parents[1]
__all__ = ["world"]  # the fixture, from hostile_world


# ------------------------------------------------------------------ 3. half-way imports


def _tusimple_root(root: Path, raw_files: list[str]) -> Path:
    """A TuSimple root: one label line per raw_file, a 160x96 image for each that lies
    inside root, a straight lane pair on every line."""
    h = list(range(40, 96, 8))
    lines = []
    for raw in raw_files:
        p = root / raw
        if root.resolve() in p.resolve().parents:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(encode_jpeg(np.full((SIZE[1], SIZE[0], 3), 90, np.uint8)))
        lanes = [[40.0 + i for i in range(len(h))], [120.0 - i for i in range(len(h))]]
        lines.append(json.dumps({"lanes": lanes, "h_samples": h, "raw_file": raw}))
    root.mkdir(parents=True, exist_ok=True)
    (root / "label_data_1.json").write_text("\n".join(lines) + "\n")
    return root


def test_import_failing_half_way_leaves_the_previous_dataset_whole(
    world: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = _tusimple_root(world / "tu", ["clips/a/1/20.jpg", "clips/b/1/20.jpg"])
    out = world / "out" / "tusimple"
    assert run(["import", "tusimple", "--root", str(src), "--out", str(out)], capsys).code == 0
    first = tree_hashes(out)
    # new files (the imported frames are hard links of the old ones): clip 2 of 2 fails
    for name, data in (
        ("clips/a/1/20.jpg", encode_jpeg(np.zeros((SIZE[1], SIZE[0], 3), np.uint8))),
        ("clips/b/1/20.jpg", b"\xff\xd8 not a jpeg"),
    ):
        (src / name).unlink()
        (src / name).write_bytes(data)
    line = refused(run(["import", "tusimple", "--root", str(src), "--out", str(out)], capsys))
    assert "label_data_1.json: line 2" in line and "not a readable image" in line
    assert tree_hashes(out) == first  # clip 1 not replaced, the old manifest with it
    assert sorted(p.name for p in out.parent.iterdir()) == ["tusimple"]  # no staging left
    argv = ["validate", str(out), "--report-dir", str(world / "out" / "r"), "--workers", "1"]
    assert run(argv, capsys).code == 0


# ------------------------------------------------------------------ 4. reading outside


@pytest.mark.parametrize("image", ["../../../outside/secret.jpg", "ABSOLUTE", "LINK"])
@pytest.mark.parametrize("command", ["validate", "split", "evaluate", "export"])
def test_a_frame_outside_its_clip_is_refused_naming_the_label_line(
    world: Path, capsys: pytest.CaptureFixture[str], image: str, command: str
) -> None:
    clip = world / "ds" / "clips" / "c0001"
    if image == "LINK":  # frames/000001.jpg is a link to a file outside the clip
        (clip / "frames" / "000001.jpg").unlink()
        (clip / "frames" / "000001.jpg").symlink_to(world / "outside" / "secret.jpg")
    else:
        path = str(world / "outside" / "secret.jpg") if image == "ABSOLUTE" else image
        edit_label(clip, 1, lambda d: d.update(image=path))
    outcome = unchanged_outside_out(world, lambda: run(dataset_commands(world)[command], capsys))
    line = refused(outcome, str(clip / "labels.jsonl"))
    assert "line 2" in line or "frame 1" in line, line
    assert "outside" in line and not (world / "out" / "s.json").exists()


def test_demo_refuses_a_clip_frame_outside_its_clip(
    world: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clip = world / "ds" / "clips" / "c0001"
    edit_label(clip, 0, lambda d: d.update(image=str(world / "outside" / "secret.jpg")))
    argv = ["demo", str(clip), "--model", "none.onnx", "--jsonl", str(world / "out" / "o.jsonl")]
    outcome = unchanged_outside_out(world, lambda: run(argv, capsys))
    refused(outcome, str(clip / "labels.jsonl"), "line 1", "absolute path")


@pytest.mark.parametrize("command", ["validate", "split", "evaluate", "export"])
def test_a_clip_id_outside_clips_is_refused_naming_the_manifest(
    world: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    manifest = world / "ds" / "manifest.json"
    edit_json(manifest, lambda m: m["clips"][1].update(clip_id="../../outside/clip"))
    if command == "evaluate":  # evaluate reaches clips through the splits file
        edit_json(split_file(world), lambda s: s.update(train=["c0000", "../../outside/clip"]))
    outcome = unchanged_outside_out(world, lambda: run(dataset_commands(world)[command], capsys))
    refused(outcome, str(manifest), "../../outside/clip")


@pytest.mark.parametrize("raw_file", ["../outside/secret.jpg", "ABSOLUTE"])
def test_tusimple_raw_file_outside_the_root_is_refused(
    world: Path, capsys: pytest.CaptureFixture[str], raw_file: str
) -> None:
    raw = str(world / "outside" / "secret.jpg") if raw_file == "ABSOLUTE" else raw_file
    src = _tusimple_root(world / "tu", ["clips/a/1/20.jpg", raw])
    argv = ["import", "tusimple", "--root", str(src), "--out", str(world / "out" / "t")]
    outcome = unchanged_outside_out(world, lambda: run(argv, capsys))
    refused(outcome, "label_data_1.json: line 2", "raw_file")
    assert not (world / "out" / "t").exists()
    assert os.stat(world / "outside" / "secret.jpg").st_nlink == 1  # never hard-linked


def _bdd(world: Path, frames: list[dict]) -> list[str]:
    images = world / "bdd"
    images.mkdir(exist_ok=True)
    (images / "a.jpg").write_bytes(encode_jpeg(np.full((SIZE[1], SIZE[0], 3), 90, np.uint8)))
    det = images / "det.json"
    det.write_text(json.dumps(frames))
    out = str(world / "out" / "b")
    return ["import", "bdd100k", "--images", str(images), "--det-labels", str(det), "--out", out]


def test_bdd100k_name_outside_the_images_is_refused(
    world: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = _bdd(world, [{"name": "a.jpg"}, {"name": "../outside/secret.jpg", "labels": []}])
    outcome = unchanged_outside_out(world, lambda: run(argv, capsys))
    refused(outcome, "det.json: frame ../outside/secret.jpg", "leads outside")
    assert os.stat(world / "outside" / "secret.jpg").st_nlink == 1


# ------------------------------------------------------------------ 5. FIFOs and devices


@pytest.mark.parametrize("command", ["validate", "split", "evaluate", "export"])
def test_a_fifo_frame_is_refused_not_waited_for(
    world: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    frame = world / "ds" / "clips" / "c0001" / "frames" / "000001.jpg"
    frame.unlink()
    os.mkfifo(frame)
    outcome = unchanged_outside_out(
        world, lambda: run(dataset_commands(world)[command], capsys, seconds=30)
    )
    if command == "export":  # writes labels only: never opens a frame
        assert outcome.code == 0
    else:
        refused(outcome, str(frame), "not a regular file")


def test_a_device_as_frame_is_refused(world: Path, capsys: pytest.CaptureFixture[str]) -> None:
    edit_label(world / "ds" / "clips" / "c0001", 1, lambda d: d.update(image="/dev/zero"))
    outcome = run(dataset_commands(world)["validate"], capsys, seconds=30)
    refused(outcome, "labels.jsonl", "line 2", "/dev/zero")


# ------------------------------------------------------------------ 9. split and validate


def test_split_leaves_no_file_when_the_dataset_is_bad(
    world: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = world / "ds" / "clips" / "c0002" / "frames" / "000002.jpg"
    frame.unlink()
    outcome = unchanged_outside_out(world, lambda: run(dataset_commands(world)["split"], capsys))
    refused(outcome, str(frame), "missing file")
    assert not (world / "out").exists()


def test_a_full_disk_is_one_line_naming_the_output_and_leaves_no_file(
    world: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """write() on a full disk raises ENOSPC with no file name; the error must still say
    which output could not be written, and no temporary or partial file stays behind."""
    real_fdopen = os.fdopen

    class Full:
        def __init__(self, f: object) -> None:
            self.f = f

        def __enter__(self) -> Full:
            return self

        def __exit__(self, *exc: object) -> None:
            self.f.close()  # type: ignore[attr-defined]

        def write(self, data: bytes) -> int:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def fdopen(fd: int, mode: str = "r", *a: object, **k: object) -> object:
        f = real_fdopen(fd, mode, *a, **k)  # type: ignore[call-overload]
        return Full(f) if "w" in mode else f

    monkeypatch.setattr(os, "fdopen", fdopen)
    outcome = unchanged_outside_out(world, lambda: run(dataset_commands(world)["split"], capsys))
    line = refused(outcome, "s.json", "No space left on device")
    assert "cannot write" in line, line
    out = world / "out"
    assert not out.exists() or not list(out.iterdir()), list(out.iterdir())


def test_validate_report_is_whole_after_an_error_and_absent_when_drawing_fails(
    world: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for k in range(3):  # a real error in every clip: samples.png has no clean clip to draw
        for c in ("c0000", "c0001", "c0002"):
            edit_label(world / "ds" / "clips" / c, k, lambda d: d["obstacles"][0].update(cls="bus"))
    refused(run(dataset_commands(world)["validate"], capsys), "labels.jsonl", "unknown class")
    report = world / "out" / "r"
    assert sorted(p.name for p in report.iterdir()) == sorted(
        [
            *("report.json", "profile.json", "class_counts.png", "box_sizes.png"),
            *("brightness.png", "scenario_mix.png", "samples.png"),
        ]
    )
    assert json.loads((report / "report.json").read_text())["num_errors"] == 9
    shutil.rmtree(world / "out")
    from perception.dataset import report as report_module

    def broken(*_: object) -> bytes:
        raise RuntimeError("drawing failed")

    monkeypatch.setattr(report_module, "draw_samples", broken)
    with pytest.raises(RuntimeError):
        from perception.dataset.validate import run_validate

        run_validate(world / "ds", report, workers=1)
    assert not report.exists()  # rendered before written: nothing half-written


# ------------------------------------------------------------------ 10. NaN and Infinity


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_numbers_are_refused_at_import(
    world: Path, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    src = _tusimple_root(world / "tu", ["clips/a/1/20.jpg", "clips/a/1/19.jpg"])
    labels = src / "label_data_1.json"
    lines = labels.read_text().splitlines()
    lines[1] = lines[1].replace("[40.0, ", f"[{value}, ", 1)
    labels.write_text("\n".join(lines) + "\n")
    argv = ["import", "tusimple", "--root", str(src), "--out", str(world / "out" / "t")]
    refused(run(argv, capsys), "label_data_1.json: line 2")
    bdd = _bdd(world, [{"name": "a.jpg", "labels": []}])
    det = Path(bdd[bdd.index("--det-labels") + 1])
    det.write_text(
        '[{"name": "a.jpg", "labels": [{"category": "car", "box2d": '
        f'{{"x1": {value}, "y1": 1, "x2": 9, "y2": 9}}}}]}}]'
    )
    refused(run(bdd, capsys), "det.json")
    assert not (world / "out").exists()


def test_validate_refuses_nan_in_labels_and_evaluate_writes_strict_json(
    world: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    strict = {"parse_constant": lambda c: pytest.fail(f"{c} in a written JSON file")}
    assert run(dataset_commands(world)["evaluate"], capsys).code == 0
    written = sorted((world / "out" / "e").glob("*.json"))
    assert len(written) == 6
    for p in written:  # tusimple_*.json are JSON lines, the others one document
        lines = p.read_text().splitlines() if p.name.startswith("tusimple") else [p.read_text()]
        for text in lines:
            json.loads(text, **strict)  # type: ignore[arg-type]
    labels = world / "ds" / "clips" / "c0001" / "labels.jsonl"
    lines = labels.read_text().splitlines()
    lines[1] = lines[1].replace('"box": [', '"box": [NaN, ', 1)
    labels.write_text("\n".join(lines) + "\n")
    refused(run(dataset_commands(world)["validate"], capsys), str(labels), "line 2", "NaN")
    refused(run(dataset_commands(world)["evaluate"], capsys), str(labels), "line 2", "NaN")


def test_evaluate_drops_non_finite_predictions() -> None:
    from perception.evaluate import Frame, predict_one
    from serving.geometry import Calib
    from serving.postprocess import Detections, FramePrediction, Lanes

    class Broken:
        name = "broken"

        def __call__(self, img: np.ndarray, calib: Calib, rows: np.ndarray) -> FramePrediction:
            boxes = np.array([[1, 2, 3, 4], [np.nan, 2, 3, 4], [1, 2, np.inf, 4]], np.float32)
            dets = Detections(boxes, np.array([0.9, 0.8, 0.7], np.float32), np.zeros(3, np.int64))
            return FramePrediction(Lanes(np.zeros((0, 2), np.float32), rows, np.zeros(0)), dets)

    frame = Frame(None, None, Calib.default(160, 96), [40, 60], {}, 1, "x.jpg")  # type: ignore[arg-type]
    r = predict_one(Broken(), np.zeros((96, 160, 3), np.uint8), frame)
    assert r.boxes.tolist() == [[1, 2, 3, 4]] and r.scores.tolist() == pytest.approx([0.9])


# ------------------------------------------------------------------ 13. corrupt files


@pytest.mark.parametrize("kind", ["garbage", "pickled"])
def test_a_corrupt_or_pickled_checkpoint_is_one_line(
    world: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    model = world / "model.pt"
    if kind == "garbage":
        model.write_bytes(b"PK\x03\x04 not a zip archive at all" * 10)
    else:  # weights-only loading refuses pickled code
        torch.save({"format": "perception-model/1", "net": SplitParams()}, model)
    argv = [*dataset_commands(world)["evaluate"], "--model", str(model)]
    outcome = unchanged_outside_out(world, lambda: run(argv, capsys))
    refused(outcome, str(model))

    from perception.bench.variants import Builder
    from serving.config import Settings
    from serving.geometry import Calib
    from serving.target import load_profile

    profile = load_profile(ROOT / "hw" / "cpu-2core.yaml")
    builder = Builder(profile, world, Calib.default(*SIZE), Settings(), False, 20.0)
    variant = builder.build("pytorch")
    builder.close()
    assert variant.status.startswith(f"skipped: {model}: not a ")
    assert "\n" not in variant.status


@pytest.mark.parametrize(
    ("labels", "what"),
    [
        (["car"], 'labels[0]: "car" is not an object'),
        ([{"category": ["car"], "box2d": {}}], "labels[0].category"),
        ([{"category": "car", "box2d": "1 2 3 4"}], "labels[0].box2d"),
        ([{"category": "car", "box2d": {"x1": 1, "y1": 1, "x2": 1e400, "y2": 9}}], "1e400"),
        ([{"category": "lane", "poly2d": [{"vertices": "none"}]}], "labels[0].poly2d"),
    ],
)
def test_malformed_bdd100k_labels_name_the_file_and_frame(
    world: Path, capsys: pytest.CaptureFixture[str], labels: list, what: str
) -> None:
    argv = _bdd(world, [{"name": "a.jpg", "labels": labels}])
    if what == "1e400":  # json.dumps cannot write it: put the text in by hand
        det = Path(argv[argv.index("--det-labels") + 1])
        det.write_text(det.read_text().replace("Infinity", "1e400"))
    line = refused(run(argv, capsys), "det.json")
    assert what in line or (what == "1e400" and "overflows" in line), line
    assert not (world / "out").exists()


@pytest.mark.parametrize(("key", "value"), [("fx", 0.0), ("fy", -3.0), ("image_width", 0)])
def test_a_calibration_that_would_give_nan_is_refused(
    world: Path, capsys: pytest.CaptureFixture[str], key: str, value: float
) -> None:
    calib = world / "ds" / "clips" / "c0001" / "calib.json"
    edit_json(calib, lambda d: d.update({key: value}))
    outcome = run(dataset_commands(world)["validate"], capsys)
    refused(outcome, str(calib), key, "must be positive")
