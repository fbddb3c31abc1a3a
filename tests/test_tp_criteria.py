"""Torch-Pruning's importances as named criteria: the same selections as Torch-Pruning's own MetaPruner,
the grammar formulas that rank like them where the docs say so (and not where they say not), gradients
handed to the classes correctly, and n/a where a network lacks what a criterion needs."""
from __future__ import annotations

import copy

import pytest
import torch
import torch_pruning as tp
import torchvision
from torch import nn

from prunevo.transfer.setup import Setup
from prunevo.primitives import Formula
from prunevo.pruning.calibration import Calibration
from prunevo.pruning.criteria import FormulaCriterion, NotApplicable, TorchPruningCriterion, as_criterion
from prunevo.pruning.groups import find_groups
from prunevo.pruning.ranking import PruneSpec, select
from prunevo.pruning.statistics import _consumer_rows
from prunevo.pruning.tp_criteria import TP_CRITERIA, tp_group_scores
from prunevo.zoo.nets import build_small_net
from tests.helpers import randomize_batchnorm

ZOO = ["lenet5", "vgg", "resnet", "resnet20"]


def _zoo(net: str, size: int = 8, samples: int = 40) -> Calibration:
    torch.manual_seed(0)
    model = randomize_batchnorm(build_small_net(net, 1, 10, size), running_mean=True).eval()
    x, y = torch.randn(samples, 1, size, size), torch.arange(samples) % 10
    return Calibration(model, find_groups(model, x[:1]), x, y, 10)


def _same_order(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-5) -> bool:
    """``b`` sorted by ``a`` never decreases (and vice versa), up to float32 rounding of Torch-Pruning."""
    def monotone(key, values):
        ordered = values[torch.argsort(key, stable=True)]
        return bool((ordered[1:] >= ordered[:-1] - rtol * ordered.abs().max()).all())
    return monotone(a, b) and monotone(b, a)


def _readable_consumers(calibration: Calibration, group) -> bool:
    modules = dict(calibration.model.named_modules())
    return all(_consumer_rows(modules, group, c) is not None for c in group.consumers)


EXACT = {  # where the docs (TorchPruningSpec.exact_on) say the formula ranks like the class
    "one-layer": lambda cal, g, members: len(members) == 1 and _readable_consumers(cal, g),
    "batchnorm": lambda cal, g, members: all("gamma" not in s.missing for s in members),
    "one-consumer": lambda cal, g, members: (len(members) == 1 and len(g.consumers) == 1
                                             and _readable_consumers(cal, g)
                                             and all(len(c) == 1 for c in g.consumers[0].columns)),
}
WHERE = {"tp-l1": "one-layer", "tp-l2": "one-layer", "tp-lamp": "one-layer", "tp-bn": "batchnorm",
         "tp-fpgm": "one-consumer"}


def test_every_torch_pruning_criterion_says_whether_the_grammar_expresses_it():
    assert set(TP_CRITERIA) == {"tp-l1", "tp-l2", "tp-bn", "tp-taylor", "tp-hessian", "tp-lamp", "tp-fpgm",
                                "tp-obdc", "tp-activation"}
    assert {n for n, s in TP_CRITERIA.items() if s.formula} == {*WHERE, "tp-activation"}


@pytest.mark.parametrize("name", sorted(TP_CRITERIA))
def test_every_torch_pruning_criterion_says_what_the_grammar_lacks(name):
    assert TP_CRITERIA[name].missing  # what the grammar lacks (or that nothing does within a group)


@pytest.fixture(scope="module")
def zoo():
    """_zoo(net), computed once per net for the tests that only read it."""
    made = {}

    def get(net: str) -> Calibration:
        if net not in made:
            made[net] = _zoo(net)
        return made[net]
    return get


