"""`perception validate DIR`: the data quality gate.

Checks every clip of a dataset (see checks.py for the list), collects all problems, writes the
data report and profile (report.py), warns on class imbalance and fails with the first problem
(file, clip, frame, field) plus the number of further problems. Clips are checked in worker
processes, one clip per task.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import sys
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from perception.dataset.checks import ClipResult, check_clip, problem
from perception.dataset.leakage import check_splits
from perception.dataset.schema import Dataset, FormatError
from perception.params import ValidateParams, load_params, section
from serving.contract import CLASS_NAMES

PROFILE_FRAMES = 400  # about this many frames get image statistics


class ValidationError(FormatError):
    """The dataset failed the gate; the message is one line naming file, clip, frame, field."""


@dataclass
class ValidationResult:
    root: Path
    clips: list[ClipResult]
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def _manifest_entries(ds: Dataset) -> list[dict]:
    """The manifest's clip entries, each with a clip_id that names a folder inside clips/."""
    ids = ds.clip_ids()
    path = ds.root / "manifest.json"
    dup = [c for c, n in Counter(ids).items() if n > 1]
    if dup:
        raise ValidationError(problem(path, dup[0], "listed twice", None, "clips"))
    for cid in ids:
        ds.clip(cid)  # FormatError naming the manifest for '../x' and the like
    return list(ds.manifest["clips"])


def _count(v: object) -> bool:
    """v is a frame count: a whole number >= 0 (not a bool, which JSON keeps apart)."""
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _manifest_errors(ds: Dataset, entries: list[dict], results: list[ClipResult]) -> list[str]:
    """Frame counts in manifest.json against the labels actually present."""
    path = ds.root / "manifest.json"
    err = []
    for entry, r in zip(entries, results, strict=True):
        if not Path(r.path).is_dir():
            err.append(problem(path, r.clip_id, f"listed but {r.path} does not exist"))
        elif entry.get("num_frames") != r.num_frames:
            err.append(
                problem(
                    path,
                    r.clip_id,
                    f"{entry.get('num_frames')} but labels.jsonl has {r.num_frames} frames",
                    None,
                    "num_frames",
                )
            )
    total = sum(r.num_frames for r in results)
    if ds.manifest.get("num_frames") not in (None, total):
        err.append(f"{path}: num_frames: {ds.manifest['num_frames']} but the clips have {total}")
    return err


def imbalance_warnings(class_counts: dict[str, int], ratio: float) -> list[str]:
    """Warn when a class has no instances or commonest / rarest > ratio."""
    counts = {c: class_counts.get(c, 0) for c in CLASS_NAMES}
    out = [f"class imbalance: no {c} instances" for c, n in counts.items() if n == 0]
    present = {c: n for c, n in counts.items() if n > 0}
    if present:
        hi, lo = max(present, key=present.__getitem__), min(present, key=present.__getitem__)
        if present[hi] > ratio * present[lo]:
            out.append(
                f"class imbalance: {hi} {present[hi]} vs {lo} {present[lo]} "
                f"(ratio {present[hi] / present[lo]:.1f} > {ratio:g})"
            )
    return out


def _run_checks(
    dirs: list[str],
    tol_ms: float,
    sample_every: int,
    workers: int,
    progress: bool,
    on_done: Callable[[ClipResult], None],
) -> list[ClipResult]:
    results: dict[str, ClipResult] = {}
    bar = tqdm(total=len(dirs), unit="clip", desc="validate", disable=not progress or None)
    if workers <= 1 or len(dirs) <= 1:
        for d in dirs:
            results[d] = check_clip(d, tol_ms, sample_every)
            bar.update(1)
    else:
        ctx = multiprocessing.get_context("spawn")  # no fork of a process with threads
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            futures = {pool.submit(check_clip, d, tol_ms, sample_every): d for d in dirs}
            for fut in futures:
                results[futures[fut]] = fut.result()
                bar.update(1)
    bar.close()
    out = [results[d] for d in dirs]
    for r in out:
        on_done(r)
    return out


