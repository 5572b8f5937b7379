"""Bootstrap intervals for figures measured on a few frames (scipy.stats.bootstrap).

Percentile method: BCa is undefined when every sample scores the same (a lane FP of 0 on
every frame), which a small, easy set produces. With few samples the percentile interval is,
if anything, too narrow; treat it as a floor on the uncertainty. A fixed seed gives the same
interval every run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

RESAMPLES = 10_000
LEVEL = 0.95


def _kw(seed: int) -> dict[str, Any]:
    return {"n_resamples": RESAMPLES, "confidence_level": LEVEL, "method": "percentile",
            "random_state": np.random.default_rng(seed)}  # fmt: skip


def _pair(ci: Any) -> list[float]:  # scipy's ConfidenceInterval
    return [round(float(ci.low), 4), round(float(ci.high), 4)]


def mean_interval(values: Sequence[float], seed: int = 0) -> list[float] | None:
    """[low, high] of the mean of values, the samples drawn with replacement; None for fewer
    than two samples."""
    if len(values) < 2:
        return None
    x = np.asarray(values, np.float64)
    return _pair(stats.bootstrap((x,), np.mean, **_kw(seed)).confidence_interval)


def ratio_interval(num: Sequence[float], den: Sequence[float], seed: int = 0) -> list[float] | None:
    """[low, high] of sum(num) / sum(den), the (num, den) pairs drawn together (a frame's
    found and labelled cars stay together); pairs with den 0 add nothing to either sum and are
    left out first. None for fewer than two pairs left."""
    n, d = np.asarray(num, np.float64), np.asarray(den, np.float64)
    keep = d > 0
    if keep.sum() < 2:
        return None
    ci = stats.bootstrap(
        (n[keep], d[keep]), lambda a, b, axis: a.sum(axis) / b.sum(axis), paired=True,
        **_kw(seed),
    ).confidence_interval  # fmt: skip
    return _pair(ci)
