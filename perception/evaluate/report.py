"""The outputs of `perception evaluate`: the DVC metrics and plots files, TuSimple and COCO
exports, a slice chart and a stdout table."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from perception.dataset.lane_rows import lanes_to_tusimple_xs
from perception.dataset.schema import FormatError, Lane
from perception.dataset.tusimple import frame_to_tusimple
from perception.evaluate.frames import Frame, Run
from perception.evaluate.scoring import VEHICLES, coco_detections
from serving.files import atomic_write_bytes, atomic_write_text, dumps_strict


def _vehicle_ap50(det: dict | None) -> float | None:
    """Mean AP50 of the vehicle classes that have gt (None without)."""
    if det is None:
        return None
    vals = [det["ap50"][c] for c in VEHICLES if det["ap50"].get(c) is not None]
    return float(np.mean(vals)) if vals else None


def _rows(m: dict) -> list[tuple[str, dict]]:
    return [("all", m), *m["slices"].items()]


def plot_slices(metrics: dict[str, Any]) -> bytes:
    """PNG bytes: lane accuracy and vehicle AP50 per slice, one bar per predictor."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(metrics)
    labels = [r for r, _ in _rows(metrics[names[0]])]
    figures: list[tuple[str, Callable[[dict], float | None]]] = [
        ("lane accuracy (TuSimple)", lambda s: s["lanes"]["accuracy"]),
        ("vehicle AP50", lambda s: _vehicle_ap50(s["detection"])),
    ]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    x = np.arange(len(labels))
    width = 0.8 / max(len(names), 1)
    for ax, (title, get) in zip(axes, figures, strict=True):
        for k, name in enumerate(names):
            vals = [get(s) for _, s in _rows(metrics[name])]
            ax.bar(x + k * width, [np.nan if v is None else v for v in vals], width, label=name)
        if all(get(s) is None for n in names for _, s in _rows(metrics[n])):
            ax.text(0.5, 0.5, "no predictions", transform=ax.transAxes, ha="center")
        ax.set_xticks(x + width * (len(names) - 1) / 2, labels)
        ax.set_ylim(0, 1)
        ax.set_title(title)
    axes[0].legend(loc="lower left", fontsize="small")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def _tusimple_lines(frames: Sequence[Frame], run: Run | None) -> str:
    """TuSimple json lines: the run's predictions, or the ground truth when run is None."""
    lines = []
    for i, f in enumerate(frames):
        if run is None:
            try:
                d = frame_to_tusimple(f.raw_file, f.label, f.h_samples)
            except ValueError as e:  # lanes without x_at_h for the clip's h_samples
                raise FormatError(f"{f.clip.path / 'labels.jsonl'}: {e}") from None
        else:
            r = run.results[i]
            lanes = [Lane("pred", [], [float(x) for x in xs]) for xs in r.lanes]
            d = {
                "raw_file": f.raw_file,
                "lanes": lanes_to_tusimple_xs(lanes),
                "h_samples": list(f.h_samples),
                "run_time": round(r.run_time_ms, 3),
            }
        lines.append(dumps_strict(d, separators=(",", ":")) + "\n")
    return "".join(lines)


def write_outputs(
    out: Path,
    frames: Sequence[Frame],
    runs: Sequence[Run],
    gt: dict,
    metrics: dict[str, Any],
    pr: list[dict],
) -> None:
    """Write every output file of `perception evaluate` into out (see its module doc), all
    rendered first: a failure leaves no mix of new and old files."""
    main = runs[-1]
    texts = {
        "metrics.json": dumps_strict(metrics, indent=2) + "\n",
        "pr_curves.json": dumps_strict(pr) + "\n",
        "tusimple_pred.json": _tusimple_lines(frames, main),
        "tusimple_gt.json": _tusimple_lines(frames, None),
        "coco_gt.json": dumps_strict(gt) + "\n",
        "coco_pred.json": dumps_strict(coco_detections(frames, main.results)) + "\n",
    }
    png = plot_slices(metrics)
    for name, text in texts.items():
        atomic_write_text(out / name, text)
    atomic_write_bytes(out / "slices.png", png)


def _fmt(v: float | None, pct: bool = True) -> str:
    if v is None:
        return "-"
    return f"{100 * v:.1f}" if pct else f"{v:.3f}"


def print_table(metrics: dict[str, Any]) -> None:
    """A compact table: rows all + slices (with frame counts), per predictor TuSimple
    accuracy / FP / FN and mean AP50, in percent."""
    names = list(metrics)
    group = f" | {'acc':>5} {'FP':>5} {'FN':>5} {'AP50':>5}"
    print(" " * 15 + "".join(f" | {n[: len(group) - 3]:<{len(group) - 3}}" for n in names))
    head = f"{'slice':<8}{'frames':>7}" + group * len(names)
    print(head)
    print("-" * len(head))
    rows = {n: dict(_rows(metrics[n])) for n in names}
    for label, s0 in _rows(metrics[names[0]]):
        line = f"{label:<8}{s0['frames']:>7}"
        for n in names:
            s = rows[n][label]
            det = s["detection"]
            ap = det["ap50"]["mean"] if det else None
            la = s["lanes"]
            line += (
                f" | {_fmt(la['accuracy']):>5} {_fmt(la['fp']):>5} "
                f"{_fmt(la['fn']):>5} {_fmt(ap):>5}"
            )
        print(line)


def print_recall_by_height(metrics: dict[str, Any]) -> None:
    """Per class of each predictor that detects: recall at IoU 0.5 by box height, in percent,
    with the number of boxes in each bin."""
    for name, m in metrics.items():
        by = (m.get("detection") or {}).get("recall50_by_height_px")
        if not by:
            continue
        print(f"{name}: recall at IoU 0.5 by box height (px at the source size; boxes)")
        for cls, bins in by.items():
            cells = [f"{lab} {_fmt(b['recall']):>5} ({b['boxes']})" for lab, b in bins.items()]
            print(f"  {cls:<11}" + " | ".join(cells))
