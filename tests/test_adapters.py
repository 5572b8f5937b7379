"""The TuSimple importer and exporter on tiny synthetic fixtures, and the import /
export-labels commands (BDD100K: tests/test_bdd100k.py; COCO: tests/test_coco.py)."""

from __future__ import annotations

import argparse
import importlib
import itertools
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from dataset_factory import write_bdd, write_image

from perception.dataset import adapters
from perception.dataset.bdd100k import poly2d_to_polyline
from perception.dataset.lane_rows import assign_lane_slots, lanes_to_tusimple_xs
from perception.dataset.schema import (
    Dataset,
    FormatError,
    FrameLabel,
    Lane,
)
from perception.dataset.tusimple import import_tusimple, to_tusimple
from serving.geometry import Calib

H_SAMPLES = list(range(160, 720, 10))


def line_xs(x_bottom: float, slope: float, top: int) -> list[float]:
    """TuSimple xs of a straight lane: x = x_bottom + slope * (710 - h) for rows h >= top."""
    return [x_bottom + slope * (710 - h) if h >= top else -2 for h in H_SAMPLES]


# Five unordered lanes; by x at the bottom: C(150) A(500) | B(800) D(1150); E starts higher up
# and leaves the image to the left, so it is the third lane on the left and gets dropped.
LANE_A = line_xs(500, 0.25, 300)  # ego_left
LANE_B = line_xs(800, -0.3, 300)  # ego_right
LANE_C = line_xs(150, 0.8, 350)  # outer_left
LANE_D = line_xs(1150, -0.9, 350)  # outer_right
LANE_E = [10 + 1.5 * (500 - h) if 400 <= h <= 500 else -2 for h in H_SAMPLES]
TUSIMPLE_LINES = {
    "clips/0313-1/6040/20.jpg": [LANE_E, LANE_B, LANE_C, LANE_A, LANE_D],
    "clips/0313-1/6060/20.jpg": [LANE_B, LANE_A],
}
TEST_LINE = ("clips/0530/1492626047222176976_0/20.jpg", [LANE_D, LANE_C])


def tusimple_line(raw_file: str, lanes: list[list[float]]) -> str:
    return json.dumps({"lanes": lanes, "h_samples": H_SAMPLES, "raw_file": raw_file}) + "\n"


@pytest.fixture
def tusimple_root(tmp_path: Path) -> Path:
    root = tmp_path / "tusimple"
    for raw_file in TUSIMPLE_LINES:
        write_image(root / raw_file)
    write_image(root / TEST_LINE[0], width=1276)
    text = "".join(tusimple_line(f, lanes) for f, lanes in TUSIMPLE_LINES.items())
    (root / "label_data_0313.json").write_text(text)
    (root / "test_label.json").write_text(tusimple_line(*TEST_LINE))
    return root


def lanes_by_slot(label: FrameLabel) -> dict[str, Lane]:
    return {lane.slot: lane for lane in label.lanes}


# ---------------------------------------------------------------- TuSimple import


