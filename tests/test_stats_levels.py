"""Only the operands a criterion reads are computed: weight-only criteria run no calibration pass, activation-only
ones no backward pass, and both score exactly as with every statistic gathered."""
import pytest
import torch

from prunevo.pruning.calibration import Calibration
from prunevo.pruning.criteria import as_criterion
from prunevo.pruning.groups import find_groups
from prunevo.pruning.statistics import needed_level
from prunevo.primitives import Formula
from prunevo.zoo.models import build_model

FORMULAS = ["l1(W)", "fpgm(Wn) * var(Wn)", "abs(gamma) + beta", "mean(F)", "-sparsity(F)",
            "var(cmean(F)) / (mean(cvar(F)) + 0.05)", "abs(mean(F * G))", "l1(W) / (std(F) + 0.05)"]


@pytest.mark.parametrize("name,shape", [("small-vgg", (1, 8, 8)), ("small-resnet", (1, 8, 8)),
                                        pytest.param("resnet18", (3, 32, 32), marks=pytest.mark.slow)])
@pytest.mark.parametrize("consumers", [False, True])
def test_each_level_scores_like_the_full_gather(name, shape, consumers):
    torch.manual_seed(0)
    model = build_model(name, 10, shape).eval()
    x, y = torch.randn(20, *shape), torch.arange(20) % 10
    groups = find_groups(model, x[:1])
    lean = Calibration(model, groups, x, y, 10, consumers=consumers)
    full = Calibration(model, groups, x, y, 10, consumers=consumers)
    _ = full.stats  # everything, forward and backward
    for text in FORMULAS:
        criterion = as_criterion(text)
        for reduction in ("mean", "max"):
            got = criterion.group_scores(lean, reduction, strict=False)
            full_scores = [torch.stack([criterion.formula.score(s).double() for s in members]).mean(0)
                           if reduction == "mean" else
                           torch.stack([criterion.formula.score(s).double() for s in members]).max(0).values
                           for members in full.stats]
            for a, b in zip(got, full_scores):
                assert torch.equal(a, b), (text, reduction)


def test_a_weight_only_criterion_runs_no_pass_and_an_activation_one_no_backward(monkeypatch):
    model = build_model("small-resnet", 10, (1, 8, 8)).eval()
    x, y = torch.randn(20, 1, 8, 8), torch.arange(20) % 10
    calibration = Calibration(model, find_groups(model, x[:1]), x, y, 10)
    monkeypatch.setattr(model, "forward", lambda *a: (_ for _ in ()).throw(AssertionError("a calibration pass ran")))
    as_criterion("l1(W)").group_scores(calibration, "mean")
    as_criterion("abs(gamma) * l2(Wn)").group_scores(calibration, "mean")
    monkeypatch.undo()
    monkeypatch.setattr(torch.Tensor, "backward", lambda *a, **k: (_ for _ in ()).throw(AssertionError("backward")))
    as_criterion("mean(F)").group_scores(calibration, "mean")
    assert needed_level(Formula.parse("l1(W) + mean(F * G)").operands) == "gradients"
    assert needed_level(Formula.parse("std(F)").operands) == "activations"
    assert needed_level(Formula.parse("gamma").operands) == "weights"
