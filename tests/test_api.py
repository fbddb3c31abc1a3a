"""The public API: the top level exports exactly what a user calls, and a user's own criterion (any object
with a ``name`` and ``group_scores``) works wherever a criterion is accepted, like the built-in ones."""
from __future__ import annotations

import pytest
import torch

import prunevo
from prunevo.errors import PrunevoError
from prunevo.pruning.criteria import Criterion, as_criterion, score_groups
from prunevo.pruning.ranking import PruneSpec, select
from prunevo.fitness.config import FitnessConfig
from prunevo.fitness.execution import SERIAL
from prunevo.transfer.config import TransferConfig
from prunevo.transfer.session import TransferSession
from prunevo.transfer.setup import Setup
from prunevo.training import FitConfig

PUBLIC = set("""evolve load_run score_formulas train_base apply_formula compare_criteria load_pruned task_for
Formula Criterion EvolutionConfig FitnessConfig Execution TaskOverrides TrainConfig TransferConfig Setup Accelerator FitConfig SearchSpec
LatencySpec RunResult ScoreRow TrainResult ApplyResult CompareResult PrunevoError FormulaError DataError ModelError
RunError TargetUnreachable NotApplicableError""".split())


def test_the_top_level_exports_exactly_the_public_api():
    assert len(prunevo.__all__) == len(set(prunevo.__all__))
    assert set(prunevo.__all__) == PUBLIC
    for name in prunevo.__all__:
        assert getattr(prunevo, name) is not None
    errors = ["FormulaError", "DataError", "ModelError", "RunError", "TargetUnreachable", "NotApplicableError"]
    assert all(issubclass(getattr(prunevo, n), prunevo.PrunevoError) for n in errors)
    # internals left the top level but stay importable from their modules
    assert not hasattr(prunevo, "Evaluator") and not hasattr(prunevo, "make_task")
    from prunevo.fitness.task_spec import make_task
    from prunevo.primitives.export import export_formula

    assert callable(make_task) and callable(export_formula)


class MyL1:
    """A user's criterion: the filter L1 norm read from the modules themselves, subclassing nothing."""

    name = "my-l1"

    def group_scores(self, calibration, reduction):
        modules = dict(calibration.model.named_modules())
        return [torch.stack([modules[m.layer].weight.detach().flatten(1).abs().sum(1).double()
                             for m in group.members]).mean(0) for group in calibration.groups]


@pytest.fixture(scope="module")
def session():
    config = TransferConfig(setup=Setup(model="resnet20", dataset="digits"), calibration_samples=40, latency=None,
                            finetune=FitConfig(epochs=0.0))
    return TransferSession(config)


def test_a_user_criterion_selects_what_the_builtin_l1_selects(session):
    mine = as_criterion(MyL1())
    assert isinstance(mine, Criterion) and isinstance(mine, MyL1)  # passed through, not wrapped
    calibration = session.calibration(0)
    for ranking in ("layerwise", "global"):
        spec = PruneSpec(0.5, ranking)
        ours = select(score_groups(mine, calibration, "mean"), spec)
        builtin = select(score_groups(as_criterion("l1"), calibration, "mean"), spec)
        assert all(torch.equal(a, b) for a, b in zip(ours, builtin))


def test_a_user_criterion_prunes_and_compares_like_the_builtin_l1(session):
    config = session.config
    _, mine = prunevo.apply_formula(MyL1(), config, session=session)
    _, l1 = prunevo.apply_formula("l1", config, session=session)
    assert (mine.criterion, mine.formula) == ("my-l1", None)
    assert mine.kept == l1.kept and mine.after.top1 == l1.after.top1 and mine.macs_fraction == l1.macs_fraction
    # compare: beside random, and under layer pruning (scores per layer from its group scores)
    table = prunevo.compare_criteria([MyL1(), "l1"], config, seeds=(0,), session=session,
                                     strategies=["uniform", "layer"])
    rows = {(r.strategy, r.criterion): r for r in table.rows}
    assert rows[("uniform", "my-l1")].top1_mean == rows[("uniform", "l1")].top1_mean
    assert {("layer", "my-l1"), ("uniform", "random"), ("layer", "random")} <= set(rows)


def test_a_user_criterion_scores_on_fitness_tasks_like_the_builtin_l1(cache_dir):
    config = FitnessConfig(tasks=("lenet5@digits:ratio=0.5,epochs=0,pretrain=2",), cache_dir=str(cache_dir),
                           execution=SERIAL)
    rows = prunevo.score_formulas([MyL1(), "l1"], config, baselines=False, progress=False)
    assert [r.name for r in rows] == ["my-l1", "l1"] and rows[0].fitness == rows[1].fitness is not None


def test_a_comparison_needs_a_seed():
    config = TransferConfig(setup=Setup(model="lenet5"), latency=None)
    with pytest.raises(PrunevoError, match="seeds must give at least one seed"):
        prunevo.compare_criteria(["l1"], config, seeds=())


def test_an_untrained_model_starts_from_the_same_weights_every_time():
    from prunevo.transfer.setup import load_setup

    torch.manual_seed(1)
    first = load_setup(Setup(model="lenet5"), warn_untrained=False)[1].state_dict()
    state = torch.random.get_rng_state()
    torch.manual_seed(2)  # whatever ran before, the same weights
    again = load_setup(Setup(model="lenet5"), warn_untrained=False)[1].state_dict()
    assert all(torch.equal(first[k], again[k]) for k in first)
    other = load_setup(Setup(model="lenet5"), warn_untrained=False, init_seed=1)[1].state_dict()
    assert not all(torch.equal(first[k], other[k]) for k in first)
    torch.manual_seed(1)
    load_setup(Setup(model="lenet5"), warn_untrained=False)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's generator is left alone


def test_objects_that_are_not_criteria_are_refused_in_one_line():
    class NoScores:
        name = "half"

    for bad in (NoScores(), 3, None):
        with pytest.raises(PrunevoError) as info:
            as_criterion(bad)
        message = str(info.value)
        assert "\n" not in message and "is not a criterion" in message and "group_scores" in message
        assert "allowed: a criterion name" in message
    with pytest.raises(PrunevoError, match="no group_scores"):
        prunevo.score_formulas([NoScores()], FitnessConfig(tasks=("lenet5@digits",)))  # before any task is prepared


def test_scores_of_the_wrong_shape_name_the_criterion(session):
    class Short(MyL1):
        name = "short"

        def group_scores(self, calibration, reduction):
            return super().group_scores(calibration, reduction)[:-1]

    with pytest.raises(PrunevoError, match="criterion 'short' returned .* score vectors for .* groups"):
        score_groups(Short(), session.calibration(0), "mean")


def test_constant_user_scores_cannot_rank_channels(session):
    from prunevo.pruning.scores import InvalidScores

    class Flat(MyL1):
        name = "flat"

        def group_scores(self, calibration, reduction):
            return [torch.ones(g.size) for g in calibration.groups]

    with pytest.raises(InvalidScores, match="constant scores in group 0"):
        score_groups(Flat(), session.calibration(0), "mean")
    assert len(score_groups(Flat(), session.calibration(0), "mean", strict=False)) == len(session.groups)


@pytest.mark.parametrize("values,word", [({"batch_sizes": (1, -3)}, "batch_sizes"), ({"repeats": 0}, "repeats"),
                                         ({"warmup": -1}, "warmup"), ({"threads": 0}, "threads")])
def test_latency_settings_outside_their_range_are_refused(values, word):
    from prunevo.errors import PrunevoError
    from prunevo.pruning.latency import LatencySpec

    with pytest.raises(PrunevoError, match=word):
        LatencySpec(**values)