def test_tusimple_import_clips_lanes_meta(tusimple_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    report = import_tusimple(tusimple_root, out)
    ds = Dataset(out)
    assert ds.clip_ids() == [
        "tusimple-0313-1-6040",
        "tusimple-0313-1-6060",
        "tusimple-0530-1492626047222176976_0",
    ]
    assert (report.clips, report.frames) == (3, 3)
    assert report.dropped["lanes beyond the 4 slots"] == 1
    assert ds.manifest["source"] == "tusimple" and ds.manifest["num_frames"] == 3

    clip = ds.clip("tusimple-0313-1-6040")
    (label,) = clip.labels
    lanes = lanes_by_slot(label)
    assert sorted(lanes) == ["ego_left", "ego_right", "outer_left", "outer_right"]
    assert lanes["ego_left"].x_at_h == LANE_A
    assert lanes["ego_right"].x_at_h == LANE_B
    assert lanes["outer_left"].x_at_h == LANE_C
    assert lanes["outer_right"].x_at_h == LANE_D
    pts = lanes["ego_left"].points
    assert pts[0] == [500.0, 710.0] and pts[-1] == [LANE_A[H_SAMPLES.index(300)], 300.0]
    assert all(a[1] > b[1] for a, b in itertools.pairwise(pts))
    assert len(pts) == sum(x >= 0 for x in LANE_A)
    assert {(lane.style, lane.color) for lane in label.lanes} == {("none", "white")}
    assert label.obstacles == []
    assert label.image == "frames/000000.jpg" and clip.frame_path(label).is_file()
    assert label.timestamp_ns == 19 * 50_000_000

    meta = clip.meta
    assert (meta.source, meta.fps, meta.num_frames, meta.h_samples) == (
        "tusimple",
        20.0,
        1,
        H_SAMPLES,
    )
    assert meta.tags == {
        "time_of_day": "day",
        "weather": "clear",
        "road": "unknown",
        "traffic": "unknown",
    }
    sensors = clip.sensors()
    assert sensors["t_ns"].tolist() == [label.timestamp_ns]
    assert sensors["speed_mps"].tolist() == [0.0]

    two = lanes_by_slot(ds.clip("tusimple-0313-1-6060").labels[0])
    assert {s: lane.x_at_h for s, lane in two.items()} == {"ego_left": LANE_A, "ego_right": LANE_B}


def test_tusimple_calib_from_image_size_and_hard_link(tusimple_root: Path, tmp_path: Path) -> None:
    ds_link = Dataset(tmp_path / "linked")
    import_tusimple(tusimple_root, ds_link.root)
    clip = ds_link.clip("tusimple-0530-1492626047222176976_0")
    assert clip.calib == Calib.default(1276, 720)
    assert ds_link.clip("tusimple-0313-1-6040").calib == Calib.default(1280, 720)
    src = tusimple_root / TEST_LINE[0]
    assert os.path.samefile(clip.frame_path(clip.labels[0]), src)

    ds_copy = Dataset(tmp_path / "copied")
    import_tusimple(tusimple_root, ds_copy.root, link=False)
    copied = ds_copy.clip("tusimple-0530-1492626047222176976_0")
    frame = copied.frame_path(copied.labels[0])
    assert not os.path.samefile(frame, src) and frame.read_bytes() == src.read_bytes()


def test_tusimple_round_trip(tusimple_root: Path, tmp_path: Path) -> None:
    ds = Dataset(tmp_path / "ds")
    import_tusimple(tusimple_root, ds.root)
    out = tmp_path / "export" / "gt.json"
    assert to_tusimple(ds, out) == 3
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    by_file = {r["raw_file"]: r for r in rows}
    first = by_file["clips/tusimple-0313-1-6040/frames/000000.jpg"]
    assert first["lanes"] == [LANE_A, LANE_B, LANE_C, LANE_D]  # slot order, E dropped
    assert first["h_samples"] == H_SAMPLES
    assert by_file["clips/tusimple-0313-1-6060/frames/000000.jpg"]["lanes"] == [LANE_A, LANE_B]
    test = by_file["clips/tusimple-0530-1492626047222176976_0/frames/000000.jpg"]
    assert test["lanes"] == [LANE_C, LANE_D]
    assert all((ds.root / r["raw_file"]).is_file() for r in rows)

    only = tmp_path / "one.json"
    assert to_tusimple(ds, only, clip_ids=["tusimple-0313-1-6060"]) == 1
    with pytest.raises(ValueError, match=r"manifest\.json: no clip nope"):
        to_tusimple(ds, only, clip_ids=["nope"])


def test_tusimple_imported_dataset_passes_validation(tusimple_root: Path, tmp_path: Path) -> None:
    validate = pytest.importorskip("perception.dataset.validate")
    import_tusimple(tusimple_root, tmp_path / "ds")
    result = validate.validate_dataset(tmp_path / "ds", workers=1)
    assert result.errors == []


def test_tusimple_missing_image_names_file_and_line(tusimple_root: Path, tmp_path: Path) -> None:
    (tusimple_root / "clips/0313-1/6060/20.jpg").unlink()
    with pytest.raises(FormatError, match=r"label_data_0313\.json: line 2: image .* not found"):
        import_tusimple(tusimple_root, tmp_path / "ds")


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("{not json\n", "malformed TuSimple label"),
        ('{"lanes": [], "raw_file": "clips/a/b/20.jpg"}\n', "malformed TuSimple label"),
        (
            json.dumps({"lanes": [[1, 2]], "h_samples": [160, 170, 180], "raw_file": "x.jpg"})
            + "\n",
            "lane 0 has 2 xs for 3 rows",
        ),
    ],
)
def test_tusimple_malformed_line(
    tusimple_root: Path, tmp_path: Path, line: str, problem: str
) -> None:
    (tusimple_root / "test_label.json").write_text(line)
    with pytest.raises(FormatError, match=rf"test_label\.json: line 1: {problem}"):
        import_tusimple(tusimple_root, tmp_path / "ds")


