"""Frame sources and result sinks (serving.source, serving.io, serving.camera, serving.sinks)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from serving.camera import CameraSource
from serving.geometry import Calib
from serving.io import ClipSource, ImageFolderSource, VideoSource, open_source
from serving.source import SourceError

ROOT = Path(__file__).resolve().parents[1]


def write_video(
    path: Path, n: int = 20, size: tuple[int, int] = (160, 120), fourcc: str = "mp4v"
) -> Path:
    """n frames whose brightness encodes the frame number (10 * i) and noise (for bytes)."""
    w, h = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*fourcc), 20.0, size)
    assert writer.isOpened()
    rng = np.random.default_rng(0)
    for i in range(n):
        img = np.full((h, w, 3), 10 * i, np.uint8)
        img[: h // 2] = rng.integers(0, 255, (h // 2, w, 3), dtype=np.uint8)
        writer.write(img)
    writer.release()
    return path


def assert_one_line_naming(err: pytest.ExceptionInfo, name: str) -> None:
    msg = str(err.value)
    assert name in msg, msg
    assert "\n" not in msg


# ---------------------------------------------------------------------------- videos


def test_video_reads_back_every_frame_with_file_timing(tmp_path: Path) -> None:
    path = write_video(tmp_path / "v.mp4")
    with open_source(str(path)) as src:
        assert isinstance(src, VideoSource)
        assert src.size == (160, 120) and src.fps == pytest.approx(20.0)
        assert src.frame_count == 20 and not src.live and src.calib is None
        frames = list(src)
    assert [f.index for f in frames] == list(range(20))
    assert all(f.image.shape == (120, 160, 3) and f.image.dtype == np.uint8 for f in frames)
    brightness = [float(f.image[-10:].mean()) for f in frames]
    assert brightness == pytest.approx([10.0 * i for i in range(20)], abs=8.0)
    t = np.array([f.t_ns for f in frames])
    assert t[0] == 0 and np.all(np.diff(t) > 0)
    assert np.diff(t) == pytest.approx(np.full(19, 50_000_000), abs=1_000_000)
    assert not src.ended_early and src.end_reason is None
    assert all(f.speed_mps is None for f in frames)


def test_truncated_mp4_fails_at_open_or_ends_early(tmp_path: Path) -> None:
    data = write_video(tmp_path / "v.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    try:
        src = open_source(str(cut))
    except SourceError as e:
        assert "cut.mp4" in str(e)
        return
    with src:
        n = sum(1 for _ in src)  # never raises mid-iteration
    assert src.ended_early and n < 20


def test_truncated_avi_ends_early_without_raising(tmp_path: Path) -> None:
    """MJPG AVI opens without its index: frames up to the cut decode, then the read fails."""
    data = write_video(tmp_path / "v.avi", fourcc="MJPG").read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    with open_source(str(cut)) as src:
        frames = list(src)
    assert 0 < len(frames) < 20
    assert src.ended_early and src.end_reason is not None and "cut.avi" in src.end_reason


@pytest.mark.parametrize("content", [b"", b"this is not a video\n" * 10], ids=["empty", "text"])
def test_unreadable_video_file_is_a_source_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "clip.mp4"
    path.write_bytes(content)
    with pytest.raises(SourceError) as err:
        open_source(str(path))
    assert_one_line_naming(err, "clip.mp4")


def test_video_with_zero_frames_is_a_source_error(tmp_path: Path) -> None:
    path = write_video(tmp_path / "none.avi", n=0, fourcc="MJPG")
    with pytest.raises(SourceError) as err:
        open_source(str(path))
    assert_one_line_naming(err, "none.avi")


def test_missing_path_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError) as err:
        open_source(str(tmp_path / "nowhere.mp4"))
    assert_one_line_naming(err, "nowhere.mp4")


# ---------------------------------------------------------------------------- image folders


def test_empty_folder_is_a_source_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(SourceError) as err:
        open_source(str(tmp_path))
    assert_one_line_naming(err, str(tmp_path))


def test_corrupt_image_in_folder_names_the_image(tmp_path: Path) -> None:
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i:03d}.jpg"), np.full((48, 64, 3), 50 * i, np.uint8))
    (tmp_path / "001.jpg").write_bytes(b"\xff\xd8\xff garbage, not a jpeg")
    src = open_source(str(tmp_path))
    it = iter(src)
    assert next(it).index == 0
    with pytest.raises(SourceError) as err:
        next(it)
    assert_one_line_naming(err, "001.jpg")


def test_corrupt_first_image_fails_at_open(tmp_path: Path) -> None:
    (tmp_path / "000.png").write_bytes(b"not a png")
    with pytest.raises(SourceError) as err:
        open_source(str(tmp_path))
    assert_one_line_naming(err, "000.png")


@pytest.mark.parametrize("size", [(854, 480), (1920, 1080), (720, 1280)])
def test_odd_sizes_gray_and_bgra_pass_through(tmp_path: Path, size: tuple[int, int]) -> None:
    w, h = size
    shapes = [(h, w, 3), (h, w), (h, w, 4), (h, w, 3), (h, w)]
    for i, shape in enumerate(shapes):
        cv2.imwrite(str(tmp_path / f"{i:02d}.png"), np.full(shape, 77, np.uint8))
    with open_source(str(tmp_path), fps=10.0) as src:
        assert isinstance(src, ImageFolderSource)
        assert src.size == size and src.frame_count == 5 and src.fps == 10.0
        frames = list(src)
    assert [f.image.shape for f in frames] == shapes
    assert [f.t_ns for f in frames] == [i * 100_000_000 for i in range(5)]


def test_a_frame_of_another_size_mid_stream_is_refused_naming_it(tmp_path: Path) -> None:
    for i, shape in enumerate([(480, 854, 3), (480, 854), (1080, 1920, 3)]):
        cv2.imwrite(str(tmp_path / f"{i:02d}.png"), np.full(shape, 77, np.uint8))
    it = iter(open_source(str(tmp_path)))
    assert [next(it).index, next(it).index] == [0, 1]
    with pytest.raises(SourceError) as err:
        next(it)
    assert_one_line_naming(err, "02.png")
    assert "1920x1080" in str(err.value) and "854x480" in str(err.value)


def test_calib_file_is_scaled_to_the_frames_or_refused(tmp_path: Path) -> None:
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    cv2.imwrite(str(imgs / "0.jpg"), np.zeros((360, 640, 3), np.uint8))
    calib = tmp_path / "calib.json"
    calib.write_text(json.dumps(Calib.default(1280, 720).to_dict()))
    with open_source(str(imgs), str(calib)) as src:
        assert src.calib == Calib.default(1280, 720).scaled(640, 360)
    calib.write_text(json.dumps(Calib.default(1000, 1000).to_dict()))
    with pytest.raises(SourceError, match="aspect ratio"):
        open_source(str(imgs), str(calib))
    calib.write_text("{}")
    with pytest.raises(SourceError) as err:
        open_source(str(imgs), str(calib))
    assert_one_line_naming(err, "calib.json")


# ---------------------------------------------------------------------------- dataset clips


def make_clip(root: Path, n: int = 4, size: tuple[int, int] = (200, 100)) -> Path:
    """A clip folder built by hand: 10 fps frames from t = 1 s, speed 10 -> 20 m/s over 1 s."""
    w, h = size
    (root / "frames").mkdir(parents=True)
    calib = Calib(w, h, 150.0, 150.0, w / 2, h / 2, 1.3, 0.01)
    (root / "calib.json").write_text(json.dumps({**calib.to_dict(), "schema_version": 1}))
    (root / "meta.json").write_text(json.dumps({"clip_id": root.name, "fps": 10.0}))
    lines = []
    for k in range(n):
        cv2.imwrite(str(root / "frames" / f"{k:06d}.jpg"), np.full((h, w, 3), 20 * k, np.uint8))
        t = 1_000_000_000 + k * 100_000_000
        lines.append(json.dumps({"frame": k, "image": f"frames/{k:06d}.jpg", "timestamp_ns": t}))
    (root / "labels.jsonl").write_text("\n".join(lines) + "\n")
    rows = ["t_ns,speed_mps,yaw_rate_rps,accel_mps2,steering_rad"]
    rows += [f"{1_000_000_000 + j * 500_000_000},{10.0 + 5.0 * j},0,0,0" for j in range(3)]
    (root / "sensors.csv").write_text("\n".join(rows) + "\n")
    return root


def test_clip_uses_its_calibration_timestamps_and_sensor_speed(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "c0001")
    with open_source(str(clip)) as src:
        assert isinstance(src, ClipSource)
        assert src.calib is not None and src.calib.fx == 150.0 and src.calib.camera_height_m == 1.3
        assert src.fps == 10.0 and src.frame_count == 4 and src.size == (200, 100)
        frames = list(src)
    assert [f.t_ns for f in frames] == [1_000_000_000 + k * 100_000_000 for k in range(4)]
    assert [f.speed_mps for f in frames] == pytest.approx([10.0, 11.0, 12.0, 13.0])
    assert [round(float(f.image.mean()) / 20) for f in frames] == [0, 1, 2, 3]


def test_clip_calib_override_and_missing_sensors(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "c0002")
    (clip / "sensors.csv").unlink()
    other = tmp_path / "other.json"
    other.write_text(json.dumps(Calib.default(400, 200).to_dict()))
    with open_source(str(clip), str(other)) as src:
        assert src.calib == Calib.default(400, 200).scaled(200, 100)
        assert all(f.speed_mps is None for f in src)


def test_clip_with_a_missing_frame_names_it(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "c0003")
    (clip / "frames" / "000002.jpg").unlink()
    with pytest.raises(SourceError) as err:
        list(open_source(str(clip)))
    assert_one_line_naming(err, "000002.jpg")


def test_clip_written_by_the_dataset_tools_reads_the_same(tmp_path: Path) -> None:
    from dataset_factory import make_dataset  # the writer side of the same layout

    root = make_dataset(tmp_path / "ds", n_clips=1, frames=3)
    with open_source(str(root / "clips" / "c0000")) as src:
        assert src.calib == Calib.default(320, 180) and src.fps == 20.0
        frames = list(src)
    assert len(frames) == 3 and frames[0].image.shape == (180, 320, 3)
    assert [f.speed_mps for f in frames] == pytest.approx([10.0] * 3)


# ---------------------------------------------------------------------------- camera


class FakeCapture:
    """cv2.VideoCapture stand-in: 2 ms per frame, fails after `n` grabs."""

    n = 40

    def __init__(self, index: int):
        self.grabs = 0

    def isOpened(self) -> bool:
        return True

    def read(self) -> tuple[bool, np.ndarray]:
        return True, np.zeros((72, 128, 3), np.uint8)

    def grab(self) -> bool:
        time.sleep(0.002)
        self.grabs += 1
        return self.grabs <= self.n

    def retrieve(self) -> tuple[bool, np.ndarray]:
        return True, np.full((72, 128, 3), self.grabs % 256, np.uint8)

    def get(self, prop: int) -> float:
        return 30.0

    def release(self) -> None:
        pass


def test_camera_keeps_the_newest_frame_and_ends_when_it_fails(monkeypatch) -> None:
    monkeypatch.setattr(cv2, "VideoCapture", FakeCapture)
    with open_source("0") as src:
        assert isinstance(src, CameraSource) and src.live and src.size == (128, 72)
        frames = []
        for f in src:
            frames.append(f)
            time.sleep(0.005)  # a slow consumer: the grab thread overwrites frames
    idx = [f.index for f in frames]
    assert idx == sorted(set(idx)) and idx[-1] <= FakeCapture.n - 1
    assert src.dropped > 0 and len(frames) + src.dropped == FakeCapture.n
    assert np.all(np.diff([f.t_ns for f in frames]) > 0)
    assert src.ended_early and "camera 0" in (src.end_reason or "")


def test_camera_close_mid_stream_stops_the_grab_thread(monkeypatch) -> None:
    class EndlessCapture(FakeCapture):
        n = 10**9

    monkeypatch.setattr(cv2, "VideoCapture", EndlessCapture)
    src = open_source("1")
    assert isinstance(src, CameraSource)
    frames = [f for f, _ in zip(src, range(3), strict=False)]
    src.close()
    assert len(frames) == 3 and not src._thread.is_alive()
    assert not src.ended_early and list(src) == []
