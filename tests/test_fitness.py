"""The evaluator: fitness combination, mask cache, determinism across n_jobs, invalid formulas."""
from __future__ import annotations

import math

import pytest

from tests.helpers import quick_task
from prunevo.fitness.execution import Execution
from prunevo.fitness.evaluator import Evaluator
from prunevo.primitives import Formula
from prunevo.pruning.criteria import FormulaCriterion, RandomCriterion, as_criterion

# every test scores criteria on base networks trained for it (the prepared_tasks fixture, ~15 s once)
pytestmark = pytest.mark.slow


def test_identical_selections_are_evaluated_once(prepared_tasks):
    evaluator = Evaluator(prepared_tasks, seed=0)
    # positive multiples (exact in floating point) select the same channels
    criteria = [as_criterion("l1(W)"), as_criterion("2.0 * l1(W)"), as_criterion("l1(W) * 0.5")]
    results = evaluator.evaluate(criteria)
    assert evaluator.stats.jobs == len(prepared_tasks)
    assert evaluator.stats.hits == 2 * len(prepared_tasks)
    assert results[0].fitness == results[1].fitness == results[2].fitness
    evaluator.evaluate([as_criterion("l1")])
    assert evaluator.stats.jobs == len(prepared_tasks)  # cached across calls too


def test_fitness_is_the_weighted_geometric_mean_of_relative_accuracy(prepared_tasks):
    evaluator = Evaluator(prepared_tasks, seed=0)
    result = evaluator.evaluate([as_criterion("bn")])[0]
    rel = [result.accuracy[t.task.name] / t.base_val_accuracy for t in prepared_tasks]
    assert math.isclose(result.fitness, math.sqrt(rel[0] * rel[1]))
    assert result.relative == {t.task.name: r for t, r in zip(prepared_tasks, rel)}


def test_results_do_not_depend_on_n_jobs(prepared_tasks):
    criteria = [as_criterion(c) for c in ("l1", "taylor", "snr", "fpgm", "tp-l2", "tp-hessian")] + [RandomCriterion(1)]
    serial = Evaluator(prepared_tasks, seed=7).evaluate(criteria)
    parallel = Evaluator(prepared_tasks, execution=Execution(n_jobs=2), seed=7).evaluate(criteria)
    assert [r.fitness for r in serial] == [r.fitness for r in parallel]
    assert [r.accuracy for r in serial] == [r.accuracy for r in parallel]


@pytest.mark.parametrize("text", ["gamma * 0.0", "sparsity(W)", "1.0 / (l1(W) - l1(W)) * 0.0 + 1.0",
                                  "square(square(square(square(l2(W) * 1e30))))"])
def test_bad_formulas_get_the_worst_fitness_with_a_reason(prepared_tasks, text):
    evaluator = Evaluator(prepared_tasks, seed=0)
    (result,) = evaluator.evaluate([FormulaCriterion(Formula.parse(text))])
    assert result.fitness == 0.0 and not result.valid
    assert result.reason
    assert evaluator.stats.jobs == 0


def test_a_criterion_that_does_not_apply_to_a_task_is_na_there_never_zero(prepared_tasks, cache_dir):
    from prunevo.fitness.scoring import baselines_from_json, baselines_to_json, best_classic, score_with
    from prunevo.fitness.tasks import prepare_task
    from prunevo.pruning.criteria import BASELINE_NAMES

    lenet = prepare_task(quick_task("digits-lenet5"), cache_dir=cache_dir)  # no BatchNorm
    vgg = prepared_tasks[0]
    evaluator = Evaluator([vgg, lenet], seed=0)
    for result in evaluator.evaluate([as_criterion("bn"), as_criterion("tp-bn")]):
        assert result.fitness == 0.0 and not result.valid  # evolution never selects it...
        assert set(result.not_applicable) == {"digits-lenet5"} and "BatchNorm" in result.not_applicable["digits-lenet5"]
        assert set(result.accuracy) == {"digits-vgg"}  # ...and reports score it where it applies
        assert result.applicable_fitness == pytest.approx(result.accuracy["digits-vgg"] / vgg.base_val_accuracy)
    nowhere = Evaluator([lenet]).evaluate([as_criterion("bn")])[0]
    assert nowhere.applicable_fitness is None and nowhere.not_applicable and not nowhere.reason
    rows = baselines_from_json(baselines_to_json(score_with(evaluator, [], random_seeds=1)))
    by_name = {r.name: r for r in rows}
    assert set(BASELINE_NAMES) <= set(by_name)
    assert by_name["bn"].fitness > 0 and not by_name["bn"].comparable
    best = best_classic(rows)
    assert best.name in BASELINE_NAMES and best.name not in ("bn", "tp-bn")
    assert best.fitness == max(r.fitness for r in rows if r.comparable and r.name in BASELINE_NAMES)


def test_score_formulas_api_takes_names_and_formula_text(cache_dir):
    from prunevo import score_formulas
    from prunevo.fitness.config import FitnessConfig
    from prunevo.fitness.execution import SERIAL

    config = FitnessConfig(tasks=("small-vgg@digits:ratio=0.5,epochs=0.25,pretrain=2",), cache_dir=str(cache_dir),
                           execution=SERIAL)
    rows = score_formulas(["tp-l2", "l1(W) + l1(Wn)"], config, baselines=False, progress=False)
    assert [r.name for r in rows] == ["tp-l2", "l1(W) + l1(Wn)"] and all(r.comparable for r in rows)
    with pytest.raises(Exception, match="named criterion: .*tp-l2"):
        score_formulas(["tp-l3"], config)


def test_the_fitness_cache_key_holds_the_base_weights(prepared_tasks):
    from dataclasses import replace

    vgg = prepared_tasks[0]
    other = replace(vgg, base_state={k: v + 1 if v.is_floating_point() else v for k, v in vgg.base_state.items()})
    assert other.task.identity() == vgg.task.identity() and other.identity != vgg.identity
    assert replace(vgg, base_state={k: v.clone() for k, v in vgg.base_state.items()}).identity == vgg.identity
    key = Evaluator([vgg]).mask_plan(as_criterion("l1")).keys["digits-vgg"]
    assert key.startswith(vgg.identity + "|") and not key.startswith(other.identity)


def test_scoring_runs_on_the_fixed_thread_count(prepared_tasks):
    import torch

    seen = []

    class Spy:
        name = "spy"

        def group_scores(self, calibration, reduction, strict=True):
            seen.append(torch.get_num_threads())
            return as_criterion("l1").group_scores(calibration, reduction, strict)

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        Evaluator(prepared_tasks, threads_per_job=1).mask_plan(Spy())
        assert seen == [1, 1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