@pytest.mark.parametrize("name", list(WHERE))
@pytest.mark.parametrize("net", ZOO)
def test_expressible_criteria_rank_like_their_formula_on_the_zoo_nets(zoo, net, name):
    calibration = zoo(net)
    where = WHERE[name]
    formula = FormulaCriterion(Formula.parse(TP_CRITERIA[name].formula))
    if net == "lenet5" and name == "tp-bn":  # no BatchNorm: neither applies
        for criterion in (TorchPruningCriterion(name), formula):
            with pytest.raises(NotApplicable, match="BatchNorm"):
                criterion.group_scores(calibration, "mean")
        return
    ours = formula.group_scores(calibration, "mean", strict=False)
    theirs = TorchPruningCriterion(name).group_scores(calibration, "mean", strict=False)
    exact = [g for g, (group, members) in enumerate(zip(calibration.groups, calibration.stats))
             if EXACT[where](calibration, group, members)]
    assert exact
    for g in exact:
        assert _same_order(ours[g], theirs[g]), calibration.groups[g].root
    if all(len(m) == 1 for m in calibration.stats) and where == "one-layer":
        assert len(exact) == len(calibration.groups)  # exact on every group of a plain net


@pytest.mark.parametrize("net", ["resnet", "resnet20"])
def test_in_residual_groups_the_group_l2_counts_consumers_once_which_the_grammar_cannot(net):
    """The documented gap: Torch-Pruning sums each coupled layer's term once (consumers once); the formula is
    applied per producing layer, so with any reduction the consumers' term counts once per member."""
    calibration = _zoo(net)
    theirs = TorchPruningCriterion("tp-l2").group_scores(calibration, "sum", strict=False)
    formula = FormulaCriterion(Formula.parse(TP_CRITERIA["tp-l2"].formula))
    ours = formula.group_scores(calibration, "sum", strict=False)
    multi = [g for g, members in enumerate(calibration.stats) if len(members) > 1]
    assert multi
    for g in multi:
        members = calibration.stats[g]
        once = sum(s.W.square().sum(1) + s.gamma.square() for s in members) + members[0].Wn.square().sum(1)
        assert _same_order(once.double(), theirs[g])
    assert any(not _same_order(ours[g], theirs[g]) for g in multi)


def test_lnorm_of_the_formula_matches_torch_pruning_under_global_ranking():
    calibration = _zoo("vgg")  # every group has one producing layer
    spec = PruneSpec(0.6, "global", max_layer_ratio=0.9)
    theirs = select(TorchPruningCriterion("tp-l2").group_scores(calibration, "mean"), spec)
    ours = select(as_criterion(f"lnorm({TP_CRITERIA['tp-l2'].formula})").group_scores(calibration, "mean"), spec)
    raw = select(as_criterion(TP_CRITERIA["tp-l2"].formula).group_scores(calibration, "mean"), spec)
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs))
    assert any(not torch.equal(a, b) for a, b in zip(raw, theirs))  # the normalization matters globally


@pytest.mark.parametrize("norm,theirs", [("lamp", "lamp"), ("lminmax", "standarization"), ("lzscore", "gaussian"),
                                         ("lnorm", "mean")])
def test_the_layer_normalizations_are_torch_pruning_normalizers_under_global_ranking(norm, theirs):
    """Each layer normalization of the grammar applied to tp-l2's formula selects, globally, what Torch-Pruning's
    group L2 importance with the same normalizer selects (LAMP's, min-max's "standarization", the z-score's
    "gaussian", the mean): global pruning as Torch-Pruning does it, written as a formula."""
    calibration = _zoo("vgg")  # every group has one producing layer
    spec = PruneSpec(0.6, "global", max_layer_ratio=0.9)
    formula = TP_CRITERIA["tp-l2"].formula
    expected = select(tp_group_scores(calibration, "tp-l2", "mean", theirs), spec)
    ours = select(as_criterion(f"{norm}({formula})").group_scores(calibration, "mean"), spec)
    assert all(torch.equal(a, b) for a, b in zip(ours, expected))
    layerwise = PruneSpec(0.6, "layerwise")  # within a layer the order is the raw scores': uniform widths ignore it
    raw = select(as_criterion(formula).group_scores(calibration, "mean"), layerwise)
    assert all(torch.equal(a, b) for a, b in zip(select(as_criterion(f"{norm}({formula})").group_scores(
        calibration, "mean"), layerwise), raw))


