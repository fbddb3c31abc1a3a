"""Transfer on torchvision models: every classic criterion and an evolved-style formula meet the MACs
target within 3%, the pruned model runs and computes what the masked model computes, and it saves and
reloads; group reductions and Domino variants change selections exactly where they should."""
from __future__ import annotations

import pytest
import torch
import torch_pruning as tp

from prunevo.errors import ModelError
from prunevo.primitives.classic import CLASSIC_TEXT
from prunevo.pruning.criteria import as_criterion
from prunevo.pruning.groups import find_groups
from prunevo.pruning.importance import FormulaImportance
from prunevo.pruning.ranking import PruneSpec, select
from prunevo.transfer.apply import load_pruned, save_pruned
from prunevo.transfer.results import PruneRecord
from tests.helpers import session_for

EVOLVED = "gamma + mean(abs(Wn)) * lnorm(l1(W)) / (std(F) + 0.05)"
MODELS = ["resnet18", "resnet50", "vgg11_bn", "mobilenet_v2", "densenet121"]


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_every_criterion_meets_the_macs_target_and_the_model_reloads(model, tmp_path):
    session = session_for(model)
    x = session.calibration(0).x
    # every classic on the two cheap nets; on the deep ones a weight, a gradient and an evolved criterion (time)
    names = [*CLASSIC_TEXT, EVOLVED] if model in ("resnet18", "vgg11_bn") else ["l1", "taylor", EVOLVED]
    for name in names:
        chosen = session.select(as_criterion(name), 0)
        keep, fraction = chosen.keep, chosen.macs_fraction
        assert abs(fraction - 0.5) <= 0.03 * 0.5, (model, name, fraction)
        pruned = session.prune(keep, x[:4], chosen.pruned)  # raises unless masked == physically pruned
        with torch.no_grad():
            assert pruned(x[:2]).shape == (2, 10)
        assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in session.model.parameters())
    record = PruneRecord([{g.root: k.nonzero().flatten().tolist() for g, k in zip(session.groups, keep)}])
    files = save_pruned(tmp_path, pruned, session, record, export=model in ("resnet18", "mobilenet_v2"))
    assert {"pruned_weights.pt", "pruned_model.pt"} <= set(files)
    reloaded = load_pruned(tmp_path / "pruned_weights.pt")
    with torch.no_grad():
        torch.testing.assert_close(reloaded(x[:2]), pruned(x[:2]))
    if model in ("resnet18", "mobilenet_v2"):  # torch.export is slow on the deep nets; one plain, one depthwise
        assert "pruned_model.pt2" in files
        exported = torch.export.load(str(tmp_path / "pruned_model.pt2")).module()
        torch.testing.assert_close(exported(x[:3]), pruned(x[:3]), rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_global_allocation_meets_the_macs_target():
    session = session_for("resnet18", allocation="global", max_layer_ratio=0.8)
    chosen = session.select(as_criterion("l2"), 0)
    keep, fraction = chosen.keep, chosen.macs_fraction
    assert abs(fraction - 0.5) <= 0.015
    kept = [int(k.sum()) / len(k) for k in keep]
    assert max(kept) - min(kept) > 0.05  # global ranking prunes layers unevenly


@pytest.mark.slow
def test_channel_ratio_instead_of_macs():
    session = session_for("resnet18", target_macs=None, channel_ratio=0.25)
    chosen = session.select(as_criterion("l1"), 0)
    keep = chosen.keep
    assert chosen.pruned is None and chosen.ratio == 0.25
    removed = sum(int((~k).sum()) for k in keep)
    assert removed == round(0.25 * sum(len(k) for k in keep))


@pytest.mark.slow
def test_group_reductions_and_domino_change_selections_where_they_should():
    session = session_for("resnet18", target_macs=None, channel_ratio=0.5)
    calibration = session.calibration(0)
    stats = calibration.stats
    crit = as_criterion("l1")
    multi = [g for g, members in enumerate(stats) if len(members) > 1]
    single = [g for g, members in enumerate(stats) if len(members) == 1]
    assert multi and single  # resnet18 has residual groups and plain ones
    keep = {r: select(crit.group_scores(calibration, r), PruneSpec(0.5, group_reduction=r)) for r in ("mean", "sum", "max")}
    for g in single:  # one member: every reduction is the member's score
        assert torch.equal(keep["mean"][g], keep["max"][g]) and torch.equal(keep["mean"][g], keep["sum"][g])
    for g in multi:  # per group, sum = members x mean: the same ranking under layer-wise ranking
        assert torch.equal(keep["mean"][g], keep["sum"][g])
    assert any(not torch.equal(keep["mean"][g], keep["max"][g]) for g in multi)
    # global ranking across groups with different member counts: sum and mean disagree
    glob = {r: select(crit.group_scores(calibration, r), PruneSpec(0.5, "global", group_reduction=r))
            for r in ("mean", "sum")}
    assert any(not torch.equal(a, b) for a, b in zip(glob["mean"], glob["sum"]))
    # Domino-io adds consumer input-channel saliencies
    io = session_for("resnet18", target_macs=None, channel_ratio=0.5, domino="io")
    io_stats = io.calibration(0).stats
    assert all(len(a) >= len(b) for a, b in zip(io_stats, stats)) and sum(map(len, io_stats)) > sum(map(len, stats))
    keep_io = select(crit.group_scores(io.calibration(0), "mean"), PruneSpec(0.5))
    assert any(not torch.equal(a, b) for a, b in zip(keep_io, keep["mean"]))


@pytest.mark.slow
def test_formula_importance_plugs_into_torch_pruning_metapruner():
    session = session_for("resnet18", target_macs=None, channel_ratio=0.5)
    calibration = session.calibration(0)
    model = session.model
    imp = FormulaImportance("l1", model, calibration.x, calibration.y, 10)
    fc = model.fc
    expected = select(as_criterion("l1").group_scores(calibration, "mean"), PruneSpec(0.5))
    pruner = tp.pruner.MetaPruner(model, calibration.x[:1], importance=imp, pruning_ratio=0.5, ignored_layers=[fc])
    pruner.step()
    modules = dict(model.named_modules())
    for group, keep in zip(session.groups, expected):
        assert modules[group.root].out_channels == int(keep.sum())


def test_a_model_with_channel_shuffle_is_refused_naming_the_layer():
    import torchvision

    model = torchvision.models.shufflenet_v2_x0_5(num_classes=10).eval()
    with pytest.raises(ModelError, match=r"after layer '.+'"):
        find_groups(model, torch.zeros(1, 3, 32, 32))
