"""Leakage checks of a train/val/test split: every clip of the dataset in exactly one split,
no clip the dataset lacks, and no image content (file hash) in two splits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from perception.dataset.checks import content_hash, problem, read_frame
from perception.dataset.schema import Clip

SPLIT_NAMES = ("train", "val", "test")


def check_splits(
    splits: Mapping[str, Sequence[str]],
    clip_ids: Sequence[str],
    hashes: Mapping[str, Sequence[tuple[str, int, str]]],
    splits_path: Path | str,
    clips_dir: Path | str,
) -> list[str]:
    """Leakage check: every clip of the dataset in exactly one split, no unknown clip, and no
    image content (hash) in two splits. hashes: clip id -> (hash, frame, image) per frame."""
    err: list[str] = []
    where: dict[str, str] = {}
    known = set(clip_ids)
    for name in SPLIT_NAMES:
        for cid in splits.get(name, []):
            if cid in where:
                err.append(problem(splits_path, cid, f"in both {where[cid]} and {name}"))
                continue
            where[cid] = name
            if cid not in known:
                err.append(problem(splits_path, cid, f"in {name} but not in manifest.json"))
    for cid in clip_ids:
        if cid not in where:
            err.append(problem(splits_path, cid, "in no split"))
    first: dict[str, tuple[str, int]] = {}
    for cid in sorted(where, key=lambda c: (SPLIT_NAMES.index(where[c]), c)):
        for h, frame, image in hashes.get(cid, ()):
            other = first.setdefault(h, (cid, frame))
            if where[other[0]] != where[cid]:
                err.append(
                    problem(
                        Path(clips_dir) / cid / image,
                        cid,
                        f"identical to clip "
                        f"{other[0]} frame {other[1]} ({other[0]} is in "
                        f"{where[other[0]]}, {cid} in {where[cid]})",
                        frame,
                        "image",
                    )
                )
    return err


def hash_images(clip_dir: str) -> list[tuple[str, int, str]]:
    """(content hash, frame, image) for every frame of a clip, without decoding; raises
    FormatError naming a missing or unreadable image (checks.read_frame)."""
    clip = Clip(clip_dir)
    out = []
    for lab in clip.labels:
        out.append((content_hash(read_frame(clip, lab)), lab.frame, lab.image))
    return out
