"""The fidelity benchmark's statistics: Spearman's rho with a paired, seeded bootstrap interval; the
per-regime spread."""
from __future__ import annotations

import warnings

import numpy as np
from scipy.stats import spearmanr

from benchmarks.fidelity import (
    FASHION,
    ONE_SHOT,
    RECONSTRUCT,
    REFERENCES,
    _spec,
    rank_rho,
    regimes,
    rho_interval,
    spearman,
)
from prunevo.pruning.criteria import BASELINE_NAMES, RANDOM


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


def test_regimes_prints_each_reference_spread_and_the_reconstruction_twin_rho(capsys):
    names = [*BASELINE_NAMES[:3], RANDOM]
    one_shot = _spec("resnet20", FASHION, f"macs=0.25,{ONE_SHOT}")
    rebuilt = f"{one_shot},{RECONSTRUCT}"
    assert rebuilt in REFERENCES["reconstruction 25% MACs"]
    saved = {"tasks": {one_shot: {"relative": [0.6, 0.2, None, 0.3]},
                       rebuilt: {"relative": [0.95, 0.85, 0.93, 0.9]}}}
    with warnings.catch_warnings():  # three criteria: a degenerate bootstrap, which scipy warns about
        warnings.simplefilter("ignore")
        regimes(saved, names)
    out = capsys.readouterr().out
    a, b, c = BASELINE_NAMES[:3]
    # one-shot: the n/a classic is left out of the spread; with reconstruction all three are ranked
    assert f"| {one_shot} | {a} 0.600 | {b} 0.200 | 0.400 | 0.300 | 0.600 |" in out
    assert f"| {rebuilt} | {a} 0.950 | {b} 0.850 | 0.100 | 0.900 | 0.950 |" in out
    assert f"rho(one-shot, reconstruction) on {one_shot}: +1.00" in out and "over 3 criteria" in out
