"""Winner selection: one hall-of-fame entry per selection, redraws of repeats, re-scoring, check tasks."""
from __future__ import annotations

import json
import random
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from prunevo.errors import PrunevoError

from prunevo.evolve.engine import build_pset, make_toolbox, redraw_repeats, to_deap
from prunevo.runs.hall_of_fame import Entry, HallOfFame
from prunevo.evolve.run import evolve
from prunevo.runs.result import load_run
from prunevo.fitness.evaluator import Evaluator
from prunevo.fitness.rescore import holdout_tasks, rescore
from prunevo.primitives.formula import Formula
from prunevo.pruning.criteria import BASELINE_NAMES, FormulaCriterion, RANDOM, as_criterion
from tests.helpers import evolve_config


@pytest.mark.slow
def test_formulas_selecting_the_same_channels_everywhere_are_one_entry(prepared_tasks):
    evaluator = Evaluator(prepared_tasks)
    texts = ["l1(W)", "l1(W) + 3", "2 * l1(W) + 1", "l2(W)"]
    results = evaluator.evaluate([FormulaCriterion(Formula.parse(t)) for t in texts])
    # increasing affine maps keep every group's ranking (also through the mean over residual-coupled
    # layers): equal masks, one fine-tune, one selection
    assert len({r.selection for r in results[:3]}) == 1 and results[3].selection != results[0].selection
    assert evaluator.stats.jobs == 4  # two selections on two tasks
    hof = HallOfFame(5)
    for text, result in zip(reversed(texts), reversed(results)):
        hof.offer(Entry(text, result.fitness, Formula.parse(text).complexity, 0, selection=result.selection))
    entries = {e.text: e for e in hof.entries}
    assert set(entries) == {"l1(W)", "l2(W)"}  # the simplest of the three stands for them
    assert entries["l1(W)"].equivalents == ["l1(W) + 3", "2 * l1(W) + 1"]


@pytest.mark.slow
def test_offspring_repeating_an_evaluated_selection_are_redrawn(prepared_tasks):
    config = evolve_config(1)
    pset = build_pset()
    toolbox = make_toolbox(config, pset)
    evaluator = Evaluator(prepared_tasks)
    evaluator.evaluate([FormulaCriterion(Formula.parse("l1(W)"))])

    def population():
        return [to_deap(Formula.parse(t).tree, pset) for t in ("l1(W) + 3", "l1(W)", "gamma", "gamma + 1")]

    random.seed(0)
    kept = population()
    assert redraw_repeats(kept, evaluator, toolbox, tries=0) == 0
    assert [i.formula.text for i in kept] == [i.formula.text for i in population()]
    random.seed(0)
    redrawn = population()
    count = redraw_repeats(redrawn, evaluator, toolbox, tries=5)
    plans = [evaluator.mask_plan(FormulaCriterion(i.formula)) for i in redrawn]
    assert count >= 3  # l1(W) + 3 and l1(W) repeat the evaluated l1, gamma + 1 repeats gamma
    fresh = [p for p in plans if p.selection is not None and not evaluator.is_evaluated(p)]
    assert len({p.selection for p in fresh}) == len(fresh) >= 3
    random.seed(0)
    again = population()
    redraw_repeats(again, evaluator, toolbox, tries=5)
    assert [i.formula.text for i in again] == [i.formula.text for i in redrawn]  # seeded: the same redraws


@pytest.mark.slow
def test_rescoring_uses_fresh_seeds_on_held_out_data(prepared_tasks):
    held = holdout_tasks(prepared_tasks, 2)
    assert all(h.identity != p.identity for h, p in zip(held, prepared_tasks))
    assert all(len(h.data.val) == len(p.data.holdout) for h, p in zip(held, prepared_tasks))
    rows = rescore(["l1(W)", "mean(F)"], prepared_tasks, prepared_tasks[1:], seeds=2)
    names = [r.name for r in rows]
    assert names == ["l1(W)", "mean(F)", *BASELINE_NAMES, RANDOM]
    l1 = rows[0]
    assert len(l1.fitness.values) == 2 and l1.fitness.std >= 0 and l1.check is not None
    assert len(rows[-1].fitness.values) == 2  # random: one draw per seed, paired like every criterion
    classic_l1 = rows[names.index("l1")]
    assert classic_l1.fitness == l1.fitness  # the classic l1 is the formula l1(W): the same selection
    again = rescore(["l1(W)", "mean(F)"], prepared_tasks, seeds=2, baselines=False)
    assert again[0].fitness == l1.fitness and again[1].fitness == rows[1].fitness  # deterministic
    # per check task, every seed's top-1: what paired verdicts read
    assert set(l1.check.seed_accuracy) == {"digits-resnet"} and len(l1.check.seed_accuracy["digits-resnet"]) == 2


