"""`perception split DIR --out FILE`: clip-level train/val/test split, stratified by scenario.

Splitting by clip keeps every scene on one side. Clips are stratified on time_of_day+weather;
a stratum with fewer clips than needed to give the smallest non-zero split one clip
(ceil(1 / fraction)) falls back to time_of_day alone, and what is still too small is pooled.
Within a stratum the clips are shuffled with np.random.default_rng(seed) and each split gets
floor(fraction * n) clips, the remainder going to the splits with the largest fractional
parts (plus the shortfall carried over from earlier strata). With 3 or more clips, val and
test get at least one clip each when their fraction is positive.

The splits file (JSON): {"schema_version": 1, "seed", "fractions": {train, val, test},
"train": [clip ids], "val": [...], "test": [...], "counts": {"clips": {split: n},
"frames": {split: n}}, "strata": {stratum: {"clips": n, split: n, ...}}}.
"""

from __future__ import annotations

import argparse
import math
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from perception.dataset.leakage import SPLIT_NAMES, check_splits, hash_images
from perception.dataset.schema import Dataset, FormatError, read_json
from perception.errors import UserError
from perception.params import SplitParams, load_params, section
from serving.files import atomic_write_json

SPLITS_VERSION = 1


def fractions_of(params: SplitParams) -> dict[str, float]:
    """{train, val, test} fractions of the clips; raises UserError when they make no sense."""
    val, test = float(params.val), float(params.test)
    if not (0.0 <= val < 1.0 and 0.0 <= test < 1.0 and val + test < 1.0):
        raise UserError(f"split fractions val={val} test={test}: each in [0, 1), sum below 1")
    return {"train": round(1.0 - val - test, 10), "val": val, "test": test}


def stratify(tags: Mapping[str, Mapping[str, str]], min_size: int) -> dict[str, list[str]]:
    """Group clip ids (tags: clip id -> scenario tags) into strata of at least min_size clips
    where possible: "tod/weather", then "tod/*", then "*" for the rest."""
    fine: dict[str, list[str]] = defaultdict(list)
    for cid in sorted(tags):
        t = tags[cid]
        fine[f"{t.get('time_of_day', '?')}/{t.get('weather', '?')}"].append(cid)
    strata: dict[str, list[str]] = {}
    coarse: dict[str, list[str]] = defaultdict(list)
    for key, ids in fine.items():
        if len(ids) >= min_size:
            strata[key] = ids
        else:
            coarse[key.split("/")[0] + "/*"] += ids
    rest: list[str] = []
    for key, ids in coarse.items():
        if len(ids) >= min_size:
            strata[key] = ids
        else:
            rest += ids
    if rest:
        strata["*"] = sorted(rest)
    return strata


def allocate(
    strata: Mapping[str, list[str]], fractions: Mapping[str, float], rng: np.random.Generator
) -> dict[str, dict[str, list[str]]]:
    """stratum -> split -> clip ids, as described in the module docstring."""
    expected = dict.fromkeys(SPLIT_NAMES, 0.0)
    given = dict.fromkeys(SPLIT_NAMES, 0)
    out: dict[str, dict[str, list[str]]] = {}
    for key in sorted(strata):
        ids = [str(c) for c in rng.permutation(sorted(strata[key]))]
        n = len(ids)
        share = {s: fractions[s] * n for s in SPLIT_NAMES}
        quota = {s: math.floor(share[s]) for s in SPLIT_NAMES}
        carry = {s: expected[s] - given[s] for s in SPLIT_NAMES}
        order = sorted(SPLIT_NAMES, key=lambda s: -(share[s] - quota[s] + 0.5 * carry[s]))
        for i in range(n - sum(quota.values())):
            quota[order[i % len(order)]] += 1
        out[key], start = {}, 0
        for s in SPLIT_NAMES:
            out[key][s] = ids[start : start + quota[s]]
            start += quota[s]
            expected[s] += share[s]
            given[s] += quota[s]
    return out


def _ensure_minimum(
    alloc: dict[str, dict[str, list[str]]],
    fractions: Mapping[str, float],
) -> None:
    """With 3+ clips, move a train clip into an empty val or test whose fraction is > 0."""
    if sum(len(ids) for a in alloc.values() for ids in a.values()) < 3:
        return
    for s in ("val", "test"):
        if fractions[s] > 0 and not any(a[s] for a in alloc.values()):
            donor = max(sorted(alloc), key=lambda k: len(alloc[k]["train"]))
            if len(alloc[donor]["train"]) > 1 or fractions["train"] == 0:
                alloc[donor][s].append(alloc[donor]["train"].pop())


