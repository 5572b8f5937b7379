"""Bad and hostile input for the commands that run things (tests/test_hostile.py has the
data commands): the demo's outputs and sources, generate's --out and its workers, model
files with broken metadata. Each asserts the exit status and one line naming the file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from guards import refused, run, tree_hashes
from hostile_world import SIZE, world

ROOT = Path(__file__).resolve().parents[1]
__all__ = ["world"]  # the fixture, from hostile_world


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
