"""Racing: leaders measured on fresh calibration draws, only raced formulas in the hall of fame, the best seed
chosen as the winner is, and the evolution gain and winner's curse that re-scoring reports."""
from __future__ import annotations

import random
import statistics
from dataclasses import replace

import pytest
from deap import gp

from prunevo.errors import PrunevoError
from prunevo.runs.config import EvolutionConfig
from prunevo.evolve.engine import mutate
from prunevo.evolve.individuals import build_pset, gen_grow, to_deap
from prunevo.evolve.racing import Raced, Racing, choose_best_seed, race_leaders
from prunevo.evolve.run import evolve
from prunevo.runs.result import load_run
from prunevo.fitness.evaluator import Evaluator, FitnessResult
from prunevo.fitness.racing import Race, draw_seed, raced_value
from prunevo.fitness.tasks import prepare_task
from prunevo.primitives.formula import Formula
from prunevo.primitives import grammar
from prunevo.pruning.criteria import FormulaCriterion
from prunevo.verdict import paired_difference
from tests.helpers import evolve_config, quick_task

ONE_SHOT = "ratio=0.5,pretrain=2,epochs=0,batch=64,recal=1"


@pytest.fixture(scope="module")
def one_shot(cache_dir):
    return [prepare_task(quick_task("digits-resnet", finetune=replace(quick_task("digits-resnet").finetune,
                                                                       epochs=0.0), recal_batches=1),
                         cache_dir=cache_dir)]


def test_a_draw_is_the_task_with_its_own_calibration_batch_and_the_mean_is_what_selection_reads(one_shot):
    race = Race(one_shot, 3, seed=7)
    formulas = ["mean(F)", "l1(W)"]
    measured = race.measure([FormulaCriterion(Formula.parse(f)) for f in formulas])
    assert len(measured) == 2 and all(len(draw) == 2 for draw in measured)
    for d, draw in enumerate(measured, 1):
        task = one_shot[0].redrawn(draw_seed(7, d, one_shot[0]))
        assert task.task.calibration_seed != one_shot[0].task.calibration_seed
        direct = Evaluator([task], seed=7).evaluate([FormulaCriterion(Formula.parse(f)) for f in formulas], full=True)
        assert [r.fitness for r in draw] == [r.fitness for r in direct]  # what a draw is: nothing else
    # a data-driven criterion selects differently on another calibration batch
    draw0 = Evaluator(one_shot, seed=7).evaluate([FormulaCriterion(Formula.parse("mean(F)"))], full=True)[0]
    assert {draw0.selection, *(draw[0].selection for draw in measured)} != {draw0.selection}
    # cached per draw: measuring again runs nothing and the caches are what checkpoints keep
    jobs = [e.stats.jobs for e in race._evaluators[race.own]]
    assert race.measure([FormulaCriterion(Formula.parse("mean(F)"))])[0][0].fitness == measured[0][0].fitness
    assert [e.stats.jobs for e in race._evaluators[race.own]] == jobs
    again = Race(one_shot, 3, seed=7, caches=race.caches)
    assert [r.fitness for r in again.measure([FormulaCriterion(Formula.parse("l1(W)"))])[1]] == [measured[1][1].fitness]
    assert all(e.stats.jobs == 0 for e in again._evaluators[again.own])
    with pytest.raises(PrunevoError, match="race_draws must be at least 2"):
        Race(one_shot, 1)


class FakeRace:
    """Draw d of formula i: a fitness given by the test; records what it was asked."""

    def __init__(self, values: dict[str, list[float]]):
        self.values, self.asked = values, []

    def measure(self, criteria, allocation=None):
        texts = [c.formula.text for c in criteria]
        self.asked.append(texts)
        draws = len(next(iter(self.values.values())))
        return [[FitnessResult(self.values[t][d], {"t": self.values[t][d]}, {"t": self.values[t][d]})
                 for t in texts] for d in range(draws)]


def _population(texts: list[str]):
    pset = build_pset()
    return [to_deap(Formula.parse(t).tree, pset) for t in texts]


