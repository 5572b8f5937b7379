"""The real-footage test set (data/real/source): imported with the project's own importers,
the labels round-trip exactly, and nothing that trains reads it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from perception.cli import main
from perception.dataset.schema import Dataset, FormatError
from perception.dataset.tusimple import import_tusimple, to_tusimple
from perception.dataset.tusimple_extras import ImportExtras
from serving.geometry import Calib

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "data" / "real" / "source"
LENS = Calib(1280, 720, 1158.8, 1154.1, 669.6, 388.1, 1.25, -0.027,
             dist=(-0.257, 0.043, -0.0007, 0.0001, -0.115))  # fmt: skip


@pytest.fixture(scope="module")
def real_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("real") / "dataset"
    calib = out.parent / "calib.json"
    calib.write_text(json.dumps(LENS.to_dict()))
    argv = ["import", "tusimple", "--labels", str(SOURCE / "lanes_tusimple.json")]
    argv += ["--det-labels", str(SOURCE / "boxes_bdd100k.json"), "--calib", str(calib)]
    assert main([*argv, "--out", str(out), "--copy"]) == 0
    return out


def _source_lines() -> list[dict]:
    return [json.loads(line) for line in (SOURCE / "lanes_tusimple.json").read_text().splitlines()]


def test_real_set_lanes_round_trip_exactly(real_set: Path, tmp_path: Path):
    ds = Dataset(real_set)
    (clip,) = ds.clips()
    sources = ds.manifest["clips"][0]["sources"]
    src = {d["raw_file"]: d for d in _source_lines()}
    assert sorted(sources) == sorted(src) and len(clip.labels) == 8
    # slots as the file names them (not by bottom x), extra_lanes left out: 24 lines
    for raw_file, label in zip(sources, clip.labels, strict=True):
        assert [lane.slot for lane in label.lanes] == src[raw_file]["slots"]
    assert sum(len(label.lanes) for label in clip.labels) == 24
    # the TuSimple export gives back the source lanes, number for number
    out = tmp_path / "export.json"
    assert to_tusimple(ds, out) == 8
    exported = [json.loads(line) for line in out.read_text().splitlines()]
    for raw_file, line in zip(sources, exported, strict=True):
        assert line["h_samples"] == src[raw_file]["h_samples"]
        assert sorted(line["lanes"]) == sorted(src[raw_file]["lanes"])
    assert clip.calib == LENS


def test_the_import_writes_the_same_bytes_wherever_the_project_sits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The manifest names its inputs relative to the working directory (the project root,
    where DVC runs the stage): two clones in different folders write the same dataset bytes,
    so the import-real output has one hash. An input outside the project stays absolute."""
    calib = tmp_path / "elsewhere" / "calib.json"
    calib.parent.mkdir()
    calib.write_text(json.dumps(LENS.to_dict()))
    manifests = []
    for clone in ("a", "b"):
        root = tmp_path / clone / "project"
        shutil.copytree(SOURCE, root / "data" / "real" / "source")
        monkeypatch.chdir(root)
        argv = ["import", "tusimple", "--labels", "data/real/source/lanes_tusimple.json"]
        argv += ["--det-labels", str(root / "data/real/source/boxes_bdd100k.json")]
        argv += ["--calib", str(calib), "--out", "data/real/dataset", "--copy"]
        assert main(argv) == 0
        manifests.append((root / "data/real/dataset/manifest.json").read_bytes())
    assert manifests[0] == manifests[1]
    importer = json.loads(manifests[0])["importer"]
    assert importer["source_root"] == "data/real/source"
    assert importer["det_labels"] == "data/real/source/boxes_bdd100k.json"
    assert importer["calib"] == str(calib)


def test_real_set_boxes_equal_the_source(real_set: Path):
    """Scalabel's inclusive pixel corners are kept as they are (our x1 y1 x2 y2 on pixel
    centres, the BDD100K importer's convention): every box comes back unchanged."""
    ds = Dataset(real_set)
    (clip,) = ds.clips()
    names = [Path(s).name for s in ds.manifest["clips"][0]["sources"]]
    boxes = {
        f["name"]: f["labels"] for f in json.loads((SOURCE / "boxes_bdd100k.json").read_text())
    }
    total = 0
    for name, label in zip(names, clip.labels, strict=True):
        want = [[b["box2d"][k] for k in ("x1", "y1", "x2", "y2")] for b in boxes[name]]
        assert [o.box for o in label.obstacles] == want
        assert [o.occlusion > 0 for o in label.obstacles] == [
            b["attributes"]["occluded"] for b in boxes[name]
        ]
        assert {o.cls for o in label.obstacles} <= {"car"}
        total += len(label.obstacles)
    assert total == 28
    ids = [o.track_id for label in clip.labels for o in label.obstacles]
    assert len(set(ids)) == len(ids)  # one track per box: the frames are not a sequence


def _labels(tmp_path: Path, **extra: object) -> Path:
    """One TuSimple line about (a copy of) the first real image, with extra fields; raw_file
    must lie in the label file's folder."""
    line = {**_source_lines()[0], **extra}
    shutil.copyfile(SOURCE / "images" / "advlane_straight_lines1.jpg", tmp_path / "first.jpg")
    line["raw_file"] = "first.jpg"
    path = tmp_path / "lanes.json"
    path.write_text(json.dumps(line) + "\n")
    return path


def test_slots_and_extras_are_checked(tmp_path: Path):
    for slots, text in (
        (["ego_left", "ego_right"], "one slot per lane"),
        (["ego_left", "ego_left", "outer_right"], "must be distinct"),
        (["ego_left", "middle", "outer_right"], "must be distinct names"),
    ):
        with pytest.raises(FormatError, match=text):
            import_tusimple(None, tmp_path / "o", labels=[_labels(tmp_path, slots=slots)])
    # a calibration of another size than the images
    small = tmp_path / "small.json"
    small.write_text(json.dumps(LENS.scaled(640, 360).to_dict()))
    with pytest.raises(FormatError, match="calibration is 640x360"):
        extras = ImportExtras.load(None, small)
        import_tusimple(None, tmp_path / "o", labels=[_labels(tmp_path)], extras=extras)
    # a box frame whose name fits two labelled images
    det = tmp_path / "det.json"
    det.write_text(json.dumps([{"name": "a.jpg", "labels": []}]))
    extras = ImportExtras.load(det, None)
    extras._frame_for("x/a.jpg")
    with pytest.raises(FormatError, match=r"fits both x/a\.jpg and y/a\.jpg"):
        extras._frame_for("y/a.jpg")


def test_nothing_that_trains_reads_the_real_set():
    """The real frames are a test set: no stage up to training names them, and the training
    code never refers to data/real."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for name in ("generate", "validate", "split", "train"):
        stage = json.dumps(stages[name])
        assert "data/real" not in stage, name
    for path in [REPO / "perception" / "train.py", *(REPO / "perception" / "model").glob("*.py")]:
        assert "data/real" not in path.read_text(), path
