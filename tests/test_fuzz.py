"""Seeded fuzzing of the files a user hands to the tools: label files, manifests, calibration,
importer labels and model metadata, mutated at random, then read by the commands. Every case
must end in time, with success or a one-line error of an expected kind naming a file, and
without changing anything outside its output folder or reading outside its input."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from dataset_factory import edit_label, encode_jpeg, make_dataset
from guards import none_inside, opened_paths, run, time_limit, tree_hashes

from perception.errors import UserError
from serving.contract import ContractError, ModelContract, tusimple_h_samples
from serving.engine import check_output_shapes

SEED = 20261201
SIZE = (64, 48)
HOSTILE: list[Any] = [
    None,
    True,
    -1,
    0,
    2**70,
    1.5,
    -1e308,
    "",
    "x",
    "../../../../outside/secret.jpg",
    "/dev/zero",
    "frames/000000.jpg",
    [],
    {},
    [1, 2],
    [[1, 2], [3]],
    {"a": [None]},
    ["car"] * 5,
]
RAW_TOKENS = [
    "NaN",
    "Infinity",
    "-Infinity",
    "1e400",
    "\xff",
    "{",
    "]",
    '"',
    "99999999999999999999",
]


def _paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path (tuple of keys / indices) into a JSON value, the root included."""
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc[:6]):
            out += _paths(v, (*prefix, i))
    return out


def mutate_json(doc: Any, rng: np.random.Generator) -> Any:
    """doc with one value replaced by a hostile one, or one key or item deleted."""
    paths = _paths(doc)
    path = paths[int(rng.integers(len(paths)))]
    if not path:
        return HOSTILE[int(rng.integers(len(HOSTILE)))]
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    if rng.random() < 0.2:
        del parent[path[-1]]
    else:
        parent[path[-1]] = HOSTILE[int(rng.integers(len(HOSTILE)))]
    return doc


def mutate_text(text: str, rng: np.random.Generator) -> str:
    """text with a number made NaN / Infinity / 1e400, a stray token, or cut short."""
    numbers = [m.span() for m in re.finditer(r"-?\d+\.?\d*", text)]
    r = rng.random()
    if r < 0.5 and numbers:
        a, b = numbers[int(rng.integers(len(numbers)))]
        return text[:a] + RAW_TOKENS[int(rng.integers(4))] + text[b:]
    at = int(rng.integers(len(text) + 1))
    if r < 0.8:
        return text[:at] + RAW_TOKENS[int(rng.integers(len(RAW_TOKENS)))] + text[at:]
    return text[:at]


def mutate_file(path: Path, rng: np.random.Generator, lines: bool) -> None:
    """One mutation of a JSON (or JSON lines) file, at JSON or at text level."""
    text = path.read_text()
    rows = text.splitlines() if lines else [text]
    k = int(rng.integers(len(rows))) if rows else 0
    try:
        if rng.random() < 0.35:
            raise ValueError("a text mutation")
        rows[k] = json.dumps(mutate_json(json.loads(rows[k]), rng))
        path.write_text("\n".join(rows) + "\n")
    except (ValueError, IndexError):  # also when an earlier mutation broke the JSON
        path.write_text(mutate_text(text, rng))