def make_splits(root: str | Path, params: SplitParams | None = None) -> dict[str, Any]:
    """Compute the splits document of the dataset at root (reads manifest.json and each
    clip's meta.json; deterministic for params.seed)."""
    params = params or SplitParams()
    fractions = fractions_of(params)
    ds = Dataset(root)
    ids = ds.clip_ids()
    counts = [c.get("num_frames") for c in ds.manifest["clips"]]
    frames = {cid: n if isinstance(n, int) else 0 for cid, n in zip(ids, counts, strict=True)}
    tags = {cid: _tags(ds, cid) for cid in sorted(frames)}
    positive = [f for f in fractions.values() if f > 0]
    min_size = math.ceil(1.0 / min(positive) - 1e-9)
    strata = stratify(tags, min_size)
    alloc = allocate(strata, fractions, np.random.default_rng(params.seed))
    _ensure_minimum(alloc, fractions)
    doc: dict[str, Any] = {
        "schema_version": SPLITS_VERSION,
        "seed": int(params.seed),
        "fractions": fractions,
    }
    for s in SPLIT_NAMES:
        doc[s] = sorted(c for a in alloc.values() for c in a[s])
    doc["counts"] = {
        "clips": {s: len(doc[s]) for s in SPLIT_NAMES},
        "frames": {s: sum(frames[c] for c in doc[s]) for s in SPLIT_NAMES},
    }
    doc["strata"] = {
        k: {"clips": len(strata[k]), **{s: len(a[s]) for s in SPLIT_NAMES}}
        for k, a in sorted(alloc.items())
    }
    return doc


def _tags(ds: Dataset, clip_id: str) -> dict[str, str]:
    """The clip's scenario tags as strings; FormatError naming its meta.json otherwise."""
    clip = ds.clip(clip_id)
    tags = clip.meta.tags
    if not isinstance(tags, dict):
        raise FormatError(f"{clip.path / 'meta.json'}: tags: expected an object")
    return {str(k): str(v) for k, v in tags.items()}


def load_splits(path: str | Path) -> dict[str, list[str]]:
    """Read a splits file: {"train": [clip ids], "val": [...], "test": [...]}."""
    p = Path(path)
    doc = read_json(p)
    if not isinstance(doc, dict) or doc.get("schema_version") != SPLITS_VERSION:
        raise FormatError(f"{p}: schema_version: expected {SPLITS_VERSION}")
    out = {}
    for s in SPLIT_NAMES:
        ids = doc.get(s)
        if not isinstance(ids, list) or not all(isinstance(c, str) for c in ids):
            raise FormatError(f"{p}: {s}: expected a list of clip ids")
        out[s] = ids
    return out


def check_split_file(root: str | Path, path: str | Path) -> None:
    """Leakage check of a splits file against the dataset (every clip in exactly one split,
    no identical image in two splits); raises FormatError with the first problem."""
    _check_leakage(root, load_splits(path), path)


def _check_leakage(root: str | Path, splits: Mapping[str, list[str]], path: str | Path) -> None:
    """check_split_file on splits in memory; `path` names them in the messages."""
    ds = Dataset(root)
    ids = ds.clip_ids()
    hashes = {cid: hash_images(str(ds.clip(cid).path)) for cid in ids}
    err = check_splits(splits, ids, hashes, path, ds.root / "clips")
    if err:
        more = f" (and {len(err) - 1} more)" if len(err) > 1 else ""
        raise FormatError(err[0] + more)


def run_split(
    root: str | Path,
    out: str | Path,
    params: SplitParams | None = None,
) -> dict[str, Any]:
    """make_splits and the leakage check, then write it atomically to out: a dataset that
    fails leaves no splits file behind (and an older one in place)."""
    doc = make_splits(root, params)
    _check_leakage(root, {s: doc[s] for s in SPLIT_NAMES}, out)
    atomic_write_json(out, doc)
    return doc


def _cmd(args: argparse.Namespace) -> int:
    base = section(load_params(args.params), SplitParams)
    params = SplitParams(
        seed=base.seed if args.seed is None else args.seed,
        val=base.val if args.val is None else args.val,
        test=base.test if args.test is None else args.test,
    )
    doc = run_split(args.dir, args.out, params)
    c = doc["counts"]
    print(
        f"{args.out}: "
        + ", ".join(f"{s} {c['clips'][s]} clips / {c['frames'][s]} frames" for s in SPLIT_NAMES)
    )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "split",
        help="clip-level train/val/test split",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    p.add_argument("dir", help="dataset root (manifest.json, clips/)")
    p.add_argument("--out", required=True, help="splits file to write (JSON)")
    p.add_argument("--params", default="params.yaml", help="default: %(default)s")
    p.add_argument("--seed", type=int, default=None, help="default: split.seed of params")
    p.add_argument("--val", type=float, default=None, help="default: split.val of params")
    p.add_argument("--test", type=float, default=None, help="default: split.test of params")
    p.set_defaults(func=_cmd)
