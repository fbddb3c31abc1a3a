"""benchmarks/paired_regimes.py: the table pairs by criterion, allocation and seed; each regime's best classic is
taken over its own panel, which may be larger than the pairs both regimes ran."""
from __future__ import annotations

import json
import sys

import pytest

from benchmarks import paired_regimes


def _compare(path, regime: str, top1: dict[tuple[str, str], list[float]]) -> str:
    runs = [{"criterion": c, "strategy": a, "seed": s, "pruned_top1": v, "wall_s": {"reconstruct": 2.0}}
            for (c, a), values in top1.items() for s, v in enumerate(values)]
    path.write_text(json.dumps({"config": {"regime": regime}, "base": {"top1": 0.8}, "runs": runs}))
    return str(path)


def test_gain_best_classics_and_panels_that_differ(tmp_path, monkeypatch, capsys):
    first = _compare(tmp_path / "a.json", "one-shot", {
        ("l1", "uniform"): [0.30, 0.32, 0.31, 0.29, 0.33],
        ("l1", "global"): [0.50, 0.52, 0.51, 0.49, 0.53],  # the one-shot best, absent from the second panel
        ("random", "uniform"): [0.20, 0.22, 0.21, 0.19, 0.23]})
    second = _compare(tmp_path / "b.json", "one-shot + reconstruction", {
        ("l1", "uniform"): [0.70, 0.73, 0.71, 0.69, 0.72],
        ("random", "uniform"): [0.60, 0.62, 0.61, 0.59, 0.63]})
    monkeypatch.setattr(sys, "argv", ["paired_regimes.py", first, second])
    paired_regimes.main()
    out = capsys.readouterr().out
    assert "| l1 | uniform | 0.3100 | 0.7100 | +40.0 [" in out  # paired gain of the same pair
    assert "| l1 | global |" not in out  # the table holds only the pairs both ran
    assert "- one-shot (over all 3 of its pairs): best classic l1 (global) 0.5100" in out
    assert "- one-shot + reconstruction: best classic l1 (uniform) 0.7100" in out
    line = next(x for x in out.splitlines() if x.startswith("- best classic of"))
    assert "+20.0 pp [" in line  # 0.71 against 0.51, paired by seed
    low, high = (float(v) for v in line.split("[")[1].rstrip("]").split(", "))
    assert low <= 20.0 <= high


if __name__ == "__main__":
    sys.exit(pytest.main([__file__]))
