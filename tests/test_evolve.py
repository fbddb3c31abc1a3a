"""Evolution: run directory contents, resume == uninterrupted, hall of fame and Pareto front."""
from __future__ import annotations

import json

import pytest

from prunevo.fitness.execution import SERIAL, Execution
from prunevo.errors import PrunevoError, RunError
from prunevo.runs.config import EvolutionConfig
from prunevo.runs.hall_of_fame import Entry, HallOfFame, ParetoFront
from prunevo.evolve.run import evolve
from prunevo.runs.result import load_run
from tests.helpers import evolve_config

TIMING = {"seconds", "evals_per_second", "selections_per_second"}




def _comparable(result):
    log = [{k: v for k, v in row.items() if k not in TIMING} for row in result.log]
    return ([(e.text, e.fitness) for e in result.hall_of_fame], [(e.text, e.fitness) for e in result.pareto], log)


@pytest.mark.slow
def test_run_directory_and_resume_equal_uninterrupted(tmp_path, prepared_tasks):
    full = evolve(evolve_config(3), tmp_path / "full", progress=False, prepared=prepared_tasks)
    for name in ["config.json", "checkpoint.json", "log.csv", "hall_of_fame.json", "pareto.json", "baselines.json",
                 "fitness.png"]:
        assert (tmp_path / "full" / name).stat().st_size > 0, name
    hof = json.loads((tmp_path / "full" / "hall_of_fame.json").read_text())
    assert {"text", "simplified", "sympy", "latex", "fitness", "accuracy", "complexity"} <= set(hof[0])
    assert set(hof[0]["accuracy"]) == {"digits-vgg", "digits-resnet"}
    assert len((tmp_path / "full" / "log.csv").read_text().splitlines()) == 1 + 4

    class Interrupt(Exception):
        pass

    def interrupt_after_one(generation):
        if generation == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        evolve(evolve_config(3), tmp_path / "cut", progress=False, prepared=prepared_tasks,
               on_generation=interrupt_after_one)
    assert load_run(tmp_path / "cut").log[-1]["generation"] == 1
    resumed = evolve(evolve_config(3), tmp_path / "cut", resume=True, progress=False, prepared=prepared_tasks)
    assert _comparable(resumed) == _comparable(full)
    # the classic criteria seed the population, so they are all baselines and evaluated
    assert {"l1", "bn", "taylor", "random"} <= set(full.baselines)


@pytest.mark.slow
def test_existing_run_is_never_overwritten(tmp_path, prepared_tasks):
    evolve(evolve_config(0), tmp_path / "run", progress=False, prepared=prepared_tasks)
    before = (tmp_path / "run" / "checkpoint.json").read_bytes()
    with pytest.raises(RunError, match="already holds a run"):
        evolve(evolve_config(0), tmp_path / "run", progress=False, prepared=prepared_tasks)
    assert (tmp_path / "run" / "checkpoint.json").read_bytes() == before


def test_corrupt_or_missing_checkpoint(tmp_path):
    with pytest.raises(RunError, match="not a prunevo run directory"):
        load_run(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(evolve_config(1).to_json()))
    (tmp_path / "checkpoint.json").write_text('{"version": 1, "generation": ')
    with pytest.raises(RunError, match="corrupt"):
        load_run(tmp_path)


def test_hall_of_fame_keeps_distinct_best_formulas():
    hof = HallOfFame(2)
    hof.offer(Entry("l1(W) + l1(W)", 0.8, 4, 0))
    hof.offer(Entry("2.0 * l1(W)", 0.8, 3, 1))  # same formula, simpler: replaces
    hof.offer(Entry("abs(gamma)", 0.9, 2, 1))
    hof.offer(Entry("l2(W)", 0.5, 2, 1))  # not good enough
    assert [e.text for e in hof.entries] == ["abs(gamma)", "2.0 * l1(W)"]


def test_pareto_front_is_monotone():
    front = ParetoFront()
    for text, fit, size in [("gamma", 0.7, 1), ("abs(gamma)", 0.6, 2), ("l1(W) * gamma", 0.9, 4), ("x", 0.8, 6)]:
        front.offer(Entry(text, fit, size, 0))
    assert [e.complexity for e in front.front] == [1, 4]


@pytest.mark.parametrize("kw", [dict(population=1), dict(elitism=-1), dict(max_height=1),
                                dict(tasks=("digits-vgg",), task_weights=(1.0, 2.0))],
                         ids=["population", "elitism", "max_height", "task_weights"])
def test_config_validation_refuses(kw):
    with pytest.raises(PrunevoError):
        EvolutionConfig(**kw)


