"""`perception summary`: what a person reads at the end of `make run`, in at most 25 lines.

The headline figures of each evaluation (the simulated test split, the real footage), the
bench's end-to-end latency and throughput with its bars, what the monitor said on each
input, and where the pictures are. Every
input is named on the command line (the Makefile passes the pipeline's paths); a file that
is missing or unreadable is said to be so in its line, never an error: the summary is read
after a run that may have stopped half way.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

MAX_LINES = 25


def _load(path: str | None) -> tuple[dict[str, Any] | None, str]:
    """(the JSON object, '') or (None, why not)."""
    if not path:
        return None, "not given"
    try:
        d = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None, f"{path}: missing (stage not run?)"
    except (OSError, ValueError) as e:
        return None, f"{path}: unreadable ({type(e).__name__})"
    return (d, "") if isinstance(d, dict) else (None, f"{path}: not a JSON object")


def _get(d: Any, *keys: str) -> Any:
    """d[k1][k2]..., None where a level is missing or not an object."""
    for k in keys:
        d = d.get(k) if isinstance(d, dict) else None
    return d


def _pct(v: Any) -> str:
    return f"{100 * v:.1f} %" if isinstance(v, int | float) else "n/a"


def _lanes(name: str, m: dict[str, Any]) -> str:
    """A result line's start: its name and the TuSimple lane figures."""
    la = m.get("lanes") or {}
    acc, fp, fn = (_pct(la.get(k)) for k in ("accuracy", "fp", "fn"))
    return f"  {name:<16} lanes acc {acc}, FP {fp}, FN {fn}"


def _sim(path: str | None) -> list[str]:
    d, why = _load(path)
    if d is None:
        return [f"Simulated test split: {why}"]
    out = [f"Simulated test split ({path}):"]
    for name, m in d.items():
        if isinstance(m, dict) and "lanes" in m:
            ap, dist = _get(m, "detection", "ap50", "mean"), _get(m, "distance", "median_rel_error")
            tail = f"AP50 {_pct(ap)} | distance error {_pct(dist)} ({m.get('frames', '?')} frames)"
            out.append(f"{_lanes(name, m)} | {tail}")
    return out


def _real(path: str | None) -> list[str]:
    d, why = _load(path)
    if d is None:
        return [f"Real footage: {why}"]
    out = [f"Real footage ({path}, {d.get('frames', '?')} frames):"]
    for key in ("demo", "undistorted"):
        if isinstance(m := d.get(key), dict):
            recall = _pct(_get(m, "vehicle_recall", "iou50"))
            false = _get(m, "false_vehicle_boxes_per_frame", "iou50")
            tail = f"false boxes/frame {false if false is None else round(false, 2)}"
            tail += f", person boxes {m.get('person_boxes', 'n/a')}"
            out.append(f"{_lanes(key, m)} | vehicle recall@0.5 {recall} | {tail}")
    if ci := _intervals(_get(d, "demo", "interval95")):
        out.append(f"  demo, 95 % over frames: {ci}")
    return out


def _intervals(ci: Any) -> str:
    """evaluate-real's intervals over frames of the lane FP / FN and vehicle recall, or ''."""
    keys = (("lane FP", "lane_fp"), ("FN", "lane_fn"), ("recall@0.5", "vehicle_recall_iou50"))
    parts = [
        f"{name} {100 * v[0]:.0f}-{100 * v[1]:.0f} %"
        for name, key in keys
        if isinstance(v := _get(ci, key), list) and len(v) == 2
    ]
    return ", ".join(parts)


def _bench(path: str | None) -> list[str]:
    d, why = _load(path)
    if d is None or path is None:
        return [f"Bench: {why}"]
    try:
        e, t = d["e2e"], d["target"]
        by = {v["name"]: v for v in d["variants"]}
        main = d["main_variant"]
        lines = [
            f"Bench ({path}, {t['name']}, {main}): e2e p50 {e['p50_ms']:.2f} ms, p99 "
            f"{e['p99_ms']:.2f} ms, {d['fps']:.1f} FPS; model only {d['model']['p50_ms']:.2f} ms"
        ]
        for suffix, what in (("+overlay", "camera"), ("+overlay+throughput", "file")):
            ov = by.get(main + suffix, {})
            if ov.get("status") == "ok":
                lines.append(f"  with overlay and video ({what}): e2e p50 "
                             f"{ov['e2e']['p50_ms']:.2f} ms, {ov['fps']:.1f} FPS")  # fmt: skip
        fails = [v["check"] for v in d["verdicts"] if v["status"] == "FAIL"]
        passed = sum(v["status"] == "PASS" for v in d["verdicts"])
        lines.append(f"  bars: {passed} pass, {len(fails)} fail" + (": " if fails else ""))
        lines += [f"    FAIL {c}" for c in fails[:4]]
        if len(fails) > 4:  # the summary stays short; the table has every verdict
            lines.append(f"    and {len(fails) - 4} more: {Path(path).with_suffix('.md')}")
        return lines
    except (KeyError, TypeError, ZeroDivisionError):
        return [f"Bench: {path}: not a bench.json of this version"]


def _monitor(paths: list[str]) -> list[str]:
    """One line per report of `perception monitor` (its summary.json)."""
    out = []
    for path in paths:
        d, why = _load(path)
        try:
            if d is None:
                raise KeyError(why)
            sh = d["state_share"]
            line = (
                f"Monitor ({path}, {d['frames']} frames): ok {_pct(sh['ok'])}, warn "
                f"{_pct(sh['warn'])}, alert {_pct(sh['alert'])}"
            )
            if d.get("first_alert"):
                line += f"; first alert at frame {d['first_alert_frame']}: {d['first_alert']}"
            out.append(line)
        except (KeyError, TypeError):
            out.append(f"Monitor: {why or f'{path}: not a summary.json of perception monitor'}")
    return out


def _pictures(paths: list[str]) -> list[str]:
    have = [p for p in paths if Path(p).exists()]
    missing = [p for p in paths if not Path(p).exists()]
    out = ["Pictures: " + (", ".join(have) if have else "none yet")]
    if missing:
        out.append("  missing: " + ", ".join(missing))
    return out


def summary(args: argparse.Namespace) -> list[str]:
    """The summary's lines (at most MAX_LINES)."""
    lines = [*_sim(args.sim), *_real(args.real), *_bench(args.bench), *_monitor(args.monitor)]
    lines += _pictures(args.pictures)
    if len(lines) > MAX_LINES:
        lines = [*lines[: MAX_LINES - 1], f"... ({len(lines) - MAX_LINES + 1} more lines)"]
    return lines


def _cmd(args: argparse.Namespace) -> int:
    print("\n".join(summary(args)))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("summary", help="the pipeline's headline results in a few lines")
    p.add_argument("--sim", help="metrics.json of `perception evaluate` on the test split")
    p.add_argument("--real", help="metrics.json of `perception evaluate-real`")
    p.add_argument("--bench", help="bench.json of `perception bench`")
    p.add_argument("--monitor", nargs="*", default=[], help="summary.json of `perception monitor`")
    p.add_argument("--pictures", nargs="*", default=[], help="files and folders to point to")
    p.set_defaults(func=_cmd)
