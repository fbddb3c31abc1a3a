"""Scoring many candidates of one shape: the reused-module loop equals pruning each candidate, and the fused
(vmap) pass equals the loop within floating-point tolerance, whatever its companions."""
import pytest
import torch

from prunevo.fitness.data import load_task_data
from prunevo.pruning.gather import Skeleton
from prunevo.pruning.groups import find_groups
from prunevo.pruning.physical import prune_model
from prunevo.pruning.ranking import PruneSpec, select
from prunevo.training import FitConfig, fit, recalibrate_bn, top1
from prunevo.pruning.masks import masked_states
from prunevo.training.stacked import Recalibration, score_states
from prunevo.zoo.models import build_model

pytestmark = pytest.mark.slow  # end to end throughout

RECAL = Recalibration(batches=2, batch_size=128)
BUDGET = FitConfig(epochs=0.3, lr=0.02, batch_size=64, lr_schedule="cosine")


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    data = load_task_data("small-resnet", "digits", None, None)
    factory = lambda: build_model("small-resnet", 10, data.input_shape)  # noqa: E731
    model = factory()
    fit(model, data.train, FitConfig(epochs=2, lr=0.05, batch_size=64, lr_schedule="cosine"), 0)
    base = {k: v.clone() for k, v in model.state_dict().items()}
    x = data.train.x[:1]
    groups = find_groups(model, x)
    gen = torch.Generator().manual_seed(1)
    keeps = [select([torch.rand(g.size, generator=gen) for g in groups], PruneSpec(ratio=0.5)) for _ in range(4)]
    return data, factory, base, groups, x, keeps


def _sequential(data, factory, base, groups, x, keep, budget):
    model = factory()
    model.load_state_dict(base)
    prune_model(model, groups, keep, x)
    recalibrate_bn(model, data.train, batches=RECAL.batches, batch_size=RECAL.batch_size, seed=7)
    if budget.epochs > 0:
        fit(model, data.train, budget, 7)
        recalibrate_bn(model, data.train, batches=RECAL.batches, batch_size=RECAL.batch_size, seed=7)
    return top1(model, data.val)


def _gathered(setup, epochs):
    """The skeleton, every candidate's gathered state, and the budget."""
    data, factory, base, groups, x, keeps = setup
    skeleton = Skeleton.build(factory, base, groups, keeps[0], x)
    states = [skeleton.state_for(k, base) for k in keeps]
    return skeleton, states, FitConfig(epochs=epochs, lr=0.02, batch_size=64, lr_schedule="cosine")


@pytest.mark.parametrize("epochs", [0.0, 0.3])
def test_loop_equals_pruning_each_candidate(setup, epochs):
    data, factory, base, groups, x, keeps = setup
    skeleton, states, budget = _gathered(setup, epochs)
    got = score_states(skeleton.model, states, data.train, data.val, budget, 7, RECAL)
    assert got == [_sequential(data, factory, base, groups, x, k, budget) for k in keeps]


@pytest.mark.parametrize("epochs", [0.0, 0.3])
def test_fused_equals_loop_and_ignores_companions(setup, epochs):
    data = setup[0]
    skeleton, states, budget = _gathered(setup, epochs)
    loop = score_states(skeleton.model, states, data.train, data.val, budget, 7, RECAL)
    fused = score_states(skeleton.model, states, data.train, data.val, budget, 7, RECAL, fused=True, pad_to=6)
    assert fused == pytest.approx(loop, abs=2 / len(data.val))  # at most a couple of borderline images flip
    alone = score_states(skeleton.model, states[2:3], data.train, data.val, budget, 7, RECAL, fused=True, pad_to=6)
    assert alone == [fused[2]]


@pytest.mark.parametrize("epochs", [0.0, 0.3])
def test_fused_masks_on_the_unpruned_shape_equal_physical_pruning(setup, epochs):
    data, factory, base, groups, x, keeps = setup
    gen = torch.Generator().manual_seed(5)  # global allocation: different widths per candidate
    keeps = [select([torch.rand(g.size, generator=gen) for g in groups], PruneSpec(ratio=0.5, ranking="global"))
             for _ in range(3)]
    model = factory()
    states, masks = masked_states(model, base, groups, keeps)
    budget = FitConfig(epochs=epochs, lr=0.02, batch_size=64, lr_schedule="cosine")
    want = [_sequential(data, factory, base, groups, x, k, budget) for k in keeps]
    for fused in (False, True):  # the loop and the fused pass, against the same physically pruned candidates
        got = score_states(model, states, data.train, data.val, budget, 7, RECAL, fused=fused, masks=masks)
        assert got == pytest.approx(want, abs=2 / len(data.val)), fused
