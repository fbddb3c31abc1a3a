"""Streamed statistics: feature maps and gradients reduced chunk by chunk give the scores of the whole-tensor
evaluation (within floating-point rounding), for every feature-map reduction of the grammar, on zoo nets."""
import pytest
import torch

from prunevo.training import Accelerator
from prunevo.transfer.setup import Setup
from prunevo.primitives import Formula
from prunevo.primitives.accumulators import Accumulator, boundaries, streamed
from prunevo.primitives.grammar import OPS, Maps
from prunevo.primitives.tree import op_of
from prunevo.pruning.calibration import Calibration
from prunevo.pruning.criteria import as_criterion
from prunevo.pruning.groups import find_groups
from prunevo.zoo.models import build_model

# every feature-map boundary (reductions, cmean, cvar, rmean, rvar, nmean), smean, mul(F, G), class statistics
# and mean maps reduced further, class arithmetic with scores, and the classic criteria that read F or G
FORMULAS = [
    "mean(F)", "std(G)", "var(F * G)", "l1(G)", "l2(square(F))", "max(F * G)", "min(G)", "-sparsity(F)",
    "fpgm(F)", "fpgm(smean(G))", "mean(smean(F) * G)", "var(cmean(F)) / (mean(cvar(F)) + 0.05)",
    "max(abs(cmean(G)))", "fpgm(cvar(F * G))", "abs(mean(F * G))", "l1(W) / (std(F) + 0.05)",
    "gamma * l2(smean(abs(G))) + sparsity(square(F)) - min(cmean(F))",
    "l1(cvar(F) / (rvar(F) + 0.05) - rmean(G * F))", "std(nmean(F)) * max(square(nmean(G)))",
    "fpgm(nmean(F)) + min(rmean(F) * l2(W) - cmean(F))", "wanda", "gecco22",
]


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.allclose(a, b, rtol=1e-4, atol=1e-6 * max(1.0, float(b.abs().max())))


@pytest.mark.parametrize("name,shape", [("small-vgg", (1, 8, 8)), ("small-resnet", (1, 8, 8)),
                                        ("lenet5", (1, 28, 28)),
                                        pytest.param("resnet18", (3, 16, 16), marks=pytest.mark.slow),
                                        pytest.param("mobilenet_v2", (3, 16, 16), marks=pytest.mark.slow)])
def test_streamed_scores_equal_the_whole_tensor_path(name, shape):
    torch.manual_seed(0)
    model = build_model(name, 10, shape).eval()
    x, y = torch.randn(23, *shape), torch.arange(23) % 10
    groups = find_groups(model, x[:1])
    for consumers in (False, True):
        whole = Calibration(model, groups, x, y, 10, consumers=consumers)
        streamed = Calibration(model, groups, x, y, 10, consumers=consumers, batch_size=5)  # 5+5+5+5+3
        for text in FORMULAS:
            criterion = as_criterion(text)
            expected = criterion.group_scores(whole, "mean", strict=False)
            got = criterion.group_scores(streamed, "mean", strict=False)
            for g, (a, b) in enumerate(zip(got, expected)):
                assert _close(a, b), (name, consumers, text, g, (a - b).abs().max())
            layers = criterion.layer_scores(streamed)
            for layer, value in criterion.layer_scores(whole).items():
                assert _close(layers[layer], value), (name, text, layer)


def test_streamed_statistics_hold_no_samples_and_refuse_direct_reads():
    model = build_model("small-resnet", 10, (1, 8, 8)).eval()
    x, y = torch.randn(30, 1, 8, 8), torch.arange(30) % 10
    calibration = Calibration(model, find_groups(model, x[:1]), x, y, 10, batch_size=8)
    stats = calibration.stats_for_formula(Formula.parse("abs(mean(F * G))"))
    assert all(s.streamed and s.F.shape[1] == 0 and s.G.shape[1] == 0 for members in stats for s in members)
    with pytest.raises(RuntimeError, match="streamed"):
        Formula.parse("mean(F) + max(G)").score(stats[0][0])  # never accumulated for this calibration


def test_reductions_are_computed_once_per_calibration(monkeypatch):
    import prunevo.pruning.calibration as calibration_module

    model = build_model("small-vgg", 10, (1, 8, 8)).eval()
    x, y = torch.randn(20, 1, 8, 8), torch.arange(20) % 10
    calibration = Calibration(model, find_groups(model, x[:1]), x, y, 10, batch_size=6)
    passes = []
    real = calibration_module.stream_reductions
    monkeypatch.setattr(calibration_module, "stream_reductions",
                        lambda *a, **k: passes.append([str(n) for n in a[5]]) or real(*a, **k))
    as_criterion("abs(mean(F * G))").group_scores(calibration, "mean")
    as_criterion("abs(mean(F * G)) + mean(F)").group_scores(calibration, "mean")  # only mean(F) is new
    as_criterion("l1(W) * abs(mean(F * G))").group_scores(calibration, "mean")  # nothing new
    assert len(passes) == 2 and len(passes[1]) == 1


@pytest.mark.parametrize("name", sorted(streamed()))
def test_each_accumulator_equals_its_operator_on_uneven_chunks(name):
    torch.manual_seed(1)
    values = torch.randn(6, 17, 9).relu()  # zeros included (sparsity); 17 samples in chunks of 4
    labels = torch.arange(17) % 3
    onehot = torch.nn.functional.one_hot(labels, 3).float()
    (op,) = [o for o in OPS if o.name == name and o.args == (Maps,)]
    expected = op.fn(values, onehot) if op.needs_labels else op.fn(values)
    acc = Accumulator(name, 3)
    for start in range(0, 17, 4):
        acc.update(values[:, start:start + 4], onehot[start:start + 4])
    assert _close(acc.result(), expected), (name, acc.result(), expected)


def test_every_feature_map_boundary_of_the_grammar_streams():
    exits = {op.name for op in OPS if Maps in op.args and op.ret is not Maps}
    assert exits <= streamed()
    tree = Formula.parse("mean(F) + var(cmean(F * G)) * mean(F)").tree
    found = boundaries(tree)
    assert [op_of(n).name for n in found] == ["mean", "cmean"]  # distinct, outermost feature-map exits


def test_transfer_streams_by_default_with_a_chunk_for_the_device():
    from prunevo import TransferConfig

    config = TransferConfig(setup=Setup(model="lenet5"), accelerator=Accelerator("cpu"))
    assert config.calibration_chunk == 8 and config.to_dict()["calibration_batch"] == 8
    assert TransferConfig(setup=Setup(model="lenet5"), accelerator=Accelerator("cpu"),
                          calibration_batch=3).to_dict()["calibration_batch"] == 3


def test_formula_constants_follow_the_statistics_device():
    """A constant lives where the statistics do (CUDA in a GPU session): the meta device stands in for it."""
    from prunevo.primitives.operands import LayerStats

    meta = {"device": "meta"}
    stats = LayerStats(W=torch.empty(4, 9, **meta), Wn=torch.empty(4, 6, **meta), F=torch.empty(4, 0, 1, **meta),
                       G=torch.empty(4, 0, 1, **meta), gamma=torch.empty(4, **meta), beta=torch.empty(4, **meta),
                       labels=torch.zeros(0, dtype=torch.long, **meta), num_classes=10)
    assert Formula.parse("0.05 + std(Wn)").score(stats).device.type == "meta"
