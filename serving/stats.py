"""Latency statistics, in one place: the loop's summary, the demo's HUD, the bench and the
model card all describe samples with these functions, so that a p99 means the same
everywhere (numpy's linear interpolation between order statistics)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

KEYS = ("min", "p50", "mean", "p90", "p95", "p99", "p99.9", "max", "std", "cv")
Samples = Sequence[float] | np.ndarray


def percentiles(samples: Samples, qs: Sequence[float]) -> list[float]:
    """The qs percentiles (0..100) of the samples; NaN each without samples."""
    a = np.asarray(samples, np.float64).ravel()
    if a.size == 0:
        return [float("nan")] * len(qs)
    return [float(q) for q in np.percentile(a, qs)]


def describe(samples_ms: Samples) -> dict[str, float]:
    """Statistics of latency samples (ms): min, p50, mean, p90, p95, p99, p99.9, max, std
    (population, ms), cv (std / mean, unitless) and n. No samples: every value NaN, n 0."""
    a = np.asarray(samples_ms, np.float64).ravel()
    if a.size == 0:
        return {**dict.fromkeys(KEYS, float("nan")), "n": 0}
    p50, p90, p95, p99, p999 = percentiles(a, [50, 90, 95, 99, 99.9])
    out = {"min": float(a.min()), "p50": p50, "mean": float(a.mean()), "p90": p90}
    out.update({"p95": p95, "p99": p99, "p99.9": p999, "max": float(a.max())})
    out["std"] = float(a.std())
    out["cv"] = out["std"] / out["mean"] if out["mean"] > 0 else float("nan")
    out["n"] = int(a.size)
    return out


def describe_ms(samples_ms: Samples) -> dict[str, float]:
    """describe() with an _ms suffix on the times (p50 -> p50_ms; cv and n unchanged): what
    bench.json stores per stage and variant."""
    return {k if k in ("cv", "n") else f"{k}_ms": v for k, v in describe(samples_ms).items()}
