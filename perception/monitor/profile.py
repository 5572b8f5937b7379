"""The monitor's reference profile, built from the training split's frames.

Frames go through the loop itself (serving.runtime: the same preprocessing, model and
decode) with a monitor that has no profile yet; the property values it measured are then
binned here (serving.monitor_profile describes the file). For each continuous property the
training range is its [tail, 1 - tail] quantiles widened on each side by `margin` of its
width (at least the property's resolution): a deployed camera shows one scene, a profile
thousands, and a scene at the edge of what training saw must not read as drift. Inside the
range, bins at the property's quantiles (`bins` of equal training mass) serve PSI and KS.
Counts get one bin per whole number.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from perception.params import MonitorParams
from serving.contract import ModelContract
from serving.monitor_profile import SCHEMA, MonitorConfig
from serving.monitor_props import MAX_COUNT, PROPERTIES, Prop

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
SKETCH = 101  # quantiles kept as the profile's sample (Wasserstein and KS of whole runs)


def count_edges(prop: Prop, lane_slots: int) -> np.ndarray:
    """Edges of a count property: one bin per whole number up to its top (lanes: the
    contract's slots; obstacles: MAX_COUNT and more in the last bin)."""
    top = lane_slots if prop.name == "lanes" else MAX_COUNT
    return np.arange(top) + 0.5


def range_edges(v: np.ndarray, prop: Prop, p: MonitorParams) -> np.ndarray:
    """Edges of a continuous property from its training values v float64[N] (finite):
    [range low, quantile bins inside, range high] (see the module doc)."""
    lo, hi = np.quantile(v, [p.tail, 1.0 - p.tail])
    pad = max(p.margin * (hi - lo), prop.resolution)
    lo, hi = lo - pad, hi + pad
    inner = np.quantile(v, np.arange(1, p.bins) / p.bins)
    inner = np.unique(inner[(inner > lo) & (inner < hi)])
    return np.concatenate([[lo], inner, [hi]])


def bin_shares(v: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Share of v in each bin (-inf, e0), [e0, e1), ..., [ek, inf), as the monitor bins."""
    idx = np.searchsorted(edges, v, side="right")
    return np.bincount(idx, minlength=len(edges) + 1) / max(len(v), 1)


def describe_property(v: np.ndarray, prop: Prop, p: MonitorParams, slots: int) -> dict[str, Any]:
    """A property's profile entry from its finite training values v."""
    edges = count_edges(prop, slots) if prop.kind == "count" else range_edges(v, prop, p)
    q = np.quantile(v, QUANTILES)
    return {
        "unit": prop.unit,
        "kind": prop.kind,
        "open_top": prop.kind == "count" and prop.name != "lanes",  # its last bin: k and more
        "edges": [round(float(e), 6) for e in edges],
        "ref": [float(s) for s in bin_shares(v, edges)],
        "n": len(v),
        "mean": float(v.mean()),
        "std": float(v.std()),
        "quantiles": {
            f"p{round(x * 100):02d}": float(y) for x, y in zip(QUANTILES, q, strict=True)
        },
        "sketch": [round(float(x), 6) for x in np.quantile(v, np.linspace(0, 1, SKETCH))],
    }


def build_profile(
    values: np.ndarray,
    class_counts: np.ndarray | None,
    contract: ModelContract,
    p: MonitorParams,
    model: Mapping[str, Any] | None,
    source: Mapping[str, Any],
) -> dict[str, Any]:
    """The profile JSON object. values float64[N, len(PROPERTIES)] (NaN: not measured;
    a property with no finite value is left out, e.g. predictions in an image-only
    profile); class_counts int[N, C] detections per class per frame, or None."""
    props = {}
    for i, prop in enumerate(PROPERTIES):
        v = values[:, i][np.isfinite(values[:, i])]
        if len(v):
            props[prop.name] = describe_property(v, prop, p, len(contract.lane_slots))
    classes = None
    if class_counts is not None and class_counts.sum() > 0:
        total = class_counts.sum(axis=0)
        ref = total / total.sum()
        classes = {"names": list(contract.class_names), "ref": ref.tolist(), "n": int(total.sum())}
    config = {f.name: getattr(p, f.name) for f in dataclasses.fields(MonitorConfig)}
    return {
        "schema": SCHEMA,
        "config": config,
        "contract": {
            "input_width": contract.input_width,
            "input_height": contract.input_height,
            "mean": list(contract.mean),
            "std": list(contract.std),
        },
        "model": dict(model) if model is not None else None,
        "source": dict(source),
        "properties": props,
        "classes": classes,
    }


def model_info(path: str | Path) -> dict[str, str]:
    """The model a profile was measured with: file name and SHA-256 of its bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return {"file": Path(path).name, "sha256": h.hexdigest()}


def pick_clips(counts: Sequence[int], limit: int) -> list[int]:
    """Indices of evenly spaced clips (counts: frames of each) whose frames add up to at
    most `limit` (0: every clip). Whole clips, so that the loop's lane smoothing sees their
    frames in order, as it does live."""
    if limit <= 0 or sum(counts) <= limit:
        return list(range(len(counts)))
    k = max(1, int(limit / np.mean(counts)))
    out: list[int] = []
    total = 0
    for c in np.unique(np.linspace(0, len(counts) - 1, k).round().astype(int)):
        if total + counts[c] > limit and out:
            break
        out.append(int(c))
        total += counts[c]
    return out
