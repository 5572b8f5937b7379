"""The drift report of `perception monitor`: summary.json (the DVC metric), report.md,
properties.png (each property over time against the training range), states.png (the state
timeline and each property's out-of-range share) and the thumbnails of the frames where
alerts began (written by the trace).

Besides the per-frame states, the whole run is compared with the profile the way a batch
drift check would (FIELD-NOTES: Evidently's tests): PSI on the profile's bins, the KS test
against the profile's distribution (scipy.stats.kstest, its CDF interpolated between the
profile's 101 quantiles) and the Wasserstein distance to those quantiles over the
profile's standard deviation (scipy.stats.wasserstein_distance). A property drifts when the
KS test rejects (p < ks_pvalue) and the Wasserstein distance exceeds `wasserstein` (0.25, not
Evidently's 0.1: a profile of a few hundred scenes differs from another sample of the same
simulator by about 0.1 to 0.2): on a thousand correlated frames KS alone rejects any
difference, however small. Frames of one clip are not independent, so read p-values as a
ranking, not as exact probabilities.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from scipy import stats

from perception.params import MonitorParams
from serving.drift import ks as ks_binned
from serving.drift import psi as psi_binned
from serving.files import atomic_write_bytes, atomic_write_json, atomic_write_text
from serving.monitor import LEVELS
from serving.monitor_profile import MonitorProfile, outside_bins
from serving.monitor_props import INDEX

if TYPE_CHECKING:
    from perception.monitor.trace import Trace

STATE_COLOURS = {1: "#f0a500", 2: "#d62728"}


def whole_run(v: np.ndarray, entry: dict[str, Any], p: MonitorParams) -> dict[str, Any]:
    """One property over the whole run (v: its finite values) against its profile entry."""
    edges = np.asarray(entry["edges"])
    counts = np.bincount(np.searchsorted(edges, v, side="right"), minlength=len(edges) + 1)
    ref = np.asarray(entry["ref"])[None]
    psi = float(psi_binned(counts[None].astype(np.float64), ref)[0])
    sketch = np.asarray(entry["sketch"])
    out: dict[str, Any] = {"n": len(v), "median": float(np.median(v)), "psi": psi}
    outside = outside_bins(entry["kind"], ref[0], p.rare_mass)
    out["out"] = float(counts[outside].sum() / len(v))
    if entry["kind"] == "count":  # a step CDF: the binned statistic, no p-value
        out["ks"] = float(ks_binned(counts[None].astype(np.float64), ref)[0])
        out["ks_p"] = None
    else:
        levels = np.linspace(0.0, 1.0, len(sketch))
        res = stats.kstest(v, lambda x: np.interp(x, sketch, levels))
        out["ks"], out["ks_p"] = float(res.statistic), float(res.pvalue)
    std = float(entry["std"]) or 1.0
    out["wasserstein"] = float(stats.wasserstein_distance(v, sketch) / std)
    ks_rejects = out["ks_p"] is None or out["ks_p"] < p.ks_pvalue
    out["drift"] = bool(ks_rejects and out["wasserstein"] > p.wasserstein)
    out["psi_reading"] = (
        "significant"
        if psi > p.psi_significant
        else "moderate"
        if psi > p.psi_moderate
        else "stable"
    )
    return out


def summarize(t: Trace, prof: MonitorProfile, p: MonitorParams) -> dict[str, Any]:
    """summary.json: state shares, alerts, causes and each property's whole-run scores."""
    state = np.asarray(t.state)
    n = max(len(state), 1)
    values = t.array("values")
    props = {}
    for name in prof.props:
        v = values[:, INDEX[name]] if len(values) else np.zeros(0)
        v = v[np.isfinite(v)]
        if len(v):
            props[name] = whole_run(v, prof.raw["properties"][name], p)
    first = t.alerts[0] if t.alerts else None
    return {
        "frames": len(state),
        "clips": len(dict.fromkeys(t.clip)),
        "state_share": {lv: float((state == i).sum() / n) for i, lv in enumerate(LEVELS)},
        "alerts": len(t.alerts),
        "first_alert_frame": first["frame"] if first else None,
        "first_alert": first["reason"] if first else None,
        "causes": dict(Counter(c for c in t.cause if c)),
        "drifting": sum(1 for v in props.values() if v["drift"]),
        "properties": props,
    }


