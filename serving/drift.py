"""Distances between a window's histogram and the training profile's, on the same bins.

Every function takes counts float64[P, B] (the window: how many frames fell in each bin) and
the profile's bin masses ref float64[P, B] (fractions that sum to 1), one row per property,
so that all properties of a frame are scored in one call (Numba: the loop calls it on every
frame). Rows are padded at the end with zero bins, which add nothing to any score below.

* psi: population stability index, sum over bins of (p - q) * ln(p / q), p the window's
  share and q the profile's; a share below EPS (0.0001, as Evidently) counts as EPS so that
  an empty bin keeps the score finite. Common reading: < 0.1 stable, 0.1-0.2 moderate,
  > 0.2 significant (for samples much larger than the number of bins).
* ks: the Kolmogorov-Smirnov statistic on the binned distributions, the largest gap between
  the two cumulative shares at a bin edge (a lower bound of the KS statistic of the raw
  values, exact when every value sits on an edge, as for counts).
* out_share: the window's share in the bins marked outside the training range (the
  profile decides which: serving.monitor_profile.outside_bins).
"""

from __future__ import annotations

import numpy as np
from numba import njit

EPS = 1e-4  # floor of a bin's share in psi (an empty bin would make it infinite)


@njit(cache=True, nogil=True)
def shares(counts: np.ndarray) -> np.ndarray:
    """float64[P, B] counts -> shares per row (a row of zeros stays zeros)."""
    out = np.zeros_like(counts)
    for p in range(counts.shape[0]):
        n = counts[p].sum()
        if n > 0:
            out[p] = counts[p] / n
    return out


@njit(cache=True, nogil=True)
def psi(counts: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Population stability index per row -> float64[P]. Padding bins (0 on both sides)
    add 0; an empty window scores 0."""
    s = shares(counts)
    out = np.zeros(counts.shape[0])
    for p in range(counts.shape[0]):
        if counts[p].sum() == 0:
            continue
        for b in range(counts.shape[1]):
            a, q = max(s[p, b], EPS), max(ref[p, b], EPS)
            out[p] += (a - q) * np.log(a / q)
    return out


@njit(cache=True, nogil=True)
def ks(counts: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Binned Kolmogorov-Smirnov statistic per row: max |cumulative share gap|, 0..1; an
    empty window scores 0."""
    s = shares(counts)
    out = np.zeros(counts.shape[0])
    for p in range(counts.shape[0]):
        if counts[p].sum() == 0:
            continue
        gap = 0.0
        for b in range(counts.shape[1]):
            gap += s[p, b] - ref[p, b]
            out[p] = max(out[p], abs(gap))
    return out


@njit(cache=True, nogil=True)
def out_share(counts: np.ndarray, outside: np.ndarray) -> np.ndarray:
    """Share of the window in the bins where outside bool[P, B] is set -> float64[P], 0 for
    an empty row."""
    s = shares(counts)
    out = np.zeros(counts.shape[0])
    for p in range(counts.shape[0]):
        for b in range(counts.shape[1]):
            if outside[p, b]:
                out[p] += s[p, b]
    return out


@njit(cache=True, nogil=True)
def score(counts: np.ndarray, ref: np.ndarray, outside: np.ndarray, out: np.ndarray) -> None:
    """All scores in one call: out float64[4, P] = out_share, psi, ks, frames per row."""
    out[0] = out_share(counts, outside)
    out[1] = psi(counts, ref)
    out[2] = ks(counts, ref)
    for p in range(counts.shape[0]):
        out[3, p] = counts[p].sum()
