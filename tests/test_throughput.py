"""Fitness throughput without changing fitness: scoring modes, worker counts, backends and the ladder."""
from __future__ import annotations

import random

import pytest

from prunevo.fitness.execution import SERIAL, Execution
from prunevo.runs.config import EvolutionConfig
from prunevo.evolve.individuals import build_pset, gen_half_and_half, to_node
from prunevo.evolve.run import evolve
from prunevo.fitness.evaluator import Evaluator
from prunevo.fitness.ladder import Ladder, parse_ladder
from prunevo.fitness.tasks import prepare_task
from prunevo.primitives import Formula, classic_formulas
from prunevo.pruning.criteria import FormulaCriterion, RandomCriterion
from prunevo.errors import PrunevoError
from tests.helpers import quick_task


def _criteria(n: int = 14, seed: int = 0) -> list:
    pset = build_pset()
    random.seed(seed)
    formulas = list(classic_formulas().values())[:6]
    while len(formulas) < n:
        formulas.append(Formula(to_node(gen_half_and_half(pset, 1, 3))))
    return [FormulaCriterion(f) for f in formulas] + [RandomCriterion(0), RandomCriterion(1)]


def _fitness(evaluator: Evaluator, criteria) -> list[float]:
    with evaluator:
        return [r.fitness for r in evaluator.evaluate(criteria)]


@pytest.mark.slow
def test_loop_equals_pruning_each_candidate_and_ignores_worker_count(prepared_tasks):
    criteria = _criteria()
    naive = _fitness(Evaluator(prepared_tasks, execution=Execution(n_jobs=1, batching="off")), criteria)
    assert _fitness(Evaluator(prepared_tasks, execution=Execution(n_jobs=1, batching="loop")), criteria) == naive
    assert _fitness(Evaluator(prepared_tasks, execution=Execution(n_jobs=2, batching="loop")), criteria) == naive
    assert len(set(naive)) > 5  # the candidates differ, so an index mix-up would show


@pytest.mark.slow
def test_fused_equals_loop_within_tolerance_whatever_the_companions(prepared_tasks):
    criteria = _criteria()
    loop = _fitness(Evaluator(prepared_tasks, execution=Execution(n_jobs=1, batching="loop")), criteria)
    fused = _fitness(Evaluator(prepared_tasks, execution=Execution(n_jobs=1, batching="fused", stack=4)), criteria)
    assert fused == pytest.approx(loop, abs=0.02)  # a borderline validation image or two may flip
    # each candidate alone (padded to the same stack size) gets exactly what it got among companions
    alone = [_fitness(Evaluator(prepared_tasks, execution=Execution(n_jobs=1, batching="fused", stack=4)),
                      [c])[0] for c in criteria[:3]]
    assert alone == fused[:3]


@pytest.mark.slow
def test_fused_global_allocation_runs_masked_and_matches_loop(cache_dir):
    prepared = [prepare_task(quick_task("digits-resnet", prune=quick_task("digits-resnet").prune.__class__(
        ratio=0.5, ranking="global")), cache_dir=cache_dir)]
    assert prepared[0].task.allocation == "global"
    criteria = _criteria(8)
    loop = _fitness(Evaluator(prepared, execution=Execution(n_jobs=1, batching="loop")), criteria)
    fused = _fitness(Evaluator(prepared, execution=Execution(n_jobs=1, batching="fused", stack=4)), criteria)
    assert fused == pytest.approx(loop, abs=0.02)


@pytest.mark.slow
def test_fused_random_search_matches_loop(cache_dir):
    from prunevo.pruning.allocation import SearchSpec

    prepared = [prepare_task(quick_task("digits-vgg", search=SearchSpec(candidates=3, samples=200),
                                        target_macs=0.5), cache_dir=cache_dir)]
    assert prepared[0].task.allocation == "random-search"
    criteria = _criteria(6)
    loop = _fitness(Evaluator(prepared, execution=Execution(n_jobs=1, batching="loop")), criteria)
    fused = _fitness(Evaluator(prepared, execution=Execution(n_jobs=1, batching="fused", stack=4)), criteria)
    assert fused == pytest.approx(loop, abs=0.03)
    assert len(set(loop)) > 2