def _spans(state: np.ndarray, level: int) -> list[tuple[int, int]]:
    """(first, last + 1) frame of each run of state == level."""
    on = np.concatenate([[False], state == level, [False]])
    edges = np.flatnonzero(np.diff(on.astype(np.int8)))
    return list(zip(edges[::2], edges[1::2], strict=True))


def _shade(ax: Any, state: np.ndarray) -> None:
    for level, colour in STATE_COLOURS.items():
        for a, b in _spans(state, level):
            ax.axvspan(a - 0.5, b - 0.5, color=colour, alpha=0.15, lw=0)


def _outside(v: np.ndarray, entry: dict[str, Any], rare_mass: float) -> np.ndarray:
    """bool per value: in a bin outside the training range (NaN: False)."""
    edges = np.asarray(entry["edges"])
    mask = outside_bins(entry["kind"], np.asarray(entry["ref"]), rare_mass)
    return np.isfinite(v) & mask[np.searchsorted(edges, np.nan_to_num(v), side="right")]


def _training_band(ax: Any, entry: dict[str, Any], rare_mass: float) -> None:
    """The training range (grey) and its 5-95 % band (darker); for a count, a band on each
    value the profile holds."""
    if entry["kind"] == "count":
        seen = np.flatnonzero(~outside_bins("count", np.asarray(entry["ref"]), rare_mass))
        for k in seen:
            ax.axhspan(k - 0.4, k + 0.4, color="0.85", lw=0)
        return
    edges, q = entry["edges"], entry["quantiles"]
    ax.axhspan(edges[0], edges[-1], color="0.85", lw=0, label="training range")
    ax.axhspan(q["p05"], q["p95"], color="0.7", lw=0, label="training 5-95 %")


def _range_text(entry: dict[str, Any], rare_mass: float) -> str:
    """The training range as the report's table prints it; a count: the values seen, in
    runs ("0-3", "4-15+" when the last bin is open-ended)."""
    if entry["kind"] != "count":
        return f"{entry['edges'][0]:.3g} to {entry['edges'][-1]:.3g}"
    seen = np.flatnonzero(~outside_bins("count", np.asarray(entry["ref"]), rare_mass))
    runs: list[list[int]] = []
    for k in seen.tolist():
        if runs and k == runs[-1][-1] + 1:
            runs[-1].append(k)
        else:
            runs.append([k])
    last = len(entry["ref"]) - 1
    plus = "+" if entry.get("open_top") else ""
    text = [f"{r[0]}" if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs]
    return ", ".join(t + (plus if r[-1] == last else "") for t, r in zip(text, runs, strict=True))


