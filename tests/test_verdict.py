"""Verdicts and regimes: paired differences with Student-t intervals, one line each; the regime of a budget."""
from __future__ import annotations

import pytest
from scipy import stats

from prunevo.transfer.setup import Setup
from prunevo.fitness.execution import SERIAL
from prunevo.training.regimes import FULL, ONE_SHOT, SHORT, regime_of, regimes_text
from prunevo.verdict import paired_difference, verdict


def test_paired_difference_is_the_t_interval_of_the_per_seed_differences():
    a, b = [0.50, 0.52, 0.51, 0.55, 0.50], [0.45, 0.47, 0.49, 0.50, 0.46]
    diff = paired_difference(a, b)
    d = [x - y for x, y in zip(a, b)]
    half = stats.t.ppf(0.975, len(d) - 1) * stats.tstd(d) / len(d) ** 0.5
    assert diff.mean == pytest.approx(sum(d) / 5)
    assert (diff.low, diff.high) == pytest.approx((diff.mean - half, diff.mean + half))
    assert diff.significant and diff.pp().startswith("+4.2 pp [+2.6, +5.8]")
    # pairing matters: the same values unpaired would not separate the two criteria as sharply
    assert diff.high - diff.low < 2 * stats.t.ppf(0.975, 8) * (stats.tvar(a) / 5 + stats.tvar(b) / 5) ** 0.5


def test_verdict_lines_say_which_criterion_to_use():
    better = paired_difference([0.6, 0.61, 0.62], [0.5, 0.5, 0.52])
    assert verdict("winner", "tp-l2", better, "check task X") == \
        f"winner vs tp-l2: {better.pp()} on check task X"
    tie = paired_difference([0.5, 0.52, 0.49], [0.51, 0.5, 0.5])
    assert not tie.significant
    assert verdict("winner", "tp-l2", tie, "held-out data").startswith("winner: no significant improvement over tp-l2 (")
    assert verdict("winner", "tp-l2", tie, "held-out data").endswith("tp-l2 is the better choice")
    worse = paired_difference([0.4, 0.41, 0.42], [0.5, 0.5, 0.52])
    assert verdict("f", "l1", worse, "x").startswith("f is worse than l1 (-9.7 pp [")
    one = paired_difference([0.6], [0.5])
    assert one.low is None and not one.significant and "1 seed" in one.pp()
    same = paired_difference([0.6, 0.7], [0.5, 0.6])  # identical differences: a point interval, significant
    assert same.significant and same.low == pytest.approx(0.1)
    # a criterion that selects what the best classic selects (tp-lamp and tp-l2) is said to be the same
    twin = paired_difference([0.5, 0.6, 0.7], [0.5, 0.6, 0.7])
    assert verdict("tp-lamp", "tp-l2", twin, "x") == "tp-lamp = tp-l2 on x (the same value on all 3 seeds)"
    with pytest.raises(ValueError):
        paired_difference([0.1, 0.2], [0.1])


def test_regimes_follow_the_fine_tune_budget():
    assert [regime_of(e) for e in (0, 0.0, 0.25, 1.0, 1.5, 30)] == [ONE_SHOT, ONE_SHOT, SHORT, SHORT, FULL, FULL]
    assert regime_of(0, reconstruct=True) == "one-shot + reconstruction"
    assert regime_of(2, reconstruct=True) == "full fine-tune + reconstruction"
    assert regimes_text([regime_of(0), regime_of(0)]) == ONE_SHOT
    assert regimes_text([regime_of(e) for e in (0, 2, 0.5)]) == f"mixed ({ONE_SHOT}, {FULL}, {SHORT})"
    assert regimes_text([regime_of(0), regime_of(0, True)]) == f"mixed ({ONE_SHOT}, {ONE_SHOT} + reconstruction)"


def test_tasks_runs_and_transfer_configs_report_their_regime(tmp_path):
    import json

    from prunevo.runs.config import EvolutionConfig
    from prunevo.fitness.task_spec import parse_task
    from prunevo.transfer import FitConfig, TransferConfig

    assert parse_task("small-vgg@digits:epochs=0").regime == ONE_SHOT
    assert "one-shot (no fine-tune)" in parse_task("small-vgg@digits:epochs=0").describe()
    assert parse_task("lenet5@mnist").regime == SHORT
    config = EvolutionConfig()
    assert config.regime == ONE_SHOT  # the default tasks recalibrate BatchNorm only
    saved = json.loads(json.dumps(config.to_json()))
    assert saved["regime"] == ONE_SHOT and EvolutionConfig.from_json(saved) == config
    mixed = EvolutionConfig(tasks=("small-vgg@digits:epochs=0", "small-resnet@digits:epochs=2"))
    assert mixed.regime == f"mixed ({ONE_SHOT}, {FULL})"
    transfer = TransferConfig(setup=Setup(model="lenet5"), finetune=FitConfig(epochs=0.25))
    assert transfer.regime == SHORT and transfer.to_dict()["regime"] == SHORT