@pytest.mark.slow
def test_each_rescoring_seed_draws_its_own_calibration_batch(prepared_tasks, monkeypatch):
    """A seed is a replicate: its own calibration batch (so a data-dependent criterion may select other
    channels), its own BatchNorm re-estimation and fine-tune seed; weight-only criteria select the same."""
    import prunevo.fitness.rescore as rescore_module

    batches = []
    real = rescore_module.replicate
    monkeypatch.setattr(rescore_module, "replicate", lambda held, seed: batches.append(seed) or real(held, seed))
    rows = rescore(["mean(F)", "l1(W)"], prepared_tasks[:1], seeds=3, baselines=False)
    assert len(batches) == 3 and len(set(batches)) == 3
    held = holdout_tasks(prepared_tasks[:1], 1)[0]
    first, second = (real(held, s) for s in batches[:2])
    assert not torch.equal(first.calibration.x, second.calibration.x)
    plans = [Evaluator([t]).mask_plan(as_criterion("mean(F)")) for t in (first, second)]
    assert plans[0].keys != plans[1].keys  # the activation criterion saw other images
    weight_only = [Evaluator([t]).mask_plan(as_criterion("l1(W)")) for t in (first, second)]
    keys = [next(iter(p.keys.values())).split("|", 1)[1] for p in weight_only]
    assert keys[0] == keys[1]  # same masks; the fitness still differs by the BatchNorm batch
    assert len(rows[0].fitness.values) == 3


def test_verdicts_pair_the_winner_with_the_best_classic_by_seed():
    from prunevo.fitness.rescore import RescoredRow, Score, verdicts

    def row(name, kind, values, check):
        return RescoredRow(name, kind, Score(sum(values) / len(values), 0.0, values),
                           Score(0.0, 0.0, [], {"c": sum(check) / len(check)}, {"c": check}))

    rows = [row("f", "formula", [0.60, 0.62, 0.61, 0.63, 0.60], [0.50, 0.52, 0.49, 0.51, 0.50]),
            row("tp-l2", "baseline", [0.55, 0.56, 0.57, 0.58, 0.55], [0.52, 0.53, 0.50, 0.53, 0.52]),
            row("l1", "baseline", [0.50, 0.50, 0.51, 0.52, 0.50], [0.40, 0.41, 0.40, 0.42, 0.40]),
            row(RANDOM, "baseline", [0.9, 0.9, 0.9, 0.9, 0.9], [0.9, 0.9, 0.9, 0.9, 0.9])]
    held, check = verdicts(rows, "f")
    assert held.startswith("winner vs tp-l2: +5.0 pp [") and "held-out data" in held  # random is no classic
    assert check.startswith("winner is worse than tp-l2 (-1.6 pp [") and "check task c" in check


@pytest.mark.slow
def test_a_run_is_rescored_at_the_end_and_its_winner_is_chosen_on_validation(tmp_path, capsys):
    from prunevo.cli import main

    quick = "ratio=0.5,pretrain=2,epochs=0.25,batch=64"
    one_shot = "ratio=0.5,pretrain=2,epochs=0,batch=64"  # a one-shot check task: no fine-tunes to wait for
    config = replace(evolve_config(1, rescore_seeds=2, check_tasks=(f"small-resnet@digits:{one_shot}",)),
                     tasks=(f"small-vgg@digits:{quick}",))
    result = evolve(config, tmp_path / "run", progress=False)
    saved = json.loads((tmp_path / "run" / "rescored.json").read_text())
    seed_rows = [r for r in result.rescored if r.kind == "seed"]  # the best seed, when it is not a baseline
    assert len(seed_rows) == (result.evolution["best_seed"]["kind"] == "seed")
    assert saved["seeds"] == 2 and len(saved["rows"]) == (len(result.hall_of_fame) + len(BASELINE_NAMES) + 1
                                                          + len(seed_rows))
    hof = json.loads((tmp_path / "run" / "hall_of_fame.json").read_text())
    assert all(e["rescored"]["check"]["mean"] is not None or e["rescored"]["reason"] for e in hof)
    # the held-out data only reports: the winner is the best on validation, the hall of fame's first
    assert result.best.text == result.hall_of_fame[0].text == saved["evolution"]["winner"]
    assert load_run(tmp_path / "run").best.text == result.best.text
    assert result.evolution_gain is not None and result.best_seed is not None
    log = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert log[0].startswith("generation,evaluations,jobs,selections,new_selections,redrawn")

    capsys.readouterr()
    assert main(["show", str(tmp_path / "run")]) == 0  # in this process: the CLI's own process is test_cli's
    show = capsys.readouterr().out
    assert "winner (the best on validation):" in show and "check tasks" in show
    assert "evolution gain: winner vs the best seed" in show and "(1 draw)" in show
    assert "regime short fine-tune" in show and "verdict (short fine-tune; paired by seed" in show
    assert "over " in show and "on held-out data (relative accuracy)" in show
    assert main(["show", str(tmp_path / "run"), "--rescore", "--rescore-seeds", "2"]) == 0
    assert json.loads((tmp_path / "run" / "rescored.json").read_text()) == saved  # same seeds: same re-scoring
    capsys.readouterr()
    assert main(["export", str(tmp_path / "run"), "--format", "text"]) == 0
    assert capsys.readouterr().out.strip() == Formula.parse(result.best.text).text