def test_race_leaders_races_the_best_new_selections_and_gives_every_copy_the_mean():
    texts = ["l1(W)", "sqrt(l1(W))", "l2(W)", "mean(F)", "gamma", "abs(gamma)", "l1(Wn)"]
    population = _population(texts + ["l1(W)"])  # the last: a copy of the first
    single = {"l1(W)": 0.9, "sqrt(l1(W))": 0.9, "l2(W)": 0.8, "mean(F)": 0.85, "gamma": 0.7, "abs(gamma)": 0.2,
              "l1(Wn)": 0.95}
    selection = {"l1(W)": "a", "sqrt(l1(W))": "a", "l2(W)": "b", "mean(F)": "c", "gamma": "d", "abs(gamma)": "e",
                 "l1(Wn)": "f"}
    fresh = []
    for ind, text in zip(population, texts):
        valid = text != "gamma"  # invalid: never raced
        result = FitnessResult(single[text] if valid else 0.0, {"t": single[text]}, {"t": single[text]},
                               reason=None if valid else "constant scores", selection=selection[text])
        ind.fitness.values = (result.fitness,)
        fresh.append((ind, Formula.parse(text), result))
    population[-1].fitness.values = (0.9,)
    raced = {"l1(Wn)": Raced([0.5, 0.5, 0.5])}  # raced in an earlier generation: not again
    race = FakeRace({t: [0.6, 0.3] for t in texts})
    out = race_leaders(population, fresh, race, raced, leaders=2)
    # the best two new selections (a: l1(W) with its rider sqrt(l1(W)), then c: mean(F)); l2(W) is the third
    assert race.asked == [["l1(W)", "sqrt(l1(W))", "mean(F)"]]
    assert [f.text for _, f, _, _ in out] == ["l1(W)", "sqrt(l1(W))", "mean(F)"]
    assert raced["l1(W)"].draws == [0.9, 0.6, 0.3] and raced["mean(F)"].draws == [0.85, 0.6, 0.3]
    means = {t: ind.fitness.values[0] for t, ind in zip(texts + ["copy"], population)}
    assert means["l1(W)"] == means["copy"] == pytest.approx(0.6) and means["mean(F)"] == pytest.approx(1.75 / 3)
    assert means["l1(Wn)"] == 0.5 and means["l2(W)"] == 0.8  # an earlier race's mean; not raced: one draw
    assert raced["l1(W)"].accuracy == {"t": pytest.approx(0.6)}  # accuracy averaged over the draws too


def test_node_mutation_swaps_one_node_for_one_of_its_types_and_off_draws_like_uniform_mutation():
    pset = build_pset()
    random.seed(1)
    original = to_deap(Formula.parse("l1(W) + lnorm(mean(F))").tree, pset)
    swaps = set()
    for _ in range(60):
        tree = to_deap(Formula.parse("l1(W) + lnorm(mean(F))").tree, pset)
        (mutated,) = mutate(tree, lambda pset, type_: gen_grow(pset, 0, 2, type_), pset, node_share=1.0)
        assert len(mutated) == len(original) and Formula.parse(mutated.formula.text).text == mutated.formula.text
        changed = [i for i, (a, b) in enumerate(zip(original, mutated)) if a.name != b.name]
        assert len(changed) <= 1  # the same node may be drawn again: then nothing changes
        for i in changed:
            assert mutated[i].ret == original[i].ret and getattr(mutated[i], "args", []) == getattr(original[i], "args", [])
            swaps.add((original[i].name, mutated[i].name))
    assert any(old.startswith("l1") and new.startswith("l2") for old, new in swaps) or len(swaps) > 5
    expr = lambda pset, type_: gen_grow(pset, 0, 2, type_)  # noqa: E731
    random.seed(2)
    ours = str(mutate(to_deap(Formula.parse("l1(W) + gamma").tree, pset), expr, pset, node_share=0.0)[0])
    random.seed(2)
    deaps = str(gp.mutUniform(to_deap(Formula.parse("l1(W) + gamma").tree, pset), expr, pset)[0])
    assert ours == deaps
    assert grammar.Scores in pset.primitives


def test_the_raced_value_is_the_mean_less_risk_standard_deviations():
    assert raced_value([0.5, 0.7, 0.6]) == pytest.approx(0.6)
    assert raced_value([0.5, 0.7, 0.6], 1.0) == pytest.approx(0.6 - 0.1)
    assert raced_value([0.5, 0.7, 0.6], 2.0) == pytest.approx(0.4)
    assert raced_value([0.5], 1.0) == 0.5  # one draw: no spread to take off
    # a stable criterion beats a noisy one of a higher mean
    assert raced_value([0.40, 0.41, 0.42], 1.0) > raced_value([0.30, 0.55, 0.45], 1.0)
    assert Raced([0.5, 0.7, 0.6], risk=1.0).fitness == pytest.approx(0.5)


@pytest.mark.parametrize("kw", [{"race": -1}, {"race_draws": 1}, {"race_draws": 17}, {"node_mutation": 1.5},
                                {"race_risk": -0.5}, {"race_risk": 4.0}])
def test_racing_settings_are_validated(kw):
    with pytest.raises(PrunevoError, match=next(iter(kw))):
        EvolutionConfig(**kw)


def test_runs_saved_before_racing_read_back_without_it():
    data = EvolutionConfig().to_json()
    del data["race"], data["race_draws"], data["node_mutation"], data["race_risk"]
    old = EvolutionConfig.from_json(data)
    assert old.race == 0 and old.node_mutation == 0.0 and old.race_draws == EvolutionConfig.race_draws
    assert old.race_risk == 0.0