def test_execution_settings_are_validated():
    with pytest.raises(PrunevoError, match="n_jobs must be >= 1"):
        Execution(n_jobs=0)
    with pytest.raises(PrunevoError, match="allowed: auto, off, loop, fused"):
        Execution(batching="turbo")


def test_config_initial_heights_follow_max_height():
    # a low --max-height alone is consistent: the initial trees' bound follows it unless it is set
    from prunevo.cli import parse_config

    assert parse_config(["evolve", "--max-height", "3"]).initial_heights == (1, 3)
    assert EvolutionConfig(max_height=2).initial_heights == (1, 2) and EvolutionConfig().initial_heights == (1, 4)
    with pytest.raises(PrunevoError, match="init_max_height <= max_height, got 1, 5, 3"):
        EvolutionConfig(max_height=3, init_max_height=5)


def test_crossover_draws_like_deap_and_keeps_trees_typed():
    import copy
    import random

    from deap import gp

    from prunevo.evolve.engine import cx_one_point
    from prunevo.evolve.individuals import Individual, build_pset, gen_half_and_half

    pset = build_pset()
    random.seed(0)
    same = 0
    for _ in range(200):
        a, b = (Individual(gen_half_and_half(pset, 1, 4)) for _ in range(2))
        state = random.getstate()
        ours = cx_one_point(copy.deepcopy(a), copy.deepcopy(b))
        random.setstate(state)
        theirs = gp.cxOnePoint(copy.deepcopy(a), copy.deepcopy(b))
        for child in ours:
            assert child.formula.text  # converts back: every node keeps its type
        shared = {n.ret for n in a[1:]} & {n.ret for n in b[1:]}
        if len(shared) <= 1:  # one shared type: no order to differ in, so DEAP draws the same
            same += 1
            assert [str(t) for t in ours[0]] == [str(t) for t in theirs[0]]
            assert [str(t) for t in ours[1]] == [str(t) for t in theirs[1]]
    assert same > 20


def test_vary_is_deaps_var_and_on_the_selected_after_the_elites(monkeypatch):
    import random

    from dataclasses import replace

    from deap import algorithms, tools

    from prunevo.evolve.engine import initial_population, make_toolbox, vary
    from prunevo.evolve.individuals import build_pset
    from prunevo.utils import derive_seed

    config, pset = replace(evolve_config(1), population=30), build_pset()
    toolbox = make_toolbox(config, pset)
    population = initial_population(config, pset)
    for ind in population:
        ind.fitness.values = (random.random(),)
    before = [str(ind) for ind in population]
    calls, var_and = [], algorithms.varAnd
    monkeypatch.setattr(algorithms, "varAnd", lambda *args: calls.append(args) or var_and(*args))
    ours = vary(population, config, toolbox, 3)
    assert len(calls) == 1 and calls[0][1:] == (toolbox, config.crossover_prob, config.mutation_prob)
    random.seed(derive_seed(config.seed, "generation", 3))  # the same draws, by hand
    elites = tools.selBest(population, config.elitism)
    theirs = elites + var_and(toolbox.select(population, len(population) - config.elitism), toolbox,
                              config.crossover_prob, config.mutation_prob)
    assert [str(ind) for ind in ours] == [str(ind) for ind in theirs]
    assert [str(ind) for ind in population] == before  # the parents are left as they were
    assert ours[0].fitness.valid and sum(not ind.fitness.valid for ind in ours) > 10  # elite kept, others varied
    # nothing new above the height limit: the seeds may be taller (gecco22), and DEAP's staticLimit hands back a
    # parent whose child would exceed it, so a tall individual is a copy of one of the parents
    assert all(ind.height <= config.max_height or str(ind) in before for ind in ours)
    assert sum(ind.height <= config.max_height for ind in ours) > len(ours) // 2


# --no-progress: never; else a bar on a terminal, plain lines in a log (prunevo.progress)
@pytest.mark.parametrize("progress, bar", [(False, False), (True, True)])
def test_no_progress_reaches_base_net_pretraining(tmp_path, monkeypatch, progress, bar):
    import prunevo.fitness.pretrain as pretrain

    class Seen(Exception):  # stops the run at its first pretraining: only the bar setting matters here
        pass

    def fit(*args, progress="unset", **kw):
        raise Seen(progress)

    monkeypatch.setattr(pretrain, "fit", fit)
    monkeypatch.setenv("PRUNEVO_CACHE", str(tmp_path / "cache"))  # empty: the base net would be trained now
    config = EvolutionConfig(tasks=("lenet5@digits:pretrain=1,epochs=0",), population=2, generations=0,
                             execution=SERIAL, elitism=0, rescore_seeds=0)
    with pytest.raises(Seen) as seen:
        evolve(config, tmp_path / "run", progress=progress)
    assert seen.value.args == (bar,)