def mutate_frame(frame: Path, outside: Path, rng: np.random.Generator) -> None:
    """A frame replaced by a FIFO, a link out of the dataset, a folder, nothing or garbage."""
    frame.unlink()
    kind = int(rng.integers(5))
    if kind == 0:
        os.mkfifo(frame)
    elif kind == 1:
        frame.symlink_to(outside / "secret.jpg")
    elif kind == 2:
        frame.mkdir()
    elif kind == 3:
        frame.write_bytes(bytes(rng.integers(0, 256, 64, dtype=np.uint8)))


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny valid dataset (2 clips of 2 frames, 64x48, lanes with TuSimple xs), a TuSimple
    root and a BDD100K folder, copied afresh for every case."""
    base = tmp_path_factory.mktemp("pristine")
    ds = make_dataset(base / "ds", n_clips=2, frames=2, size=SIZE)
    n_h = len(tusimple_h_samples(SIZE[1]))
    for clip in (ds / "clips").iterdir():
        for k in range(2):
            edit_label(clip, k, lambda d: [lane.update(x_at_h=[-2.0] * n_h) for lane in d["lanes"]])
    splits = {"schema_version": 1, "train": ["c0000", "c0001"], "val": [], "test": []}
    (base / "splits.json").write_text(json.dumps(splits))
    jpeg = encode_jpeg(np.full((SIZE[1], SIZE[0], 3), 90, np.uint8))
    h = [20, 30, 40]
    tu = base / "tu"
    for n in (1, 2):
        (tu / "clips" / "a" / f"{n}.jpg").parent.mkdir(parents=True, exist_ok=True)
        (tu / "clips" / "a" / f"{n}.jpg").write_bytes(jpeg)
    line = {"lanes": [[10, 12, 14], [50, 48, 46]], "h_samples": h, "raw_file": "clips/a/1.jpg"}
    (tu / "label_data_1.json").write_text(
        json.dumps(line) + "\n" + json.dumps({**line, "raw_file": "clips/a/2.jpg"}) + "\n"
    )
    bdd = base / "bdd"
    bdd.mkdir()
    (bdd / "a.jpg").write_bytes(jpeg)
    box = {"category": "car", "box2d": {"x1": 5, "y1": 5, "x2": 30, "y2": 30}}
    lane = {"category": "lane/single white", "poly2d": [{"vertices": [[10, 47], [20, 20]]}]}
    frame = {"name": "a.jpg", "attributes": {"weather": "rainy"}, "labels": [box, lane]}
    (bdd / "det.json").write_text(json.dumps([frame]))
    (base / "outside").mkdir()
    (base / "outside" / "secret.jpg").write_bytes(jpeg)
    return base


def _case(pristine: Path, work: Path, rng: np.random.Generator) -> list[str]:
    """Copy the pristine world into work, mutate it at random, and pick a command."""
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(pristine, work, symlinks=True)
    ds, out = work / "ds", work / "out"
    clip = ds / "clips" / f"c000{int(rng.integers(2))}"
    target = int(rng.integers(8))
    for _ in range(int(rng.integers(1, 3))):
        if target <= 2:
            mutate_file(clip / "labels.jsonl", rng, lines=True)
        elif target == 3:
            mutate_file(ds / "manifest.json", rng, lines=False)
        elif target == 4:
            mutate_file(clip / ("calib.json" if rng.random() < 0.5 else "meta.json"), rng, False)
        elif target == 5:
            mutate_frame(
                clip / "frames" / f"00000{int(rng.integers(2))}.jpg", work / "outside", rng
            )
            target = 8  # one frame mutation is enough
        elif target == 6:
            mutate_file(work / "tu" / "label_data_1.json", rng, lines=True)
        else:
            mutate_file(work / "bdd" / "det.json", rng, lines=False)
    if target == 6:
        return ["import", "tusimple", "--root", str(work / "tu"), "--out", str(out / "t")]
    if target == 7:
        bdd = work / "bdd"
        det = ["--det-labels", str(bdd / "det.json")]
        return ["import", "bdd100k", "--images", str(bdd), *det, "--out", str(out / "b")]
    commands = [
        ["split", str(ds), "--out", str(out / "s.json")],
        ["export-labels", "coco", "--data", str(ds), "--out", str(out / "c.json")],
        ["export-labels", "tusimple", "--data", str(ds), "--out", str(out / "t.json")],
        ["validate-api", str(ds)],
        ["validate-api", str(ds)],
        ["clip-source", str(clip)],
    ]
    if rng.random() < 0.06:  # slower: Hough baseline, pycocotools and a plot
        where = ["--splits", str(work / "splits.json"), "--out", str(out / "e")]
        return ["evaluate", "--data", str(ds), *where, "--split", "train"]
    return commands[int(rng.integers(len(commands)))]


def _expected(fn: Callable[[], object]) -> str | None:
    """Run fn; None when it succeeds, else the one-line message of an expected error."""
    try:
        with time_limit(10):
            fn()
    except (UserError, OSError, ValueError) as e:  # what the CLI prints as one line, exit 2
        msg = str(e)
        assert "\n" not in msg.strip(), msg
        return msg
    return None


def _api(argv: list[str]) -> Callable[[], object]:
    """The readers that the CLI reaches only through slower paths, called directly: validate
    without its report (matplotlib), and the demo's clip source without a model."""
    if argv[0] == "validate-api":
        from perception.dataset.validate import run_validate

        return lambda: run_validate(argv[1], None, workers=1)

    def frames() -> int:
        from serving.io import open_source

        with open_source(argv[1]) as src:
            return sum(1 for _ in src)

    return frames


def test_fuzzed_inputs_never_crash_hang_or_write_outside(
    pristine: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(SEED)
    work = tmp_path / "w"
    outcomes: dict[str, int] = {"ok": 0, "refused": 0}
    for _ in range(300):
        argv = _case(pristine, work, rng)
        before = tree_hashes(work, skip=(work / "out",))
        if argv[0] in ("validate-api", "clip-source"):
            with opened_paths() as opened:
                msg = _expected(_api(argv))
        else:
            outcome = run(argv, capsys, seconds=20)
            opened, msg = outcome.opened, outcome.error if outcome.code else None
        assert msg is None or str(work) in msg, (argv, msg)  # names the file
        assert tree_hashes(work, skip=(work / "out",)) == before, argv
        none_inside(opened, work / "outside")
        outcomes["refused" if msg else "ok"] += 1
    # the mutations must reach the error paths, and leave some inputs usable
    assert outcomes["refused"] > 100 and outcomes["ok"] > 20, outcomes


def test_fuzzed_model_metadata_fails_at_load_with_one_line(tmp_path: Path) -> None:
    rng = np.random.default_rng(SEED + 1)
    good = ModelContract()
    gh, gw = good.grid
    shapes = {  # what the exported network's outputs are, batch axis symbolic
        "heatmap": ["batch", len(good.class_names), gh, gw],
        "box": ["batch", 4, gh, gw],
        "lane_logits": ["batch", len(good.lane_slots), len(good.row_anchors), good.lane_cells + 1],
        "lane_exist": ["batch", len(good.lane_slots)],
    }
    refused = 0
    for _ in range(300):
        meta = good.to_metadata()
        for _ in range(int(rng.integers(1, 3))):
            key = sorted(meta)[int(rng.integers(len(meta)))]
            r = rng.random()
            if r < 0.1:
                del meta[key]
            elif r < 0.5:
                meta[key] = mutate_text(meta[key], rng)
            else:
                meta[key] = json.dumps(mutate_json(json.loads(meta[key]), rng))

        def load(meta: dict[str, str] = meta) -> None:
            check_output_shapes(ModelContract.from_metadata(meta, "m.onnx"), shapes, "m.onnx")

        try:
            with time_limit(5):
                load()
        except ContractError as e:
            msg = str(e)
            assert "\n" not in msg and msg.startswith("m.onnx: "), msg
            assert "contract" in msg, msg
            refused += 1
    assert refused > 150
