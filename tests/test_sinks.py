"""Result sinks (serving.sinks): whole JSON lines whatever happens to the writer, partial
names until a run ends well."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from serving.sinks import JsonlSink, SinkError, VideoSink

ROOT = Path(__file__).resolve().parents[1]


def test_jsonl_sink_writes_whole_parseable_lines(tmp_path: Path) -> None:
    path = tmp_path / "out" / "log.jsonl"
    with JsonlSink(path) as sink:
        sink.write({"frame": 0, "boxes": np.arange(4, dtype=np.float32).reshape(1, 4)})
        sink.write({"frame": np.int64(1), "ttc": math.inf, "d": float("nan")})
    lines = path.read_text().splitlines()
    assert json.loads(lines[0]) == {"frame": 0, "boxes": [[0.0, 1.0, 2.0, 3.0]]}
    assert json.loads(lines[1]) == {"frame": 1, "ttc": None, "d": None}


CRASH_WRITER = """
import os, sys
from serving.sinks import JsonlSink
sink = JsonlSink(sys.argv[1])
for i in range(int(sys.argv[2])):
    sink.write({"i": i, "pad": "x" * (700 + 37 * i % 500)})
    if i == int(sys.argv[3]):
        os._exit(1)  # no close, no flush at exit
"""


def _check_whole_lines(path: Path) -> list[int]:
    data = path.read_bytes()
    assert data.endswith(b"\n"), "partial last line"
    return [json.loads(line)["i"] for line in data.decode().splitlines()]


def test_jsonl_sink_leaves_only_whole_lines_when_the_writer_dies(tmp_path: Path) -> None:
    path = tmp_path / "crash.jsonl"
    cmd = [sys.executable, "-c", CRASH_WRITER, str(path), "1000", "36"]
    assert subprocess.run(cmd, cwd=ROOT, timeout=60).returncode == 1
    assert not path.exists()  # never finished: only the partial file
    assert _check_whole_lines(tmp_path / ".crash.partial.jsonl") == list(range(37))


def test_jsonl_sink_survives_sigkill_mid_stream(tmp_path: Path) -> None:
    path = tmp_path / ".killed.partial.jsonl"
    cmd = [sys.executable, "-c", CRASH_WRITER, str(tmp_path / "killed.jsonl"), "100000000", "-1"]
    proc = subprocess.Popen(cmd, cwd=ROOT)
    deadline = time.monotonic() + 30
    while (not path.exists() or path.stat().st_size < 200_000) and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    ids = _check_whole_lines(path)
    assert len(ids) > 100 and ids == list(range(len(ids)))


def test_jsonl_sink_renames_on_success_and_keeps_the_partial_name_on_error(
    tmp_path: Path,
) -> None:
    with JsonlSink(tmp_path / "ok.jsonl") as sink:
        sink.write({"i": 0})
        assert sink.partial_path.exists() and not sink.path.exists()
    assert sink.path.read_text() == '{"i":0}\n' and not sink.partial_path.exists()
    with pytest.raises(RuntimeError), JsonlSink(tmp_path / "failed.jsonl") as sink:
        sink.write({"i": 0})
        raise RuntimeError("inference failed")
    assert not sink.path.exists() and sink.partial_path.read_text() == '{"i":0}\n'


def test_video_sink_writes_a_partial_file_then_renames_it(tmp_path: Path) -> None:
    path = tmp_path / "demo" / "out.mp4"
    sink = VideoSink(path, 20.0, (160, 120))
    assert sink.partial_path == tmp_path / "demo" / ".out.partial.mp4"
    for i in range(12):
        img = np.full((120, 160, 3), 10 * i, np.uint8)
        gray, bgra = img[:, :, 0].copy(), cv2.cvtColor(img, cv2.COLOR_BGR2BGRA)
        sink.write([img, gray, bgra][i % 3])
    assert sink.partial_path.exists() and not path.exists()
    sink.close()
    assert path.exists() and not sink.partial_path.exists()
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 12 and int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) == 160
    cap.release()


def test_video_sink_refuses_wrong_sizes_and_bad_paths(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(SinkError, match="file"):
        VideoSink(blocker / "out.mp4", 20.0, (160, 120))
    with VideoSink(tmp_path / "ok.mp4", 20.0, (160, 120)) as sink, pytest.raises(SinkError):
        sink.write(np.zeros((120, 161, 3), np.uint8))


def test_video_sink_keeps_the_partial_name_after_an_error(tmp_path: Path) -> None:
    path = tmp_path / "failed.mp4"
    with pytest.raises(RuntimeError), VideoSink(path, 20.0, (64, 48)) as sink:
        sink.write(np.zeros((48, 64, 3), np.uint8))
        raise RuntimeError("inference failed")
    assert not path.exists() and sink.partial_path.exists()
    with pytest.raises(KeyboardInterrupt), VideoSink(path, 20.0, (64, 48)) as sink:
        sink.write(np.zeros((48, 64, 3), np.uint8))
        raise KeyboardInterrupt  # Ctrl-C ends a demo normally: its video is kept
    assert path.exists()