@pytest.mark.slow
def test_a_raced_run_keeps_raced_formulas_only_and_reports_its_gain_over_the_best_seed(tmp_path, capsys):
    from prunevo.cli import main

    config = replace(evolve_config(1, race=3, race_draws=2, rescore_seeds=2), population=10,
                     tasks=(f"small-resnet@digits:{ONE_SHOT}",))
    result = evolve(config, tmp_path / "run", progress=False)
    assert result.hall_of_fame and all(len(e.draws) == 2 for e in result.hall_of_fame)
    # fitness: the mean over the draws less one standard deviation of them (the default risk)
    assert all(e.fitness == pytest.approx(statistics.fmean(e.draws) - statistics.stdev(e.draws))
               for e in result.hall_of_fame)
    assert [row["raced"] for row in result.log] and all(0 < row["raced"] for row in result.log)
    # the winner is the hall of fame's first (chosen on validation), not the best of the re-scoring
    assert result.best.text == result.hall_of_fame[0].text
    seed = result.evolution["best_seed"]
    assert seed["validation"] == pytest.approx(raced_value(seed["draws"], 1.0)) and len(seed["draws"]) == 2
    assert seed["mean"] == pytest.approx(statistics.fmean(seed["draws"]))
    # chosen from the best `race` seeds and baselines by one draw, each raced: the best raced value of them
    assert len(seed["candidates"]) == 3 and all(len(c["draws"]) == 2 for c in seed["candidates"])
    assert seed["validation"] == pytest.approx(max(raced_value(c["draws"], 1.0) for c in seed["candidates"]), abs=1e-6)
    won = next(r for r in result.rescored if r.kind == "formula" and r.name == result.best.text)
    seed_row = result.best_seed
    assert seed_row is not None and seed_row.name == seed["name"]
    assert result.evolution_gain == paired_difference(won.fitness.values, seed_row.fitness.values)
    # the curse reads the draws' mean (what validation measured), not the risk-lowered value selection read
    assert result.winners_curse["winner"] == pytest.approx(statistics.fmean(result.best.draws) - won.fitness.mean)
    assert result.winners_curse["best seed"] == pytest.approx(seed["mean"] - seed_row.fitness.mean)
    # the seed competes with every seed of the population and every baseline: none raced beats it on validation
    assert load_run(tmp_path / "run").evolution == result.evolution
    capsys.readouterr()
    assert main(["show", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "evolution gain: winner vs the best seed" in out and "winner's curse" in out
    assert "chosen on validation as the winner is (2 draws)" in out


@pytest.mark.slow
def test_the_best_seed_is_chosen_on_validation_by_the_winners_rule(one_shot):
    config = evolve_config(0, race=4, race_draws=2)
    with Evaluator(one_shot, seed=config.seed) as evaluator:
        from prunevo.evolve.run import evaluate_baselines

        baselines = evaluate_baselines(evaluator, 1, ("global",))
        unraced = choose_best_seed(replace(config, race=0), evaluator, None, baselines)
        race = Race(one_shot, 2, seed=config.seed, backend=evaluator.backend)
        raced = choose_best_seed(config, evaluator, Racing(race, config.race, risk=config.race_risk), baselines)
    # without racing: the best single draw of every seed and every (baseline, allocation) pair
    singles = [r.fitness for r in evaluator.evaluate([FormulaCriterion(f) for f in _seeds(config)], full=True)
               if r.valid] + [b["fitness"] for b in baselines.values() if b["fitness"] is not None
                              and b["name"] != "random" and not b["reason"] and not b["not_applicable"]]
    assert unraced["validation"] == max(singles) and unraced["draws"] == [max(singles)]
    # with racing: the best raced value of the best four single draws, each measured on the race's second draw
    assert len(raced["draws"]) == 2 and raced["draws"][0] in sorted(singles)[-4:]
    assert raced["validation"] == raced_value(raced["draws"], config.race_risk)


def _seeds(config):
    from prunevo.evolve.engine import seed_formulas

    return seed_formulas(False)[: config.population]


@pytest.mark.parametrize("winner, seed, says", [
    ([0.5, 0.6, 0.55], [0.3, 0.35, 0.32], "(the search beat its seeds)"),
    ([0.5, 0.2, 0.55], [0.3, 0.35, 0.32], "(not significant: the best seed is as good a choice)"),
    ([0.2, 0.25, 0.22], [0.5, 0.55, 0.52], "(the best seed is the better choice)"),
    ([0.3, 0.35, 0.32], [0.3, 0.35, 0.32], "(the same selection on every seed: the search added nothing)"),
])
def test_the_gain_line_says_what_the_interval_means(capsys, winner, seed, says):
    from types import SimpleNamespace

    from prunevo.evolve.report import print_evolution_gain
    from prunevo.fitness.rescore import Score, evolution_gain

    rows = [SimpleNamespace(comparable=True, fitness=Score(statistics.fmean(v), 0.0, v)) for v in (winner, seed)]
    run = SimpleNamespace(evolution={"best_seed": {"name": "l1", "kind": "baseline", "allocation": "global",
                                                   "draws": [0.4, 0.41, 0.39]}},
                          evolution_gain=evolution_gain(*rows), winners_curse={"winner": 0.012}, rescored=rows)
    print_evolution_gain(run)
    out = capsys.readouterr().out
    assert out.startswith("evolution gain: winner vs the best seed l1 (global), chosen on validation as the winner "
                          "is (3 draws): ") and says in out
    assert "winner's curse (validation fitness - held-out fitness): winner +1.2 pp" in out