def _resnet18():
    torch.manual_seed(0)
    model = randomize_batchnorm(torchvision.models.resnet18(num_classes=10), running_mean=True).eval()
    x, y = torch.randn(12, 3, 32, 32), torch.arange(12) % 10
    return model, x, y


def _metapruner_removed(model, x, importance, ratio):
    """Root layer -> channels Torch-Pruning's own MetaPruner removes (layer-wise ranking)."""
    names = {m: n for n, m in model.named_modules()}
    pruner = tp.pruner.MetaPruner(model, x[:1], importance=importance, pruning_ratio=ratio,
                                  ignored_layers=[model.fc])
    return {names[g[0].dep.target.module]: sorted(int(i) for i in g[0].idxs) for g in pruner.step(interactive=True)}


@pytest.mark.slow
@pytest.mark.parametrize("ratio", [0.5, 0.25])
def test_tp_l2_selects_the_channels_metapruner_selects_on_resnet18(ratio):
    model, x, y = _resnet18()
    calibration = Calibration(model, find_groups(model, x[:1]), x, y, 10)
    keep = select(as_criterion("tp-l2").group_scores(calibration, "mean"), PruneSpec(ratio))
    ours = {g.root: torch.nonzero(~k).flatten().tolist() for g, k in zip(calibration.groups, keep)}
    theirs = _metapruner_removed(copy.deepcopy(model), x, tp.importance.GroupMagnitudeImportance(p=2), ratio)
    assert ours == theirs and len(ours) == len(calibration.groups)


@pytest.mark.slow
def test_tp_taylor_gets_the_batch_gradient_metapruner_users_compute():
    model, x, y = _resnet18()
    calibration = Calibration(model, find_groups(model, x[:1]), x, y, 10)
    keep = select(as_criterion("tp-taylor").group_scores(calibration, "mean"), PruneSpec(0.5))
    ours = {g.root: torch.nonzero(~k).flatten().tolist() for g, k in zip(calibration.groups, keep)}
    assert all(p.grad is None for p in model.parameters())  # gradients are cleaned up afterwards
    reference = copy.deepcopy(model)
    nn.functional.cross_entropy(reference(x), y).backward()  # Torch-Pruning's documented recipe
    assert ours == _metapruner_removed(reference, x, tp.importance.GroupTaylorImportance(), 0.5)


def _per_sample_gradients(calibration: Calibration):
    """A copy of the calibration's model, its parameters, and each sample's loss gradient of every parameter
    (computed independently of prunevo, with torch.func)."""
    model = copy.deepcopy(calibration.model)
    params = {n: p.detach() for n, p in model.named_parameters()}
    buffers = {n: b for n, b in model.named_buffers()}

    def loss(p, xi, yi):
        out = torch.func.functional_call(model, (p, buffers), (xi.unsqueeze(0),))
        return nn.functional.cross_entropy(out, yi.unsqueeze(0))

    grads = torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0, 0))(params, calibration.x, calibration.y)
    return model, params, grads