def validate_dataset(
    root: str | Path,
    params: ValidateParams | None = None,
    *,
    splits_path: str | Path | None = None,
    workers: int = 2,
    progress: bool = False,
) -> ValidationResult:
    """Check a dataset and collect every problem; raises only when manifest.json itself is
    unusable. splits_path: a splits file (split.py) to check for leakage."""
    params = params or ValidateParams()
    ds = Dataset(root)
    entries = _manifest_entries(ds)
    dirs = [str(ds.clip(c["clip_id"]).path) for c in entries]
    total = sum(c["num_frames"] for c in entries if _count(c.get("num_frames")))
    sample_every = max(1, math.ceil(total / PROFILE_FRAMES))
    res = ValidationResult(ds.root, [])
    res.clips = _run_checks(
        dirs,
        params.sync_tolerance_ms,
        sample_every,
        workers,
        progress,
        lambda r: res.errors.extend(r.errors),
    )
    res.errors += _manifest_errors(ds, entries, res.clips)
    if splits_path is not None:
        from perception.dataset.split import load_splits

        res.errors += check_splits(
            load_splits(splits_path),
            [r.clip_id for r in res.clips],
            {r.clip_id: r.hashes for r in res.clips},
            splits_path,
            ds.root / "clips",
        )
    counts: Counter[str] = Counter()
    for r in res.clips:
        counts.update(r.class_counts)
    res.warnings = imbalance_warnings(dict(counts), params.imbalance_ratio)
    return res


def run_validate(
    root: str | Path,
    report_dir: str | Path | None = "reports/data",
    params: ValidateParams | None = None,
    *,
    profile_out: str | Path | None = None,
    splits_path: str | Path | None = None,
    workers: int = 2,
    progress: bool = False,
) -> ValidationResult:
    """validate_dataset, then the report (skipped when report_dir is None); prints warnings to
    stderr and raises ValidationError (first problem, count of the rest) when the dataset
    fails."""
    res = validate_dataset(
        root, params, splits_path=splits_path, workers=workers, progress=progress
    )
    if report_dir is not None:
        from perception.dataset.report import write_report  # matplotlib: only when reporting

        write_report(res.clips, res.errors, res.warnings, report_dir, profile_out)
    for w in res.warnings:
        print(f"perception: warning: {w}", file=sys.stderr)
    if res.errors:
        more = len(res.errors) - 1
        see = f", see {Path(report_dir) / 'report.json'}" if report_dir is not None else ""
        tail = f" (and {more} more errors{see})" if more else ""
        raise ValidationError(res.errors[0] + tail)
    return res


def default_report_dir(root: str | Path) -> Path:
    """Where a report goes unless --report-dir says: beside the dataset, <root>-report (never
    a pipeline output such as reports/data, which dvc.yaml passes explicitly)."""
    root = Path(root).resolve()
    return root.with_name(f"{root.name}-report")


def _cmd(args: argparse.Namespace) -> int:
    params = section(load_params(args.params), ValidateParams)
    if args.report_dir is None:
        args.report_dir = default_report_dir(args.dir)
    res = run_validate(
        args.dir,
        args.report_dir,
        params,
        profile_out=args.profile_out,
        splits_path=args.splits,
        workers=args.workers,
        progress=True,
    )
    frames = sum(r.num_frames for r in res.clips)
    print(f"{args.dir}: {len(res.clips)} clips, {frames} frames OK; report in {args.report_dir}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "validate",
        help="check a dataset and write the data report",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    p.add_argument("dir", help="dataset root (manifest.json, clips/)")
    p.add_argument("--report-dir", help="report folder (default: beside the dataset, <dir>-report)")
    p.add_argument(
        "--profile-out", default=None, help="data profile path (default: <report-dir>/profile.json)"
    )
    p.add_argument("--splits", default=None, help="a splits file to check for leakage")
    p.add_argument("--params", default="params.yaml", help="default: %(default)s")
    p.add_argument("--workers", type=int, default=2, help="processes (default: %(default)s)")
    p.set_defaults(func=_cmd)
