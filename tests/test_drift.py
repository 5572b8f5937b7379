"""The drift statistics on hand-computed histograms: serving.drift (the loop's, binned) and
the whole-run scores of perception monitor (scipy's KS test and Wasserstein distance)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from perception.monitor.report import whole_run
from perception.params import MonitorParams
from serving import drift
from serving.monitor_profile import outside_bins


def rows(*r: list[float]) -> np.ndarray:
    return np.array(r, np.float64)


def test_psi_hand_computed() -> None:
    # window 50/30/20 of 100 against 40/40/20 %:
    # 0.1 ln(0.5/0.4) + (-0.1) ln(0.3/0.4) + 0 = 0.0223144 + 0.0287682
    got = drift.psi(rows([50, 30, 20]), rows([0.4, 0.4, 0.2]))
    assert got[0] == pytest.approx(0.1 * math.log(1.25) - 0.1 * math.log(0.75), abs=1e-12)
    assert got[0] == pytest.approx(0.0510826, abs=1e-6)


def test_psi_empty_bin_counts_as_eps() -> None:
    # all of the window in bin 0: (1 - 0.5) ln(1 / 0.5) + (1e-4 - 0.5) ln(1e-4 / 0.5)
    want = 0.5 * math.log(2.0) + (1e-4 - 0.5) * math.log(1e-4 / 0.5)
    assert drift.psi(rows([10, 0]), rows([0.5, 0.5]))[0] == pytest.approx(want, rel=1e-12)
    assert want == pytest.approx(4.60433, abs=1e-4)


def test_psi_identical_is_zero_and_padding_adds_nothing() -> None:
    same = drift.psi(rows([20, 20, 10, 0, 0]), rows([0.4, 0.4, 0.2, 0.0, 0.0]))
    assert same[0] == pytest.approx(0.0, abs=1e-12)
    short = drift.psi(rows([50, 30, 20]), rows([0.4, 0.4, 0.2]))
    padded = drift.psi(rows([50, 30, 20, 0, 0]), rows([0.4, 0.4, 0.2, 0, 0]))
    assert padded[0] == pytest.approx(short[0], abs=1e-15)


def test_ks_hand_computed() -> None:
    # cumulative 0.5 0.8 1.0 against 0.4 0.8 1.0: largest gap 0.1 (first edge)
    assert drift.ks(rows([50, 30, 20]), rows([0.4, 0.4, 0.2]))[0] == pytest.approx(0.1)
    # all in the last bin against all in the first: gap 1
    assert drift.ks(rows([0, 0, 7]), rows([1.0, 0.0, 0.0]))[0] == pytest.approx(1.0)


def test_out_share_counts_the_outside_bins_only() -> None:
    outside = np.array([[True, False, True]])
    assert drift.out_share(rows([5, 90, 5]), outside)[0] == pytest.approx(0.10)
    assert drift.out_share(rows([0, 60, 0]), outside)[0] == 0.0
    assert drift.out_share(rows([0, 0, 0]), outside)[0] == 0.0


def test_outside_bins_of_ranges_and_counts() -> None:
    # continuous: the two outer bins, even when training outliers put 2 % there
    got = outside_bins("continuous", np.array([0.02, 0.5, 0.46, 0.02]), 0.01)
    assert got.tolist() == [True, False, False, True]
    # counts: the values training (almost) never had
    got = outside_bins("count", np.array([0.005, 0.3, 0.69, 0.005]), 0.01)
    assert got.tolist() == [True, False, False, True]
    assert outside_bins("count", np.array([0.02, 0.98]), 0.01).tolist() == [False, False]


def test_rows_are_independent_and_empty_rows_score_zero() -> None:
    counts = rows([50, 30, 20], [0, 0, 0], [0, 0, 9])
    ref = rows([0.4, 0.4, 0.2], [0.4, 0.4, 0.2], [0.995, 0.005, 0.0])
    out = np.zeros((4, 3))
    drift.score(counts, ref, ref < 0.01, out)
    assert out[1, 0] == pytest.approx(0.0510826, abs=1e-6)
    assert out[:, 1].tolist() == [0.0, 0.0, 0.0, 0.0]
    assert out[0, 2] == pytest.approx(1.0)  # the empty-in-profile bin is rare
    assert out[2, 2] == pytest.approx(1.0)  # cumulative 0 0 1 against 0.995 1 1
    assert out[3].tolist() == [100.0, 0.0, 9.0]


def _entry(sample: np.ndarray, edges: list[float]) -> dict:
    e = np.asarray(edges)
    idx = np.searchsorted(e, sample, side="right")
    ref = np.bincount(idx, minlength=len(e) + 1) / len(sample)
    return {
        "kind": "continuous",
        "edges": edges,
        "ref": ref.tolist(),
        "std": float(sample.std()),
        "sketch": np.quantile(sample, np.linspace(0, 1, 101)).tolist(),
    }


def test_whole_run_ks_and_wasserstein_from_scipy() -> None:
    rng = np.random.default_rng(0)
    entry = _entry(rng.normal(100, 10, 20000), [60.0, 90.0, 100.0, 110.0, 140.0])
    p = MonitorParams()
    same = whole_run(rng.normal(100, 10, 300), entry, p)
    assert same["ks_p"] > 0.05 and same["wasserstein"] < 0.1 and not same["drift"]
    assert same["psi_reading"] == "stable" and same["out"] == 0.0
    moved = whole_run(rng.normal(75, 10, 300), entry, p)  # 2.5 standard deviations lower
    assert moved["ks_p"] < 1e-6 and moved["wasserstein"] == pytest.approx(2.5, abs=0.2)
    assert moved["drift"] and moved["psi_reading"] == "significant"
    assert moved["out"] == pytest.approx(np.mean(rng.normal(75, 10, 100000) < 60), abs=0.05)