def test_tp_hessian_uses_the_mean_squared_per_sample_gradient():
    calibration = _zoo("vgg", samples=12)
    ours = TorchPruningCriterion("tp-hessian").group_scores(calibration, "mean")
    # the diagonal Fisher computed independently, with torch.func per-sample gradients
    model, _, grads = _per_sample_gradients(calibration)
    for n, p in model.named_parameters():
        p.grad = grads[n].square().mean(0)
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=calibration.x[:1])
    modules = dict(model.named_modules())
    importance = tp.importance.GroupHessianImportance()
    for group, score in zip(calibration.groups, ours):
        tp_group = graph.get_pruning_group(modules[group.root], tp.prune_conv_out_channels, list(range(group.size)))
        torch.testing.assert_close(score, importance(tp_group).double(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("net", ["lenet5", "vgg"])
def test_tp_obdc_weighs_squared_weights_by_the_per_sample_fisher(net):
    """OBDCImportance (EigenDamage's diagonal): w^2 times the sum over samples of each sample's squared weight
    gradient, over the root convolution's filter; LeNet-5's conv biases no longer break it."""
    calibration = _zoo(net, samples=12)
    ours = TorchPruningCriterion("tp-obdc").group_scores(calibration, "mean")
    _, params, grads = _per_sample_gradients(calibration)
    for group, score in zip(calibration.groups, ours):
        (member,) = group.members
        weight = f"{member.layer}.weight"
        fisher = grads[weight].flatten(2).square().sum(0) + 1e-10  # one pass of 12 samples: steps = 1
        expected = (params[weight].flatten(1).square() * fisher).sum(1)
        torch.testing.assert_close(score, (expected / expected.mean()).double(), rtol=1e-4, atol=1e-7)
    assert not any(m._forward_pre_hooks or m._backward_hooks for m in calibration.model.modules())


def test_tp_activation_reads_the_consumers_inputs_over_the_whole_batch():
    """ActivationImportance: the mean |input| of each consumer, over every calibration image even when they
    pass in chunks; where a consumer reads the producing layer's BatchNorm-ReLU output directly, that is the
    classic activation, mean(F)."""
    whole = _zoo("resnet20", samples=23)
    chunked = _zoo("resnet20", samples=23)
    chunked.batch_size = 5  # 5+5+5+5+3 images
    a = TorchPruningCriterion("tp-activation").group_scores(whole, "mean", strict=False)
    b = TorchPruningCriterion("tp-activation").group_scores(chunked, "mean", strict=False)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-7)
    formula = FormulaCriterion(Formula.parse(TP_CRITERIA["tp-activation"].formula)).group_scores(whole, "mean",
                                                                                                 strict=False)
    inner = [g for g, group in enumerate(whole.groups) if group.root.endswith(".conv1")]  # conv1 -> relu1 -> conv2
    assert inner
    for g in inner:
        assert _same_order(formula[g], a[g]), whole.groups[g].root
    assert not any(hasattr(m, "_importance") for m in whole.model.modules())


def _vgg_with_a_frozen_first_conv() -> Calibration:
    calibration = _zoo("vgg")
    frozen = dict(calibration.model.named_modules())
    for name in ("features.0", "features.1"):  # no gradient reaches the first conv (nor its BatchNorm output)
        for p in frozen[name].parameters():
            p.requires_grad_(False)
    return calibration


@pytest.mark.parametrize("spec", ["tp-taylor", "tp-hessian"])
def test_weight_gradient_criteria_do_not_apply_where_no_gradient_reaches(spec):
    calibration = _vgg_with_a_frozen_first_conv()
    with pytest.raises(NotApplicable, match="does not reach layer 'features.0'"):
        as_criterion(spec).group_scores(calibration, "mean")


def test_feature_map_gradients_need_no_trainable_weights():
    calibration = _vgg_with_a_frozen_first_conv()
    # the gradient with respect to a feature map needs no trainable weights: taylor still applies
    assert len(as_criterion("taylor").group_scores(calibration, "mean")) == len(calibration.groups)
    assert len(as_criterion("l1").group_scores(calibration, "mean")) == len(calibration.groups)


@pytest.mark.parametrize("batch_size", [None, 7])  # whole batch and streamed alike
def test_a_feature_map_the_loss_does_not_reach_through_autograd_has_no_gradient(batch_size):
    cut = _zoo("vgg")
    cut.batch_size = batch_size
    dict(cut.model.named_modules())["features.1"].register_forward_hook(lambda m, i, out: out.detach())
    with pytest.raises(NotApplicable, match=r"loss gradient \(G\)"):
        as_criterion("taylor").group_scores(cut, "mean")
    assert len(as_criterion("activation").group_scores(cut, "mean")) == len(cut.groups)


def test_a_formula_that_reads_gamma_but_still_ranks_applies_without_batchnorm():
    lenet = _zoo("lenet5")
    assert len(as_criterion("gamma + l1(Wn)").group_scores(lenet, "mean")) == len(lenet.groups)


def test_layer_scores_compare_layers_with_raw_group_scores():
    calibration = _zoo("resnet20")
    scores = TorchPruningCriterion("tp-l2").layer_scores(calibration)
    members = [m.layer for g in calibration.groups for m in g.members]
    assert set(scores) == set(members)
    means = {round(float(s.mean()), 6) for s in scores.values()}
    assert len(means) > 1  # normalized by the group mean, every layer would score 1


@pytest.fixture(scope="module")
def initial_texts():
    from prunevo.runs.config import EvolutionConfig
    from prunevo.evolve.engine import initial_population
    from prunevo.evolve.individuals import build_pset

    return {ind.formula.text for ind in initial_population(EvolutionConfig(population=16), build_pset())}


@pytest.mark.parametrize("name", ["tp-l1", "tp-l2", "tp-fpgm"])
def test_evolution_is_seeded_with_the_expressible_importances(initial_texts, name):
    assert Formula.parse(TP_CRITERIA[name].formula).text in initial_texts


@pytest.mark.slow
def test_compare_reports_na_rows_apart_and_the_best_classic(tmp_path):
    import json

    from prunevo.transfer import FitConfig, TransferConfig, compare_criteria

    # uniform widths of LeNet-5's 6 and 16 channels keep 54% or 46% of the MACs, not 50% (ranking.layerwise_counts)
    config = TransferConfig(setup=Setup(model="lenet5", dataset="digits"), target_macs=0.54, calibration_samples=40,
                            finetune=FitConfig(epochs=0.0), latency=None)
    result = compare_criteria(["l1", "bn", "tp-bn", "tp-l2", "tp-hessian", "l1(W) + 1.0"], config, seeds=(0,),
                              out_dir=tmp_path)
    rows = {r.criterion: r for r in result.rows}
    assert rows["bn"].not_applicable and rows["tp-bn"].not_applicable and rows["bn"].runs == 0
    assert "| bn | n/a: does not apply to lenet5: needs BatchNorm (gamma)" in result.markdown
    best = max((rows[n] for n in ("l1", "tp-l2", "tp-hessian")), key=lambda r: r.top1_mean)
    assert f"n/a ones left out): {best.criterion} {best.top1_mean:.4f}" in result.markdown
    for name in ("l1", "tp-l2", "random", "l1(W) + 1.0"):  # a formula that is not a classic is compared too
        assert rows[name].vs_best_classic == pytest.approx(rows[name].top1_mean - best.top1_mean)
    saved = json.loads((tmp_path / "compare.json").read_text())
    assert {d["criterion"] for d in saved["not_applicable"]} == {"bn", "tp-bn"}
    assert {r["criterion"] for r in saved["runs"]} == {"l1", "tp-l2", "tp-hessian", "l1(W) + 1.0", "random"}


@pytest.mark.slow
def test_torch_pruning_criteria_run_under_every_channel_and_layer_strategy():
    from prunevo.transfer import FitConfig, TransferConfig, compare_criteria

    config = TransferConfig(setup=Setup(model="resnet20", dataset="digits"), target_macs=0.6, calibration_samples=40,
                            finetune=FitConfig(epochs=0.0), latency=None)
    result = compare_criteria(["tp-l2", "tp-taylor", "tp-lamp", "tp-fpgm"], config, seeds=(0,),
                              strategies=["uniform", "global", "layer"], match_latency=False)
    ran = {(r.strategy, r.criterion) for r in result.runs}
    assert ran == {(s, c) for s in ("uniform", "global", "layer") for c in ("tp-l2", "tp-taylor", "tp-lamp", "tp-fpgm",
                                                                             "random")}
    assert all(abs(r.macs_fraction - 0.6) <= 0.018 for r in result.runs if r.strategy != "layer")
    assert "| best classic |" in result.markdown


def test_lamp_selects_what_tp_l2_selects_within_layers_but_not_globally():
    calibration = _zoo("resnet20")
    lamp, l2 = (as_criterion(n).group_scores(calibration, "mean") for n in ("tp-lamp", "tp-l2"))
    uniform, global_ = PruneSpec(0.5), PruneSpec(0.5, "global")
    assert all(torch.equal(a, b) for a, b in zip(select(lamp, uniform), select(l2, uniform)))
    assert any(not torch.equal(a, b) for a, b in zip(select(lamp, global_), select(l2, global_)))