def plot_properties(t: Trace, prof: MonitorProfile, path: Path) -> None:
    """Each profiled property over the frames: the training range (grey), its 5-95 %
    band (darker), the values (those outside the range in red), warn/alert spans shaded."""
    values, state = t.array("values"), np.asarray(t.state)
    names = list(prof.props)
    cols = 2
    rows = max(1, -(-len(names) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(12, 2.2 * rows), sharex=True, squeeze=False)
    x = np.arange(len(state))
    for ax, name in zip(axes.ravel(), names, strict=False):
        e = prof.raw["properties"][name]
        v = values[:, INDEX[name]] if len(values) else np.zeros(0)
        _shade(ax, state)
        _training_band(ax, e, prof.config.rare_mass)
        out = _outside(v, e, prof.config.rare_mass)
        ax.plot(x, v, ".", ms=2, color="#1f77b4")
        ax.plot(x[out], v[out], ".", ms=3, color="#d62728")
        ax.set_title(f"{name} ({e['unit']})", fontsize=9, loc="left")
        ax.tick_params(labelsize=8)
    for ax in axes.ravel()[len(names) :]:
        ax.axis("off")
    axes[0, 0].legend(fontsize=7, loc="upper right")
    for ax in axes[-1]:
        ax.set_xlabel("frame", fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def plot_states(t: Trace, p: MonitorParams, path: Path) -> None:
    """The state over the frames (ok / warn / alert) and each row's out-of-range share."""
    state, out = np.asarray(t.state), t.array("out")
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(12, 4.5), sharex=True, height_ratios=(1, 2))
    x = np.arange(len(state))
    _shade(a1, state)
    a1.step(x, state, where="mid", color="k", lw=1)
    a1.set_yticks(range(3), LEVELS)
    a1.set_ylim(-0.3, 2.3)
    a1.set_title("monitor state", fontsize=9, loc="left")
    for i, name in enumerate(t.rows):
        if len(out) and out[:, i].max() > 0:
            a2.plot(x, out[:, i], lw=1, label=name)
    for y, ls in ((p.out_warn, "--"), (p.out_alert, "-")):
        a2.axhline(y, color="0.4", ls=ls, lw=0.8)
    a2.set_ylim(-0.02, 1.02)
    a2.set_ylabel("share of window\nout of range", fontsize=8)
    a2.set_xlabel("frame", fontsize=8)
    if a2.get_legend_handles_labels()[0]:
        a2.legend(fontsize=7, ncol=4, loc="upper left")
    fig.tight_layout()
    _save(fig, path)


def _save(fig: Any, path: Path) -> None:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def _fmt(x: float | None, spec: str = ".3g") -> str:
    return "-" if x is None else format(x, spec)


def _property_rows(s: dict[str, Any], prof: MonitorProfile) -> list[str]:
    """The whole-run table: one row per property."""
    rows = [
        "| property | median | training range | out of range | PSI | KS (p) | W / std | drift |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, v in s["properties"].items():
        e = prof.raw["properties"][name]
        rows.append(
            f"| {name} | {v['median']:.3g} | {_range_text(e, prof.config.rare_mass)} | "
            f"{100 * v['out']:.1f} % | {v['psi']:.2f} ({v['psi_reading']}) | "
            f"{v['ks']:.2f} ({_fmt(v['ks_p'], '.2g')}) | {v['wasserstein']:.2f} | "
            f"{'yes' if v['drift'] else 'no'} |"
        )
    return rows


def markdown(s: dict[str, Any], t: Trace, prof: MonitorProfile, title: str) -> str:
    """report.md: the verdict first, then the alerts and the whole-run table."""
    sh = s["state_share"]
    src = prof.raw.get("source", {})
    model = prof.raw.get("model") or {}
    lines = [
        f"# Monitor report: {title}",
        "",
        f"{s['frames']} frames from {s['clips']} clip(s) against `{prof.path}` (built from "
        f"{src.get('frames', '?')} frames of {src.get('data', '?')} {src.get('split', '')}, "
        f"model {model.get('file', '?')}).",
        "",
        "## Verdict",
        "",
        f"- states: ok {100 * sh['ok']:.1f} %, warn {100 * sh['warn']:.1f} %, alert "
        f"{100 * sh['alert']:.1f} % of frames; {s['alerts']} alert(s) began"
        + (
            f", the first at frame {s['first_alert_frame']}: {s['first_alert']}"
            if s["alerts"]
            else ""
        ),
        f"- whole run against the profile: {s['drifting']} of {len(s['properties'])} "
        "properties drift (KS test and Wasserstein, see below)",
    ]
    if s["causes"]:
        lines.append(
            "- frames in warn or alert by cause: "
            + ", ".join(f"{k} {v}" for k, v in sorted(s["causes"].items(), key=lambda kv: -kv[1]))
        )
    lines += ["", "![states](states.png)", "", "## Where alerts began", ""]
    if t.alerts:
        lines += ["| frame | clip | cause | reason | frame |", "|---|---|---|---|---|"]
        for a in t.alerts:
            img = f"![{a['frame']}](alerts/{a['thumb']})" if a.get("thumb") else ""
            lines.append(f"| {a['frame']} | {a['clip']} | {a['cause']} | {a['reason']} | {img} |")
    else:
        lines.append("No alert.")
    lines += ["", "## Properties over the whole run", "", *_property_rows(s, prof)]
    if s["frames"] < 10 * len(prof.edges[0]):
        lines += [
            "",
            f"With {s['frames']} frames PSI mostly measures sampling noise (about (bins - 1) / "
            "frames without any drift); read the KS test and the out-of-range share.",
        ]
    lines += ["", "![properties](properties.png)", ""]
    return "\n".join(lines)


def write_report(
    out: Path, t: Trace, prof: MonitorProfile, p: MonitorParams, title: str
) -> dict[str, Any]:
    """Render everything, then write it (atomic files); returns the summary."""
    s = summarize(t, prof, p)
    text = markdown(s, t, prof, title)
    plot_properties(t, prof, out / "properties.png")
    plot_states(t, p, out / "states.png")
    atomic_write_text(out / "report.md", text)
    atomic_write_json(out / "summary.json", s)
    return s
