"""A generated dataset in shards: which clips a shard holds, and the merge back into one.

`perception generate --shard i/n` writes shard i (0-based) of n: the clips whose index k
(in the unsharded dataset) has k mod n == i. Interleaving rather than contiguous blocks keeps
the shards the same size to one clip and spreads slow scenarios (dense traffic, rain) over
the machines. Each shard is a dataset of its own (validate can read it) whose manifest.json
carries a ``shard`` object {index, count, clips_total}.

`perception generate --merge SHARD... --out DIR` copies every shard's clips into one
dataset and writes one manifest, in clip-index order, without the ``shard`` object: the
result is byte for byte the unsharded dataset, because each clip's bytes depend only on
(seed, clip index) (perception.sim.generate.clip_seeds).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perception.dataset.output import staged_dataset_dir
from perception.dataset.schema import Dataset, write_manifest
from perception.errors import UserError

# manifest keys that write_manifest computes; the rest (generator, seed, sizes) must agree
_COMPUTED = ("schema_version", "source", "num_clips", "num_frames", "classes", "lane_slots")


@dataclass(frozen=True)
class Shard:
    index: int  # 0-based
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """'i/n' with 0 <= i < n; UserError otherwise."""
        try:
            i, n = (int(x) for x in text.split("/"))
        except ValueError:
            raise UserError(f"--shard {text!r}: expected i/n, e.g. 0/4") from None
        if n < 1 or not 0 <= i < n:
            raise UserError(f"--shard {text!r}: expected 0 <= i < n")
        return cls(i, n)

    def indices(self, clips: int) -> list[int]:
        """Clip indices of this shard, ascending."""
        if self.count > clips:
            raise UserError(f"--shard {self.index}/{self.count}: more shards than clips ({clips})")
        return list(range(self.index, clips, self.count))

    def manifest_field(self, clips: int) -> dict[str, Any]:
        return {"shard": {"index": self.index, "count": self.count, "clips_total": clips}}


def merge_shards(shard_dirs: list[str | Path], out: str | Path) -> int:
    """Merge the shards written by `generate --shard i/n` (all n of them, any order) into
    `out` (replaced only when it is a dataset). Returns the number of clips."""
    if not shard_dirs:
        raise UserError("--merge: name the shard folders")
    shards: dict[int, tuple[Dataset, dict[str, Any], list[dict]]] = {}
    common: dict[str, Any] | None = None
    for d in shard_dirs:
        ds = Dataset(d)
        m = ds.manifest
        sh = m.get("shard")
        if not isinstance(sh, dict):
            raise UserError(f"{ds.root / 'manifest.json'}: not a shard (no shard object)")
        # everything but the computed keys, the clip list and the shard's own index
        rest = {k: v for k, v in m.items() if k not in (*_COMPUTED, "clips")}
        rest["shard"] = {k: v for k, v in sh.items() if k != "index"}
        if common is None:
            common = rest
        elif rest != common:
            raise UserError(f"{d}: another generation than {shard_dirs[0]} (seed, sizes, count)")
        if sh["index"] in shards:
            raise UserError(f"{d}: shard {sh['index']} named twice")
        ds.clip_ids()  # checks the clip list's shape
        shards[sh["index"]] = (ds, m, m["clips"])
    assert common is not None
    sh = common.pop("shard")
    count, total = int(sh["count"]), int(sh["clips_total"])
    missing = sorted(set(range(count)) - set(shards))
    if missing:
        raise UserError(f"--merge: shards {missing} of {count} missing")
    entries: list[dict | None] = [None] * total
    for i, (ds, _m, clips) in shards.items():
        want = len(range(i, total, count))
        if len(clips) != want:
            raise UserError(f"{ds.root}: {len(clips)} clips, shard {i}/{count} has {want}")
        for j, entry in enumerate(clips):
            entries[i + j * count] = entry
    source = next(iter(shards.values()))[1]["source"]
    with staged_dataset_dir(out) as stage:
        for _i, (ds, _m, clips) in sorted(shards.items()):
            for entry in clips:
                clip = ds.clip(entry["clip_id"])  # a plain folder inside clips/, or refused
                shutil.copytree(clip.path, stage / "clips" / entry["clip_id"])
        write_manifest(stage, source, [e for e in entries if e is not None], **common)
    return total
