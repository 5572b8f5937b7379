"""Sub-commands that convert published datasets to and from our format.

    perception import tusimple --root DIR | --labels FILE... --out DIR
                               [--det-labels FILE] [--calib FILE]
    perception import bdd100k --images DIR --det-labels FILE [--lane-labels FILE] --out DIR
    perception export-labels tusimple|coco --data DIR --out FILE [--clips ID ...]

The conversions live in perception.dataset.tusimple, .bdd100k and .coco.
"""

from __future__ import annotations

import argparse
import sys

from perception.dataset.bdd100k import import_bdd100k
from perception.dataset.coco import to_coco
from perception.dataset.convert import ImportReport
from perception.dataset.schema import Dataset
from perception.dataset.tusimple import import_tusimple, to_tusimple


def _print_report(report: ImportReport) -> None:
    print(report.summary())
    for line in report.warnings():
        print(f"perception: warning: {line}", file=sys.stderr)


def _run_import_tusimple(args: argparse.Namespace) -> int:
    from perception.dataset.tusimple_extras import ImportExtras

    extras = None
    if args.det_labels or args.calib:
        extras = ImportExtras.load(args.det_labels, args.calib)
    report = import_tusimple(
        args.root,
        args.out,
        link=not args.copy,
        progress=True,
        labels=args.labels or (),
        extras=extras,
    )
    _print_report(report)
    return 0


def _run_import_bdd100k(args: argparse.Namespace) -> int:
    report = import_bdd100k(
        args.images,
        args.det_labels,
        args.out,
        lane_labels=args.lane_labels,
        frames_per_clip=args.frames_per_clip,
        link=not args.copy,
        progress=True,
    )
    _print_report(report)
    return 0


def _run_export(args: argparse.Namespace) -> int:
    dataset = Dataset(args.data)
    if args.format == "tusimple":
        n = to_tusimple(dataset, args.out, args.clips)
        print(f"wrote {n} TuSimple lines to {args.out}")
    else:
        coco = to_coco(dataset, args.out, args.clips)
        print(f"wrote {len(coco['images'])} images, {len(coco['annotations'])} boxes to {args.out}")
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `import` and `export` sub-commands."""
    imp = subparsers.add_parser("import", help="import a published dataset into our format")
    sources = imp.add_subparsers(dest="source", required=True, metavar="SOURCE")

    t = sources.add_parser("tusimple", help="TuSimple lane labels (label_data_*.json)")
    where = t.add_mutually_exclusive_group(required=True)
    where.add_argument("--root", help="folder with label_data_*.json and clips/")
    where.add_argument(
        "--labels", nargs="+", help="TuSimple label files (raw_file relative to each)"
    )
    t.add_argument("--det-labels", help="boxes for the images: BDD100K / Scalabel JSON")
    t.add_argument("--calib", help="calibration JSON for every clip (perception calibrate)")
    t.add_argument("--out", required=True, help="dataset folder to write")
    t.add_argument("--copy", action="store_true", help="copy images instead of hard-linking")
    t.set_defaults(func=_run_import_tusimple)

    b = sources.add_parser("bdd100k", help="BDD100K detection (and lane) labels")
    b.add_argument("--images", required=True, help="folder of the images named in the labels")
    b.add_argument("--det-labels", required=True, help="detection label JSON (Scalabel)")
    b.add_argument("--lane-labels", help="lane marking label JSON (Scalabel)")
    b.add_argument("--out", required=True, help="dataset folder to write")
    b.add_argument(
        "--frames-per-clip",
        type=_positive_int,
        default=20,
        help="independent images grouped into one clip (default 20)",
    )
    b.add_argument("--copy", action="store_true", help="copy images instead of hard-linking")
    b.set_defaults(func=_run_import_bdd100k)

    exp = subparsers.add_parser(
        "export-labels", help="export our dataset as TuSimple or COCO labels"
    )
    exp.add_argument("format", choices=("tusimple", "coco"))
    exp.add_argument("--data", required=True, help="dataset folder (with manifest.json)")
    exp.add_argument("--out", required=True, help="file to write (.json)")
    exp.add_argument("--clips", nargs="+", metavar="ID", help="only these clips")
    exp.set_defaults(func=_run_export)
