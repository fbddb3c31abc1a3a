"""The fidelity benchmark's statistics: Spearman's rho with a paired, seeded bootstrap interval."""
from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr

from benchmarks.fidelity import rank_rho, rho_interval, spearman


def test_batched_spearman_equals_spearmanr_per_resample_ties_included():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 6, (50, 21)).astype(float), rng.random((50, 21))  # integer values: many ties
    expected = [spearmanr(x, y).statistic for x, y in zip(a, b)]
    assert np.allclose(spearman(a, b), expected)


def test_rho_interval_contains_rho_is_seeded_and_skips_unranked_criteria():
    rng = np.random.default_rng(1)
    x = rng.random(21)
    y = list(0.7 * x + 0.3 * rng.random(21))
    x = list(x)
    x[4], y[9] = None, None  # n/a on one side: left out
    rho, low, high, n = rho_interval(x, y)
    assert n == 19 and rho == rank_rho(x, y)
    assert -1 <= low < rho < high <= 1 and high - low < 0.6
    assert rho_interval(x, y) == (rho, low, high, n)