@pytest.mark.slow
def test_ladder_promotes_the_best_share_and_only_full_results_are_complete(prepared_tasks):
    criteria = _criteria(16)
    full = Evaluator(prepared_tasks)
    want = {c.name: r for c, r in zip(criteria, full.evaluate(criteria))}
    ladder = Evaluator(prepared_tasks, ladder=Ladder((0.25,), subset=100))
    results = ladder.evaluate(criteria)
    distinct = len({r.selection for r in results if r.selection})
    assert ladder.stats.rung_counts == [distinct, ladder.ladder.promoted(0, distinct)]
    complete = [(c, r) for c, r in zip(criteria, results) if r.complete and r.valid]
    assert 0 < len({r.selection for _, r in complete}) < distinct
    for c, r in complete:  # the top rung is the full measurement, keyed like it
        assert r.fitness == want[c.name].fitness and r.rung == 1
    partial = [r for r in results if not r.complete and r.valid]
    assert partial and all(r.rung == 0 for r in partial)
    # the promoted are the best at rung 0: nobody left behind scored higher there than a promoted one
    rung0 = {r.selection: ladder._result(ladder.mask_plan(c), 0).fitness for c, r in zip(criteria, results)
             if r.selection}
    worst_promoted = min(rung0[r.selection] for _, r in complete)
    assert all(rung0[r.selection] <= worst_promoted for r in partial)
    assert any("@rung0:" in k for k in ladder.cache)


def test_ladder_text_and_rung_budgets():
    assert parse_ladder("off") is None
    three = parse_ladder("0.5,0.25")
    assert three.rungs == 3 and three.promoted(0, 10) == 5 and three.promoted(1, 5) == 2
    from prunevo.training import FitConfig
    assert three.budget(0, FitConfig(epochs=2)).epochs == 0
    assert three.budget(1, FitConfig(epochs=2)).epochs == pytest.approx(0.5)


@pytest.mark.parametrize("bad", ["0", "1.5", "half"])
def test_bad_ladder_text_is_refused(bad):
    with pytest.raises(PrunevoError, match="ladder"):
        parse_ladder(bad)


@pytest.mark.slow
def test_evolution_with_a_ladder_keeps_partial_results_out_of_the_hall_of_fame(tmp_path, prepared_tasks):
    config = EvolutionConfig(tasks=("digits-vgg", "digits-resnet"), population=10, generations=2, execution=SERIAL,
                             seed=1,
                             hall_of_fame_size=20, rescore_seeds=0, random_baseline_seeds=1, ladder=(0.3,),
                             ladder_subset=100)
    run = evolve(config, tmp_path / "run", progress=False, prepared=prepared_tasks)
    full = Evaluator(prepared_tasks, seed=config.seed)
    for entry in run.hall_of_fame:  # raced (the default): its first draw is the full measurement
        assert full.evaluate([FormulaCriterion(entry.formula)])[0].fitness == pytest.approx(entry.draws[0], abs=1e-6)
        assert len(entry.draws) == config.race_draws
    assert all(len(row["rungs"].split("/")) == 2 for row in run.log)
    assert (tmp_path / "run" / "log.csv").read_text().splitlines()[0].count("rungs") == 1


@pytest.mark.slow
@pytest.mark.xdist_group("cluster")  # one local cluster at a time: each starts its own processes
@pytest.mark.parametrize("backend", ["dask", "ray"])
def test_cluster_backends_give_the_fitness_of_one_local_worker(prepared_tasks, backend):
    pytest.importorskip({"dask": "distributed", "ray": "ray"}[backend])
    criteria = _criteria(8)
    local = _fitness(Evaluator(prepared_tasks), criteria)
    assert _fitness(Evaluator(prepared_tasks, execution=Execution(n_jobs=2, backend=backend)), criteria) == local


@pytest.mark.slow
def test_unknown_backend_and_mode_are_clear_errors(prepared_tasks):
    with pytest.raises(PrunevoError, match="allowed: loky, dask, ray"):
        Execution(backend="slurm")
    with pytest.raises(PrunevoError, match="allowed: auto, off, loop, fused"):
        Execution(batching="turbo")
