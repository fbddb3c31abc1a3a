"""Shared pruning mechanics: groups, selection, masks == physical removal."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from prunevo.errors import PrunevoError
from prunevo.pruning.calibration import Calibration
from prunevo.pruning.criteria import FormulaCriterion, InvalidScores, RandomCriterion, as_criterion
from prunevo.pruning.groups import find_groups
from prunevo.pruning.masks import apply_masks
from prunevo.pruning.physical import prune_model
from prunevo.pruning.ranking import PruneSpec, masks_key, select
from prunevo.zoo.stratify import stratified_batch
from prunevo.primitives import Formula
from prunevo.zoo.nets import build_small_net


def _randomized(net: str, size: int) -> nn.Module:
    torch.manual_seed(0)
    model = build_small_net(net, 1, 10, size)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    return model.eval()


@pytest.mark.parametrize("net", ["vgg", "resnet", "lenet5"])
@pytest.mark.parametrize("size", [8, pytest.param(28, marks=pytest.mark.slow)])
@pytest.mark.parametrize("spec", [PruneSpec(0.5), PruneSpec(0.7, "global", max_layer_ratio=0.8)])
def test_masked_network_equals_physically_pruned(net, size, spec):
    model = _randomized(net, size)
    x, y = torch.randn(24, 1, size, size), torch.arange(24) % 10
    groups = find_groups(model, x[:1])
    calibration = Calibration(model, groups, x, y, 10)
    for criterion in [as_criterion("l1"), as_criterion("taylor"), as_criterion("tp-l2"), RandomCriterion(3)]:
        keep = select(criterion.group_scores(calibration, "mean"), spec)
        masked = copy.deepcopy(model)
        apply_masks(masked, groups, keep)
        pruned = prune_model(copy.deepcopy(model), groups, keep, x[:1])
        with torch.no_grad():
            assert torch.allclose(masked(x), pruned(x), atol=1e-5)
        removed = sum(int((~k).sum()) for k in keep)
        assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in model.parameters())
        assert removed > 0


@pytest.mark.slow
def test_masks_survive_finetuning_and_match_pruned_training():
    from prunevo.training import FitConfig, fit
    from prunevo.zoo.images import TensorImages

    model = _randomized("resnet", 8)
    x, y = torch.randn(64, 1, 8, 8), torch.arange(64) % 10
    groups = find_groups(model, x[:1])
    keep = select(RandomCriterion(0).group_scores(Calibration(model, groups, x, y, 10), "mean"), PruneSpec(0.5))
    masked = copy.deepcopy(model)
    masks = apply_masks(masked, groups, keep)
    pruned = prune_model(copy.deepcopy(model), groups, keep, x[:1])
    budget = FitConfig(epochs=2, lr=0.05, batch_size=16, weight_decay=0.0, momentum=0.0, lr_schedule="cosine")
    fit(masked, TensorImages(x, y), budget, seed=1, after_step=masks.reapply)
    fit(pruned, TensorImages(x, y), budget, seed=1)
    with torch.no_grad():
        assert torch.allclose(masked(x), pruned(x), atol=1e-4)


def test_residual_channels_form_one_group_with_several_members():
    model = _randomized("resnet", 8)
    groups = find_groups(model, torch.randn(1, 1, 8, 8))
    stem = next(g for g in groups if g.root == "stem.0")
    assert {m.layer for m in stem.members} == {"stem.0", "layers.0.conv2", "layers.1.conv2"}
    assert all(m.bn is not None for m in stem.members)
    assert sum(g.size for g in groups) < sum(m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d))


@pytest.mark.slow
def test_group_reductions_differ_where_members_disagree(resnet_stats):
    calibration = resnet_stats.calibration
    multi = [i for i, members in enumerate(calibration.stats) if len(members) > 1]
    assert multi
    criterion = as_criterion("l1")
    keys = {r: masks_key(select(criterion.group_scores(calibration, r), PruneSpec(0.5))) for r in ("mean", "sum", "max")}
    # mean and sum rank identically (same members, positive factor); max ranks differently
    assert keys["mean"] == keys["sum"]
    assert keys["max"] != keys["mean"]


def test_layerwise_ranking_removes_the_same_share_everywhere():
    scores = [torch.arange(10.0), torch.arange(4.0), torch.tensor([3.0, 1.0, 2.0])]
    keep = select(scores, PruneSpec(0.5))
    assert [int((~k).sum()) for k in keep] == [5, 2, 1]
    assert keep[0][5:].all() and not keep[0][:5].any()
    assert keep[2].tolist() == [True, False, True]


def test_global_ranking_respects_budget_and_cap():
    scores = [torch.full((10,), 0.0) + torch.arange(10) * 1e-3, torch.arange(10.0) + 100]
    keep = select(scores, PruneSpec(0.5, "global", max_layer_ratio=0.6))
    removed = [int((~k).sum()) for k in keep]
    assert sum(removed) == 10 and removed[0] == 6  # cap reached, the rest from the other layer


@pytest.mark.parametrize("kwargs", [dict(ratio=1.2), dict(ranking="best"), dict(group_reduction="median"),
                                    dict(max_layer_ratio=1.0)], ids=["ratio", "ranking", "reduction", "layer-ratio"])
def test_prune_spec_rejects_bad_values(kwargs):
    with pytest.raises(PrunevoError):
        PruneSpec(**kwargs)


@pytest.mark.slow
@pytest.mark.parametrize("text, reason", [("gamma * 0.0", "constant"),
                                          ("1.0 / (beta - beta) * 0.0 + sparsity(W)", "tied"),
                                          ("log1p(gamma) * 0.0 + 2.0", "constant")])
def test_invalid_scores_are_reported(resnet_stats, text, reason):
    with pytest.raises(InvalidScores, match=reason):
        FormulaCriterion(Formula.parse(text)).group_scores(resnet_stats.calibration, "mean")


def test_stratified_batch_balances_classes():
    x, y = torch.randn(100, 1, 4, 4), torch.cat([torch.zeros(80), torch.ones(20)]).long()
    bx, by = stratified_batch(x, y, per_class=10, seed=0)
    assert (by == 0).sum() == 10 and (by == 1).sum() == 10
    bx2, by2 = stratified_batch(x, y, per_class=10, seed=0)
    assert torch.equal(bx, bx2) and torch.equal(by, by2)


def test_a_group_channel_without_a_source_row_is_refused():
    from prunevo.errors import ModelError
    from prunevo.pruning.statistics import _rows_for_group

    rows = torch.arange(12.0).reshape(4, 3)
    assert torch.equal(_rows_for_group(rows, [(2, 0), (0, 1), (3, 2), (1, 3)], 4), rows[[2, 0, 3, 1]])
    with pytest.raises(ModelError, match=r"group channels \[2\]"):
        _rows_for_group(rows, [(2, 0), (0, 1), (1, 3)], 4)