def test_tusimple_root_without_labels(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(FormatError, match="empty: no label_data"):
        import_tusimple(tmp_path / "empty", tmp_path / "ds")


# ---------------------------------------------------------------- lane helpers


def test_slots_use_extrapolated_bottom_x() -> None:
    """outer_right is hidden below v=400 where its x (769) is left of ego_right's bottom x
    (780); continued down to the bottom row it is far right, so it stays outer_right."""
    ego_right = [[780.0, 719.0], [760.0, 650.0]]
    outer_right = [[769.0, 400.0], [756.0, 390.0]]
    ego_left = [[500.0, 710.0], [520.0, 650.0]]
    assert assign_lane_slots([outer_right, ego_left, ego_right], 1280, 720) == [
        "outer_right",
        "ego_left",
        "ego_right",
    ]
    assert assign_lane_slots([[[700.0, 700.0], [690.0, 600.0]]], 1280, 720) == ["ego_right"]


def test_lanes_to_tusimple_xs_order_and_short_lanes() -> None:
    short = Lane("ego_left", [[5.0, 710.0]], [-2.0] * 55 + [5.0])
    right = Lane("ego_right", [], [-2.0] * 54 + [900.5, 901.0])
    outer = Lane("outer_left", [], [-2.0] * 54 + [100.0, 120.0])
    assert lanes_to_tusimple_xs([outer, short, right]) == [
        [-2] * 54 + [900.5, 901],
        [-2] * 54 + [100, 120],
    ]


def test_poly2d_bezier_is_sampled_on_the_curve() -> None:
    pts = poly2d_to_polyline([[0, 0], [0, 10], [10, 10], [10, 0]], "LCCL")
    assert pts.shape == (11, 2)
    assert pts[0].tolist() == [0.0, 0.0] and pts[-1].tolist() == [10.0, 0.0]
    assert pts[5].tolist() == pytest.approx([5.0, 7.5])  # cubic Bezier at t = 0.5


# ---------------------------------------------------------------- CLI


def test_register_builds_working_commands(tusimple_root: Path, tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    adapters.register(parser.add_subparsers(dest="command", required=True))
    out = tmp_path / "ds"
    args = parser.parse_args(
        ["import", "tusimple", "--root", str(tusimple_root), "--out", str(out), "--copy"]
    )
    assert args.func(args) == 0 and len(Dataset(out).clip_ids()) == 3
    args = parser.parse_args(
        [
            "export-labels",
            "tusimple",
            "--data",
            str(out),
            "--out",
            str(tmp_path / "t.json"),
            "--clips",
            "tusimple-0313-1-6060",
        ]
    )
    assert args.func(args) == 0
    assert len((tmp_path / "t.json").read_text().splitlines()) == 1
    with pytest.raises(SystemExit):
        parser.parse_args(
            [
                "import",
                "bdd100k",
                "--images",
                "x",
                "--det-labels",
                "y",
                "--out",
                "z",
                "--frames-per-clip",
                "0",
            ]
        )


CliMain = Callable[[list[str]], int]


@pytest.fixture
def bdd(tmp_path: Path) -> dict[str, Path]:
    return write_bdd(tmp_path)


@pytest.fixture
def cli_main() -> CliMain:
    """perception.cli.main, skipped while a module it imports does not exist yet."""
    cli = importlib.import_module("perception.cli")
    try:
        cli.build_parser()
    except ModuleNotFoundError as e:
        pytest.skip(f"perception CLI incomplete: {e}")
    main: CliMain = cli.main
    return main


def test_cli_import_and_export(
    cli_main: CliMain,
    tusimple_root: Path,
    bdd: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "ts"
    assert cli_main(["import", "tusimple", "--root", str(tusimple_root), "--out", str(out)]) == 0
    assert "imported 3 clips, 3 frames" in capsys.readouterr().out
    argv = ["import", "bdd100k", "--images", str(bdd["images"])]
    argv += ["--det-labels", str(bdd["det"]), "--lane-labels", str(bdd["lanes"])]
    argv += ["--out", str(bdd["out"]), "--frames-per-clip", "2"]
    assert cli_main(argv) == 0
    assert len(Dataset(bdd["out"]).clip_ids()) == 3
    coco = tmp_path / "c.json"
    assert cli_main(["export-labels", "coco", "--data", str(bdd["out"]), "--out", str(coco)]) == 0
    assert len(json.loads(coco.read_text())["annotations"]) == 10


def test_cli_missing_file_is_one_line(
    cli_main: CliMain, bdd: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    missing = bdd["det"].with_name("missing.json")
    argv = ["import", "bdd100k", "--images", str(bdd["images"])]
    argv += ["--det-labels", str(missing), "--out", str(bdd["out"])]
    rc = cli_main(argv)
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and "missing.json: missing file" in err
