"""compare.png: one MACs target gives top-1 per criterion (mean ± std, sorted, random as a line); several
targets keep the accuracy-vs-MACs view."""
import matplotlib.image

from prunevo.transfer import report
from prunevo.transfer.results import ApplyResult, Measurement

BASE = Measurement(params=1000, macs=10_000, top1=0.95)


def _run(criterion, top1, macs_fraction, strategy="uniform", seed=0):
    after = Measurement(params=500, macs=int(10_000 * macs_fraction), top1=top1)
    return ApplyResult(criterion, None, seed, 0.5, macs_fraction, BASE, after, top1, {}, {}, strategy)


def test_one_target_draws_one_bar_per_criterion(tmp_path, monkeypatch):
    runs = [_run(c, acc + 0.01 * s, 0.5 + 0.002 * s, seed=s)
            for c, acc in (("l1", 0.8), ("bn", 0.85), ("random", 0.7)) for s in range(3)]
    assert report.one_target(runs)
    drawn = {}
    real = report._plot_one_target
    monkeypatch.setattr(report, "_plot_one_target", lambda *a: drawn.setdefault("bars", real(*a)))
    report.plot_compare(runs, BASE, tmp_path / "one.png")
    assert "bars" in drawn and matplotlib.image.imread(tmp_path / "one.png").shape[0] > 100


def test_several_targets_keep_the_scatter(tmp_path, monkeypatch):
    runs = [_run("l1", 0.8, 0.5), _run("l1", 0.7, 0.3), _run("random", 0.6, 0.5), _run("random", 0.5, 0.3)]
    assert not report.one_target(runs)
    monkeypatch.setattr(report, "_plot_one_target", lambda *a: (_ for _ in ()).throw(AssertionError("bars")))
    report.plot_compare(runs, BASE, tmp_path / "many.png")
    assert (tmp_path / "many.png").stat().st_size > 1000
