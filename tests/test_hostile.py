"""Bad and hostile input, one test per case of the data-safety issue: each builds its hostile
files in a temporary folder, runs the command as a user would (`perception ...`, in this
process so that the files it opens can be watched), and asserts the exit status, one line
naming the file, and that nothing outside the output was changed (hashes) or read."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from dataset_factory import edit_json, edit_label, encode_jpeg, make_dataset
from guards import Outcome, none_inside, refused, run, tree_hashes

from perception.params import SplitParams
from serving.contract import tusimple_h_samples

ROOT = Path(__file__).resolve().parents[1]
SIZE = (160, 96)  # small frames: every command here runs in well under a second


@pytest.fixture
def world(tmp_path: Path) -> Path:
    """tmp_path with a valid dataset ds/ (3 clips of 3 frames), splits.json with every clip
    in train, and a folder outside/ that no command may read: a valid JPEG and a copy of a
    whole clip."""
    make_dataset(tmp_path / "ds", n_clips=3, frames=3, size=SIZE)
    n_h = len(tusimple_h_samples(SIZE[1]))  # TuSimple xs, which evaluate's outputs need
    for clip in (tmp_path / "ds" / "clips").iterdir():
        for k in range(3):
            edit_label(clip, k, lambda d: [lane.update(x_at_h=[-2.0] * n_h) for lane in d["lanes"]])
    splits = {"schema_version": 1, "train": ["c0000", "c0001", "c0002"], "val": [], "test": []}
    (tmp_path / "splits.json").write_text(json.dumps(splits))
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.jpg").write_bytes(encode_jpeg(np.full((SIZE[1], SIZE[0], 3), 7, np.uint8)))
    shutil.copytree(tmp_path / "ds" / "clips" / "c0000", outside / "clip")
    return tmp_path


def _split_file(world: Path) -> Path:
    return world / "splits.json"


def dataset_commands(world: Path) -> dict[str, list[str]]:
    """The commands that read a dataset, each writing only into world/out."""
    ds, out = str(world / "ds"), world / "out"
    return {
        "validate": ["validate", ds, "--report-dir", str(out / "r"), "--workers", "1"],
        "split": ["split", ds, "--out", str(out / "s.json")],
        "evaluate": [
            *("evaluate", "--data", ds, "--splits", str(_split_file(world))),
            *("--out", str(out / "e"), "--split", "train"),
        ],
        "export": ["export-labels", "coco", "--data", ds, "--out", str(out / "coco.json")],
    }


def _unchanged_outside_out(world: Path, fn: Callable[[], Outcome]) -> Outcome:
    """Run fn; assert every file of world except out/ is byte for byte what it was and
    nothing in outside/ was opened."""
    before = tree_hashes(world, skip=(world / "out",))
    outcome = fn()
    assert tree_hashes(world, skip=(world / "out",)) == before
    none_inside(outcome.opened, world / "outside")
    return outcome


# ------------------------------------------------------------------ 1. the demo's outputs


def _video(path: Path, n: int = 3) -> Path:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 20.0, SIZE)
    for i in range(n):
        w.write(np.full((SIZE[1], SIZE[0], 3), 40 * i, np.uint8))
    w.release()
    return path


@pytest.mark.parametrize(
    ("flag", "target", "what"),
    [
        ("--out", "in.mp4", "is the input"),
        ("--jsonl", "in.mp4", "is the input"),
        ("--out", "hardlink.mp4", "is the input"),
        ("--jsonl", "notes.txt", "already exists"),
        ("--out", "folder", "is not a regular file"),
    ],
)
def test_demo_refuses_outputs_that_would_destroy_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, target: str, what: str
) -> None:
    video = _video(tmp_path / "in.mp4")
    os.link(video, tmp_path / "hardlink.mp4")
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "folder").mkdir()
    before = tree_hashes(tmp_path)
    argv = [
        "demo",
        str(video),
        "--model",
        str(tmp_path / "none.onnx"),
        flag,
        str(tmp_path / target),
    ]
    refused(run(argv, capsys), target, what)
    assert tree_hashes(tmp_path) == before


def test_demo_replaces_an_output_only_when_asked_and_never_its_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], onnx_model: Path
) -> None:
    video = _video(tmp_path / "in.mp4")
    jsonl = tmp_path / "old.jsonl"
    jsonl.write_text("an earlier run\n")
    argv = ["demo", str(video), "--model", str(onnx_model), "--jsonl", str(jsonl)]
    refused(run(argv, capsys), "old.jsonl", "--overwrite")
    assert run([*argv, "--overwrite"], capsys).code == 0
    assert [json.loads(ln)["frame"] for ln in jsonl.read_text().splitlines()] == [0, 1, 2]
    refused(run([*argv, "--overwrite", "--out", str(video)], capsys), "in.mp4", "is the input")
    assert cv2.VideoCapture(str(video)).get(cv2.CAP_PROP_FRAME_COUNT) == 3


# ------------------------------------------------------------------ 2. generate's --out


@pytest.mark.parametrize("kind", ["folder", "file", "clips-with-a-file"])
def test_generate_refuses_to_replace_what_is_not_a_dataset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    out = tmp_path / "target"
    if kind == "file":
        out.write_text("my notes")
    else:
        (out / "clips" if kind == "clips-with-a-file" else out).mkdir(parents=True)
        (out / "clips" / "notes.txt" if kind == "clips-with-a-file" else out / "a.txt").write_text(
            "mine"
        )
    before = tree_hashes(tmp_path)
    argv = ["generate", "--out", str(out), "--clips", "1", "--frames", "1", "--quiet"]
    refused(run([*argv, "--params", str(ROOT / "profiles/tiny.yaml")], capsys), str(out))
    assert tree_hashes(tmp_path) == before


def test_generate_replaces_a_dataset_and_an_interrupted_write(
    world: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from perception.dataset.output import check_replaceable

    check_replaceable(world / "ds")  # a dataset: replaceable
    check_replaceable(world / "nowhere")
    (world / "empty").mkdir()
    check_replaceable(world / "empty")
    (world / "ds" / "manifest.json").unlink()  # killed before its manifest: clips/ only
    check_replaceable(world / "ds")
    argv = ["generate", "--out", str(world / "ds"), "--clips", "1", "--frames", "1", "--quiet"]
    assert run([*argv, "--params", str(ROOT / "profiles/tiny.yaml")], capsys).code == 0
    assert [p.name for p in (world / "ds" / "clips").iterdir()] == ["sim-0003-0000"]


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
    outcome = _unchanged_outside_out(world, lambda: run(dataset_commands(world)[command], capsys))
    line = refused(outcome, str(clip / "labels.jsonl"))
    assert "line 2" in line or "frame 1" in line, line
    assert "outside" in line and not (world / "out" / "s.json").exists()


def test_demo_refuses_a_clip_frame_outside_its_clip(
    world: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clip = world / "ds" / "clips" / "c0001"
    edit_label(clip, 0, lambda d: d.update(image=str(world / "outside" / "secret.jpg")))
    argv = ["demo", str(clip), "--model", "none.onnx", "--jsonl", str(world / "out" / "o.jsonl")]
    outcome = _unchanged_outside_out(world, lambda: run(argv, capsys))
    refused(outcome, str(clip / "labels.jsonl"), "line 1", "absolute path")


@pytest.mark.parametrize("command", ["validate", "split", "evaluate", "export"])
def test_a_clip_id_outside_clips_is_refused_naming_the_manifest(
    world: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    manifest = world / "ds" / "manifest.json"
    edit_json(manifest, lambda m: m["clips"][1].update(clip_id="../../outside/clip"))
    if command == "evaluate":  # evaluate reaches clips through the splits file
        edit_json(_split_file(world), lambda s: s.update(train=["c0000", "../../outside/clip"]))
    outcome = _unchanged_outside_out(world, lambda: run(dataset_commands(world)[command], capsys))
    refused(outcome, str(manifest), "../../outside/clip")


@pytest.mark.parametrize("raw_file", ["../outside/secret.jpg", "ABSOLUTE"])
def test_tusimple_raw_file_outside_the_root_is_refused(
    world: Path, capsys: pytest.CaptureFixture[str], raw_file: str
) -> None:
    raw = str(world / "outside" / "secret.jpg") if raw_file == "ABSOLUTE" else raw_file
    src = _tusimple_root(world / "tu", ["clips/a/1/20.jpg", raw])
    argv = ["import", "tusimple", "--root", str(src), "--out", str(world / "out" / "t")]
    outcome = _unchanged_outside_out(world, lambda: run(argv, capsys))
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
    outcome = _unchanged_outside_out(world, lambda: run(argv, capsys))
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
    outcome = _unchanged_outside_out(
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


def test_demo_on_a_folder_with_a_fifo_ends_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], onnx_model: Path
) -> None:
    folder = _frames(tmp_path / "f", [SIZE] * 3)
    (folder / "001.png").unlink()
    os.mkfifo(folder / "001.png")
    out = run(["demo", str(folder), "--model", str(onnx_model)], capsys, seconds=60)
    refused(out, "001.png", "not a regular file", "stopped after 1 frames")


# ------------------------------------------------------------------ 6, 7. the demo's source


def _frames(folder: Path, sizes: list[tuple[int, int]]) -> Path:
    folder.mkdir(parents=True)
    for i, (w, h) in enumerate(sizes):
        cv2.imwrite(str(folder / f"{i:03d}.png"), np.full((h, w, 3), 30 * i, np.uint8))
    return folder


@pytest.mark.parametrize("case", ["corrupt", "resized"])
def test_demo_source_failing_mid_stream_is_an_error_with_partial_outputs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], onnx_model: Path, case: str
) -> None:
    sizes = [SIZE] * 6 if case == "corrupt" else [SIZE] * 3 + [(192, 108)] * 3
    folder = _frames(tmp_path / "f", sizes)
    if case == "corrupt":
        (folder / "003.png").write_bytes(b"\x89PNG not really")
    out, jsonl = tmp_path / "o" / "a.mp4", tmp_path / "o" / "a.jsonl"
    argv = ["demo", str(folder), "--model", str(onnx_model)]
    line = refused(run([*argv, "--out", str(out), "--jsonl", str(jsonl)], capsys), "003.png")
    assert "stopped after 3 frames" in line and ".a.partial.jsonl" in line
    if case == "resized":
        assert "192x108" in line and f"{SIZE[0]}x{SIZE[1]}" in line
    assert not out.exists() and not jsonl.exists()  # nothing that looks complete
    partial = (tmp_path / "o" / ".a.partial.jsonl").read_text().splitlines()
    assert [json.loads(ln)["frame"] for ln in partial] == [0, 1, 2]
    cap = cv2.VideoCapture(str(tmp_path / "o" / ".a.partial.mp4"))
    assert cap.get(cv2.CAP_PROP_FRAME_COUNT) == 3


# ------------------------------------------------------------------ 8. generate killed


def _children(pid: int) -> list[int]:
    kids = []
    for d in os.listdir("/proc"):
        try:
            stat = Path(f"/proc/{d}/stat").read_text() if d.isdigit() else ""
        except OSError:
            continue
        if stat and int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            kids.append(int(d))
    return kids


def _alive(pid: int) -> bool:
    """Running or sleeping: neither gone nor a zombie waiting to be reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_generate_workers_die_with_a_killed_command(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    argv = ["generate", "--out", str(out), "--clips", "4", "--frames", "60", "--workers", "2"]
    argv += ["--params", str(ROOT / "profiles/tiny.yaml"), "--quiet"]
    proc = subprocess.Popen([sys.executable, "-m", "perception.cli", *argv], cwd=ROOT)
    deadline = time.monotonic() + 60
    while len(_children(proc.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    workers = _children(proc.pid)
    assert len(workers) == 2
    time.sleep(0.5)  # the workers are rendering their first clips
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    deadline = time.monotonic() + 5
    while any(map(_alive, workers)) and time.monotonic() < deadline:
        time.sleep(0.05)
    survivors = [w for w in workers if _alive(w)]
    for w in survivors:  # do not leave them running if the test fails
        os.kill(w, signal.SIGKILL)
    assert not survivors
    before = tree_hashes(out)
    time.sleep(1.0)
    assert tree_hashes(out) == before  # nobody writes on


# ------------------------------------------------------------------ 9. split and validate


def test_split_leaves_no_file_when_the_dataset_is_bad(
    world: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = world / "ds" / "clips" / "c0002" / "frames" / "000002.jpg"
    frame.unlink()
    outcome = _unchanged_outside_out(world, lambda: run(dataset_commands(world)["split"], capsys))
    refused(outcome, str(frame), "missing file")
    assert not (world / "out").exists()


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


# ------------------------------------------------------------------ 12. model metadata


def _with_metadata(src: Path, dst: Path, **changes: str) -> Path:
    import onnx

    model = onnx.load(str(src))
    for prop in model.metadata_props:
        if prop.key in changes:
            prop.value = changes[prop.key]
    onnx.save(model, str(dst))
    return dst


@pytest.mark.parametrize(
    ("key", "value", "what"),
    [
        ("contract.stride", "{oops", "not JSON"),
        ("contract.stride", "0", "positive whole number"),
        ("contract.std", "[58.4, 0.0, 57.4]", "above 0"),
        ("contract.mean", "[NaN, 1, 1]", "not JSON"),
        ("contract.class_names", '["car", "truck", "pedestrian", "cyclist", "bus"]', "heatmap"),
    ],
)
def test_malformed_model_metadata_fails_at_load_naming_file_and_key(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    onnx_model: Path,
    key: str,
    value: str,
    what: str,
) -> None:
    bad = _with_metadata(onnx_model, tmp_path / "bad.onnx", **{key: value})
    folder = _frames(tmp_path / "f", [SIZE] * 2)
    line = refused(run(["demo", str(folder), "--model", str(bad)], capsys), "bad.onnx", what)
    assert key.removeprefix("contract.") in line


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
    outcome = _unchanged_outside_out(world, lambda: run(argv, capsys))
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