@pytest.mark.slow
def test_compare_prints_one_shot_and_fine_tuned_top1_with_verdicts(tmp_path):
    import json

    from prunevo.transfer import FitConfig, TransferConfig, compare_criteria
    from prunevo.transfer.session import TransferSession

    # uniform widths of LeNet-5's 6 and 16 channels keep 54% or 46% of the MACs, not 50% (ranking.layerwise_counts)
    config = TransferConfig(setup=Setup(model="lenet5", dataset="digits"), target_macs=0.54, calibration_samples=40,
                            finetune=FitConfig(epochs=0.2), latency=None)
    session = TransferSession(config)
    result = compare_criteria(["l1", "tp-l2", "snr"], config, seeds=(0, 1, 2), out_dir=tmp_path, session=session)
    head = result.markdown.splitlines()[2]
    assert "| one-shot top-1 | vs best classic | top-1 after fine-tuning (mean ± std) |" in head
    assert "short fine-tune (0.2 fine-tune epochs" in result.markdown.splitlines()[0]
    rows = {r.criterion: r for r in result.rows}
    one_shot_best = max((rows[n] for n in ("l1", "tp-l2", "snr")), key=lambda r: r.pruned_mean)
    for name in ("l1", "tp-l2", "snr", "random"):
        r = rows[name]
        assert r.pruned_mean == pytest.approx(sum(x.pruned_top1 for x in result.runs if x.criterion == name) / 3)
        assert r.pruned_vs_best_classic == pytest.approx(r.pruned_mean - one_shot_best.pruned_mean)
    # a verdict per criterion and regime, paired by seed
    other = next(n for n in ("l1", "tp-l2", "snr") if n != one_shot_best.criterion)
    mine = [x.pruned_top1 for x in sorted(result.runs, key=lambda x: x.seed) if x.criterion == other]
    theirs = [x.pruned_top1 for x in sorted(result.runs, key=lambda x: x.seed) if x.criterion == one_shot_best.criterion]
    expected = verdict(other, one_shot_best.criterion, paired_difference(mine, theirs), "one-shot top-1")
    assert expected in result.verdicts and f"- {expected}" in result.markdown
    assert sum("top-1 after fine-tuning" in v for v in result.verdicts) == 3  # every criterion but the best
    saved = json.loads((tmp_path / "compare.json").read_text())
    assert saved["config"]["regime"] == SHORT and saved["verdicts"] == result.verdicts
    # one-shot: one top-1, and the verdicts are on it
    one_shot_session = session.with_settings(finetune=FitConfig(epochs=0.0))
    one_shot = compare_criteria(["l1", "tp-l2"], one_shot_session.config, seeds=(0, 1), session=one_shot_session)
    assert "one-shot top-1 |" not in one_shot.markdown and "one-shot (0 fine-tune epochs" in one_shot.markdown
    assert one_shot.verdicts and all("one-shot top-1" in v for v in one_shot.verdicts)


@pytest.mark.slow
def test_apply_says_which_regime_a_run_was_evolved_for(tmp_path, caplog):
    import json

    from prunevo.runs.config import EvolutionConfig
    from prunevo.evolve.run import evolve
    from prunevo.transfer import FitConfig, TransferConfig, apply_formula

    run = tmp_path / "run"
    evolve(EvolutionConfig(tasks=("small-vgg@digits:epochs=0,pretrain=2",), population=4, generations=0,
                           execution=SERIAL, rescore_seeds=0), run, progress=False)
    # the network the run evolved on: whatever its best formula reads (BatchNorm too), it applies
    config = TransferConfig(setup=Setup(model="small-vgg", dataset="digits"), calibration_samples=40, latency=None,
                            finetune=FitConfig(epochs=0.1))
    with caplog.at_level("WARNING"):
        apply_formula(str(run), config, tmp_path / "out")
    assert "evolved for the one-shot regime, and is applied here in the short fine-tune regime" in caplog.text
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["regime_note"].startswith("warning:") and "regime: short fine-tune" in \
        (tmp_path / "out" / "report.md").read_text()
    caplog.clear()
    with caplog.at_level("WARNING"):
        apply_formula(str(run), replace_epochs(config, 0.0), tmp_path / "same")
    assert "warning" not in caplog.text
    assert "was evolved for the one-shot regime" in (tmp_path / "same" / "report.md").read_text()


def replace_epochs(config, epochs):
    from dataclasses import replace

    return replace(config, finetune=replace(config.finetune, epochs=epochs))