def test_preset_help_is_read_from_the_presets(capsys):
    from prunevo.cli import build_parser
    from prunevo.evolve.presets import PRESETS

    with pytest.raises(SystemExit):
        build_parser().parse_args(["evolve", "--help"])
    text = "".join(capsys.readouterr().out.split())  # argparse wraps lines at spaces and hyphens

    for name, preset in PRESETS.items():
        size = preset.settings(Path("root"))
        assert "".join(f"{name}: {preset.describe()}".split()) in text
        assert f"population {size['population']}, {size['generations']} generations" in preset.describe()
    assert "workers,ladder0.25" in text  # transfer's ladder is named; oneshot has none


def test_check_tasks_must_differ_from_fitness_tasks():
    with pytest.raises(PrunevoError, match="given twice"):
        replace(evolve_config(1), rescore_seeds=1, check_tasks=("small-vgg@digits",))  # = digits-vgg
    with pytest.raises(PrunevoError, match="rescore_seeds must be > 0"):
        replace(evolve_config(1), check_tasks=("lenet5@digits",))


@pytest.mark.slow
def test_the_transfer_preset_fills_unset_options_and_needs_its_data(tmp_path):
    from prunevo import EvolutionConfig
    from prunevo.cli import parse_config

    for folder in ("MNIST", "FashionMNIST", "imagenette2"):
        (tmp_path / folder).mkdir()
    preset = ["evolve", "--preset", "transfer", "--data-root", str(tmp_path)]
    config = parse_config([*preset, "--population", "4"])
    assert config.population == 4 and config.generations == 6 and config.rescore_seeds == 2  # the command line wins
    assert config.tasks[0].startswith("lenet5@mnist") and f"imagefolder:{tmp_path}/imagenette2" in config.tasks[1]
    assert config.check_tasks == ("small-resnet@fashion-mnist:macs=0.5,train=2000",) and config.execution.n_jobs == 2
    assert config.ladder == (0.25,) and config.hall_of_fame_size == 5
    # typed options win even when they equal the config's defaults (population 48, 3 re-scoring seeds, no ladder,
    # 10 hall-of-fame entries)
    defaults = EvolutionConfig()
    config = parse_config([*preset, "--population", "48", "--rescore-seeds", "3", "--ladder", "off",
                           "--hall-of-fame", "10"])
    assert (config.population, config.rescore_seeds, config.ladder, config.hall_of_fame_size) == (
        defaults.population, defaults.rescore_seeds, defaults.ladder, defaults.hall_of_fame_size)
    assert config.generations == 6  # not typed: the preset's
    (tmp_path / "imagenette2").rmdir()
    proc = subprocess.run([sys.executable, "-m", "prunevo.cli", "evolve", "--preset", "transfer", "--data-root",
                           str(tmp_path), "--run-dir", str(tmp_path / "run")], capture_output=True, text=True)
    assert proc.returncode == 2 and "missing: imagenette2" in proc.stderr and len(proc.stderr.splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_a_preset_is_config_values_under_the_typed_ones(tmp_path):
    """Typed values over the preset over the defaults: --model (typed) builds the tasks, the preset the rest."""
    from prunevo.cli import parse_config
    from prunevo.evolve.presets import preset_defaults

    for folder in ("MNIST", "FashionMNIST", "imagenette2"):
        (tmp_path / folder).mkdir()
    preset = preset_defaults("oneshot", str(tmp_path))
    config = parse_config(["evolve", "--preset", "oneshot", "--data-root", str(tmp_path), "--model", "small-vgg",
                           "--dataset", "digits", "--generations", "3"])
    assert len(config.tasks) == 1 and config.tasks[0].startswith("small-vgg@digits")
    assert config.generations == 3 and config.population == preset["population"]
    assert config.check_tasks == tuple(preset["check_tasks"]) and config.data_root == str(tmp_path)
