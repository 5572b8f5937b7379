"""TuSimple lane format: import into our dataset format and export from it (the lane
conversions both importers and evaluation share are perception.dataset.lane_rows).

Published layout: a root with ``label_data_*.json`` and/or ``test_label.json``, each in JSON
lines, one labelled frame a line::

    {"lanes": [[x, ...], ...], "h_samples": [160, ..., 710], "raw_file": "clips/0313-1/6040/20.jpg"}

``lanes[i][j]`` is the x pixel of lane i on row ``h_samples[j]``, -2 where the lane has no
point; raw_file is relative to the label file's folder. Each folder of raw_file (clips/A/B)
is a 20-frame, 20 fps sequence of which only the last frame (20.jpg) is labelled: an import
makes one clip per folder holding its labelled frames only, timestamped (n - 1) * 50 ms for
n.jpg. TuSimple lanes are unordered; ``assign_lane_slots`` gives them our slots, unless a
line carries the optional ``slots`` field (not in the published files): one of our slot
names per lane, used as given. Other extra fields (``extra_lanes``, ...) are ignored.

Boxes from a BDD100K / Scalabel detection file and a calibration for the clips can come
along (perception.dataset.tusimple_extras). Each imported clip records the raw_file of its
frames, in frame order, as ``sources`` in the manifest.

An import refuses, naming the label file and line, a raw_file outside the label file's folder
and a number JSON does not allow (NaN, Infinity, 1e400); it writes into a hidden folder that
replaces --out only at the end (perception.dataset.output).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from perception.dataset.convert import (
    ImportReport,
    SourceFrame,
    frame_image_name,
    inside_root,
    read_image_size,
    safe_id,
    select_clips,
    write_imported_clip,
)
from perception.dataset.lane_rows import (
    MIN_LANE_POINTS,
    NO_POINT,
    assign_lane_slots,
    lanes_to_tusimple_xs,
    xs_to_points,
)
from perception.dataset.output import provenance_path, staged_dataset_dir
from perception.dataset.schema import (
    ClipMeta,
    Dataset,
    FormatError,
    FrameLabel,
    Lane,
    open_text,
    write_manifest,
)
from serving.contract import LANE_SLOTS
from serving.files import atomic_write_text, loads_finite
from serving.geometry import Calib

if TYPE_CHECKING:  # the extras build on the BDD100K importer, a heavier import
    from perception.dataset.tusimple_extras import ImportExtras

FRAME_PERIOD_NS = 50_000_000  # TuSimple records at 20 fps
TUSIMPLE_TAGS = {"time_of_day": "day", "weather": "clear", "road": "unknown", "traffic": "unknown"}


# ---------------------------------------------------------------- import


@dataclass
class TuSimpleRecord:
    """One line of a TuSimple label file."""

    origin: str  # "<label file>: line <n>", for error messages
    image: Path  # absolute path of raw_file
    raw_file: str
    lanes: list[list[float]]
    h_samples: list[int]
    slots: list[str] | None = None  # our slot per lane, when the line names them


def label_files(root: Path) -> list[Path]:
    """The label files of a TuSimple root: label_data_*.json then test_label.json."""
    if not root.is_dir():
        raise FormatError(f"{root}: not a folder")
    files = sorted(root.glob("label_data_*.json"))
    if (root / "test_label.json").is_file():
        files.append(root / "test_label.json")
    if not files:
        raise FormatError(f"{root}: no label_data_*.json or test_label.json")
    return files


def read_records(path: Path) -> Iterator[TuSimpleRecord]:
    """Parse one TuSimple label file; a malformed line is a FormatError naming file and line."""
    with open_text(path) as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                yield _parse_record(path, n, line)


def _parse_record(path: Path, n: int, line: str) -> TuSimpleRecord:
    origin = f"{path}: line {n}"
    try:
        d = loads_finite(line)
        raw_file, h_samples = d["raw_file"], [int(h) for h in d["h_samples"]]
        lanes = [[float(x) for x in lane] for lane in d["lanes"]]
        if not isinstance(raw_file, str):
            raise TypeError(f"raw_file {raw_file!r} is not a path")
    except (KeyError, TypeError, ValueError) as e:  # JSON errors are ValueErrors
        raise FormatError(f"{origin}: malformed TuSimple label ({type(e).__name__}: {e})") from None
    if len(set(h_samples)) != len(h_samples):
        raise FormatError(f"{origin}: h_samples repeat a row")
    for i, lane in enumerate(lanes):
        if len(lane) != len(h_samples):
            raise FormatError(f"{origin}: lane {i} has {len(lane)} xs for {len(h_samples)} rows")
    slots = _parse_slots(origin, d.get("slots"), len(lanes))
    image = inside_root(path.parent, raw_file, f"{origin}: raw_file")
    return TuSimpleRecord(origin, image, raw_file, lanes, h_samples, slots)


def _parse_slots(origin: str, slots: object, n_lanes: int) -> list[str] | None:
    """The optional ``slots`` field: one distinct name of LANE_SLOTS per lane, or None."""
    if slots is None:
        return None
    if not isinstance(slots, list) or len(slots) != n_lanes:
        raise FormatError(f"{origin}: slots must list one slot per lane ({n_lanes})")
    unknown = [s for s in slots if s not in LANE_SLOTS]
    if unknown or len(set(slots)) != len(slots):
        raise FormatError(
            f"{origin}: slots {slots} must be distinct names of {', '.join(LANE_SLOTS)}"
        )
    return [str(s) for s in slots]


def clip_id_for(raw_file: str) -> str:
    """'clips/0313-1/6040/20.jpg' -> 'tusimple-0313-1-6040'."""
    parts = list(Path(raw_file).parent.parts)
    if parts and parts[0] == "clips":
        parts = parts[1:]
    return "tusimple-" + safe_id("-".join(parts))


def _frame_number(rec: TuSimpleRecord) -> int | None:
    stem = Path(rec.raw_file).stem
    return int(stem) if stem.isdigit() else None


def _lanes_for(rec: TuSimpleRecord, width: int, height: int, report: ImportReport) -> list[Lane]:
    xs_list = [[x if x >= 0 else NO_POINT for x in xs] for xs in rec.lanes]
    pts_list = [xs_to_points(xs, rec.h_samples) for xs in xs_list]
    keep = [i for i, pts in enumerate(pts_list) if len(pts) >= MIN_LANE_POINTS]
    report.dropped["lanes with fewer than 2 points"] += len(pts_list) - len(keep)
    if rec.slots is not None:
        slots: list[str | None] = [rec.slots[i] for i in keep]
    else:
        slots = assign_lane_slots([pts_list[i] for i in keep], width, height)
    report.dropped["lanes beyond the 4 slots"] += slots.count(None)
    return [
        Lane(slot=slot, points=pts_list[i], x_at_h=xs_list[i], style="none", color="white")
        for i, slot in zip(keep, slots, strict=True)
        if slot is not None
    ]


def _import_clip(
    clip_id: str,
    records: list[TuSimpleRecord],
    clips_dir: Path,
    link: bool,
    report: ImportReport,
    extras: ImportExtras | None,
) -> dict:
    if all(_frame_number(r) is not None for r in records):
        records = sorted(records, key=lambda r: _frame_number(r) or 0)
    else:
        records = sorted(records, key=lambda r: r.raw_file)
    h_samples = records[0].h_samples
    frames, size, next_id = [], None, 0
    for index, rec in enumerate(records):
        if rec.h_samples != h_samples:
            raise FormatError(f"{rec.origin}: h_samples differ from {records[0].origin}")
        frame_size = read_image_size(rec.image, rec.origin)
        if size not in (None, frame_size):
            raise FormatError(f"{rec.origin}: image size differs within folder of {rec.raw_file}")
        size = frame_size
        number = _frame_number(rec)
        t_ns = (number - 1 if number is not None and number >= 1 else index) * FRAME_PERIOD_NS
        obstacles = (
            [] if extras is None else extras.obstacles(rec.raw_file, frame_size, report, next_id)
        )
        next_id += len(obstacles)  # track ids unique within the clip
        label = FrameLabel(
            index,
            frame_image_name(index, rec.image),
            t_ns,
            lanes=_lanes_for(rec, *frame_size, report),
            obstacles=obstacles,
        )
        frames.append(SourceFrame(label, rec.image))
    assert size is not None
    meta = ClipMeta(
        clip_id, "tusimple", 20.0, len(frames), h_samples, dict(TUSIMPLE_TAGS), sensors="none"
    )
    calib = Calib.default(*size) if extras is None else extras.calib_for(size, clip_id)
    write_imported_clip(clips_dir, frames, calib, meta, link)
    return {
        "clip_id": clip_id,
        "num_frames": len(frames),
        "tags": dict(TUSIMPLE_TAGS),
        "sources": [r.raw_file for r in records],
    }


def import_tusimple(
    root: str | Path | None,
    out: str | Path,
    link: bool = True,
    progress: bool = False,
    labels: Sequence[str | Path] = (),
    extras: ImportExtras | None = None,
) -> ImportReport:
    """Import a TuSimple root (or the label files ``labels``, raw_file relative to each
    file's folder) into a dataset at ``out`` (clips/ and manifest.json): one clip per
    raw_file folder, in sorted clip id order. Images are hard-linked when possible, else copied
    (``link=False``: always copied). Lanes get style "none" and color "white" (TuSimple gives
    neither); lanes with < 2 points or beyond the 4 slots are dropped and counted.
    extras: boxes for the images and a calibration for every clip (see the module doc)."""
    out = Path(out)
    files = [Path(p) for p in labels] if labels else label_files(Path(root or "."))
    for path in files:
        if not path.is_file():
            raise FormatError(f"{path}: missing label file")
    groups: dict[str, list[TuSimpleRecord]] = defaultdict(list)
    seen: dict[Path, str] = {}
    for path in files:
        for rec in read_records(path):
            key = rec.image.resolve()
            if key in seen:
                raise FormatError(f"{rec.origin}: {rec.raw_file} already labelled at {seen[key]}")
            seen[key] = rec.origin
            groups[clip_id_for(rec.raw_file)].append(rec)
    report = ImportReport(out)
    clips = []
    with staged_dataset_dir(out) as stage:  # out replaced only once everything is written
        for clip_id in tqdm(sorted(groups), desc="tusimple", unit="clip", disable=not progress):
            recs = groups[clip_id]
            clips.append(_import_clip(clip_id, recs, stage / "clips", link, report, extras))
            report.clips += 1
            report.frames += clips[-1]["num_frames"]
        if extras is not None:
            extras.count_unused(report)
        importer = {
            "name": "perception.dataset.tusimple",
            "source_root": provenance_path(Path(root) if root else files[0].parent),
            "label_files": [p.name for p in files],
            **(extras.provenance() if extras is not None else {}),
            "dropped": dict(report.dropped),
        }
        write_manifest(stage, "tusimple", clips=clips, importer=importer)
    return report


# ---------------------------------------------------------------- export


def frame_to_tusimple(raw_file: str, label: FrameLabel, h_samples: list[int]) -> dict:
    """One TuSimple line for a frame: lanes in slot order with >= 2 points (see
    ``lanes_to_tusimple_xs``). A lane whose x_at_h does not match h_samples is a ValueError."""
    for lane in label.lanes:
        if len(lane.x_at_h) != len(h_samples):
            raise ValueError(
                f"frame {label.frame}: lane {lane.slot} has {len(lane.x_at_h)} xs "
                f"for {len(h_samples)} h_samples"
            )
    return {
        "lanes": lanes_to_tusimple_xs(label.lanes),
        "h_samples": list(h_samples),
        "raw_file": raw_file,
    }


def to_tusimple(dataset: Dataset, out_path: str | Path, clip_ids: list[str] | None = None) -> int:
    """Write the lanes of every frame of the chosen clips (default: all, manifest order) as
    TuSimple JSON lines to out_path, atomically; raw_file is the image path relative to the
    dataset root, h_samples come from each clip's meta. Returns the number of lines."""
    lines = []
    for clip in select_clips(dataset, clip_ids):
        h_samples = clip.meta.h_samples
        prefix = clip.path.relative_to(dataset.root).as_posix()
        for label in clip.labels:
            try:
                d = frame_to_tusimple(f"{prefix}/{label.image}", label, h_samples)
            except ValueError as e:
                raise FormatError(f"{clip.path / 'labels.jsonl'}: {e}") from None
            lines.append(json.dumps(d, separators=(",", ":")) + "\n")
    atomic_write_text(out_path, "".join(lines))
    return len(lines)
