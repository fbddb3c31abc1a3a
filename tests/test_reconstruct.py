"""Reconstruction (``pruning.reconstruct``): refitting the layers that read removed channels."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from prunevo.errors import ModelError, PrunevoError
from prunevo.pruning.groups import find_groups
from prunevo.pruning.masks import apply_masks
from prunevo.pruning.physical import prune_model
from prunevo.pruning.reconstruct import Reconstruction, consumers_of_removed, reconstruct
from prunevo.zoo.models import build_model


def _randomized(name: str, shape: tuple[int, int, int], seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = build_model(name, 10, shape)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.3, 0.3)
    return model.eval()


def _random_keep(groups, share: float = 0.5, seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    keep = []
    for group in groups:
        mask = torch.rand(group.size, generator=g) > share
        mask[0] = True  # never a whole group
        keep.append(mask)
    return keep


def _setting(name: str, shape: tuple[int, int, int], images: int):
    """A randomized network, ``images`` random inputs, its groups and a random selection of half the channels."""
    model = _randomized(name, shape)
    x = torch.randn(images, *shape)
    groups = find_groups(model, x[:1])
    return model, x, groups, _random_keep(groups)


def _relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out - ref).square().mean() / ref.var())


def test_keeping_every_channel_changes_nothing():
    model = _randomized("resnet20", (3, 16, 16))
    x = torch.randn(16, 3, 16, 16)
    groups = find_groups(model, x[:1])
    copy_ = copy.deepcopy(model)
    report = reconstruct(model, copy_, groups, [torch.ones(g.size, dtype=torch.bool) for g in groups], x)
    assert report.layers == []
    for (name, a), b in zip(model.state_dict().items(), copy_.state_dict().values()):
        assert torch.equal(a, b), name


class _Linear(nn.Module):
    """Two 1x1 convolutions with no nonlinearity between them: the second reads the first's channels."""

    def __init__(self):
        super().__init__()
        self.first = nn.Conv2d(2, 4, 1)
        self.second = nn.Conv2d(4, 3, 1)
        self.head = nn.Linear(3, 2)

    def forward(self, x):
        return self.head(self.second(self.first(x)).mean((2, 3)))


def test_a_removed_channel_that_is_a_combination_of_the_kept_ones_is_recovered_exactly():
    torch.manual_seed(0)
    model = _Linear().eval()
    with torch.no_grad():  # channel 3 = channel 0 + 2 * channel 1 - 0.5, exactly
        model.first.weight[3] = model.first.weight[0] + 2 * model.first.weight[1]
        model.first.bias[3] = model.first.bias[0] + 2 * model.first.bias[1] - 0.5
    x = torch.randn(32, 2, 5, 5)
    groups = find_groups(model, x[:1])
    (first,) = [g for g in groups if g.root == "first"]
    keep = [torch.tensor([True, True, True, False]) if g is first else torch.ones(g.size, dtype=torch.bool)
            for g in groups]
    masked = copy.deepcopy(model)
    apply_masks(masked, groups, keep)
    refitted = copy.deepcopy(model)
    report = reconstruct(model, refitted, groups, keep, x, spec=Reconstruction(ridge=0.0), batch_size=7)
    assert [f.layer for f in report.layers] == ["second"]
    fit = report.layers[0]
    assert (fit.inputs, fit.kept, fit.rows) == (4, 3, 32 * 25)
    assert fit.error_before > 0.01 and fit.error_after < 1e-9
    with torch.no_grad():
        ref, before, after = model(x), masked(x), refitted(x)
    assert _relative_error(before, ref) > 1e-3
    torch.testing.assert_close(after, ref, atol=1e-5, rtol=1e-5)
    # the removed column is zero and stays so: physical removal keeps what was refitted
    assert torch.all(refitted.second.weight[:, 3] == 0)


@pytest.mark.parametrize("name, shape", [("small-vgg", (1, 8, 8)), ("resnet20", (3, 16, 16)),
                                         ("small-resnet", (1, 8, 8))])
def test_reconstruction_brings_the_output_back_and_masked_equals_pruned(name, shape):
    model = _randomized(name, shape)
    x = torch.randn(64, *shape)
    groups = find_groups(model, x[:1])
    keep = _random_keep(groups)
    masked = copy.deepcopy(model)
    apply_masks(masked, groups, keep)
    refitted = copy.deepcopy(model)
    report = reconstruct(model, refitted, groups, keep, x, batch_size=16)
    assert report.layers and all(f.error_after < f.error_before for f in report.layers)
    with torch.no_grad():
        ref, before, after = model(x), masked(x), refitted(x)
    assert _relative_error(after, ref) < 0.1 * _relative_error(before, ref)
    pruned = prune_model(copy.deepcopy(refitted), groups, keep, x[:1]).eval()
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), after, atol=1e-5, rtol=1e-4)
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in model.parameters())


def test_streamed_equals_whole_batch():
    model, x, groups, keep = _setting("resnet20", (3, 16, 16), 40)
    streamed, whole = copy.deepcopy(model), copy.deepcopy(model)
    a = reconstruct(model, streamed, groups, keep, x, batch_size=6)
    b = reconstruct(model, whole, groups, keep, x, batch_size=len(x))
    assert [f.layer for f in a.layers] == [f.layer for f in b.layers]
    for fa, fb in zip(a.layers, b.layers):
        assert fa.rows == fb.rows
        # float32 forward passes over chunks of another size round differently: within rounding, not bit for bit
        assert fa.error_after == pytest.approx(fb.error_after, rel=1e-4, abs=1e-9)
    with torch.no_grad():
        torch.testing.assert_close(streamed(x), whole(x), atol=1e-5, rtol=1e-5)


def test_a_residual_group_refits_every_layer_that_reads_the_sum():
    model = _randomized("resnet20", (3, 16, 16))
    x = torch.randn(48, 3, 16, 16)
    groups = find_groups(model, x[:1])
    residual = max(groups, key=lambda g: len(g.members))  # the add joins several producers
    assert len(residual.members) > 1
    keep = [torch.arange(g.size) % 2 == 0 if g is residual else torch.ones(g.size, dtype=torch.bool) for g in groups]
    consumers = {c.name for c in consumers_of_removed(model, groups, keep)}
    assert consumers == {c.layer for c in residual.consumers}
    refitted = copy.deepcopy(model)
    report = reconstruct(model, refitted, groups, keep, x, batch_size=16)
    assert {f.layer for f in report.layers} == consumers
    pruned = prune_model(copy.deepcopy(refitted), groups, keep, x[:1]).eval()
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), refitted(x), atol=1e-5, rtol=1e-4)


class _Grouped(nn.Module):
    """A plain convolution read by a grouped one (2 slices), then a depthwise and a pointwise convolution."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.grouped = nn.Conv2d(8, 8, 3, padding=1, groups=2, padding_mode="reflect")
        self.bn = nn.BatchNorm2d(8)
        self.depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
        self.pointwise = nn.Conv2d(8, 6, 1)
        self.head = nn.Linear(6, 4)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = torch.relu(self.bn(self.grouped(x)))
        x = self.pointwise(torch.relu(self.depthwise(x)))
        return self.head(x.mean((2, 3)))


def test_grouped_and_depthwise_consumers():
    torch.manual_seed(0)
    model = _Grouped().eval()
    x = torch.randn(64, 3, 8, 8)
    groups = find_groups(model, x[:1])
    by_root = {g.root: g for g in groups}
    keep = [torch.ones(g.size, dtype=torch.bool) for g in groups]
    stem = next(i for i, g in enumerate(groups) if "stem" in {m.layer for m in g.members})
    depth = next(i for i, g in enumerate(groups) if "grouped" in {m.layer for m in g.members})
    keep[stem] = torch.tensor([True, False, True, True] * 2)  # the same position of each slice (ties)
    keep[depth] = torch.tensor([True, True, False, True, True, False, True, True])
    masked = copy.deepcopy(model)
    apply_masks(masked, groups, keep)
    refitted = copy.deepcopy(model)
    report = reconstruct(model, refitted, groups, keep, x, batch_size=16)
    fitted = {f.layer: f for f in report.layers}
    # the grouped convolution is refitted slice by slice; the depthwise one loses its removed inputs' outputs
    # too (nothing to refit); the pointwise one reads the removed channels through it
    assert set(fitted) == {"grouped", "pointwise"}, by_root
    assert fitted["grouped"].kept == 6 and fitted["pointwise"].kept == 6
    with torch.no_grad():
        ref, before, after = model(x), masked(x), refitted(x)
    assert _relative_error(after, ref) < _relative_error(before, ref)
    pruned = prune_model(copy.deepcopy(refitted), groups, keep, x[:1]).eval()
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), after, atol=1e-5, rtol=1e-4)


class _StandardizedConv(nn.Conv2d):
    """timm's StdConv2d in short: the weight is standardized in the forward pass."""

    def forward(self, x):
        mean, std = self.weight.mean((1, 2, 3), keepdim=True), self.weight.std((1, 2, 3), keepdim=True)
        w = (self.weight - mean) / (std + 1e-5)
        return nn.functional.conv2d(x, w, self.bias, self.stride, self.padding)


def test_a_layer_whose_forward_transforms_its_weight_is_refused_by_name():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), _StandardizedConv(8, 8, 3, padding=1),
                          nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2)).eval()
    x = torch.randn(8, 3, 8, 8)
    groups = find_groups(model, x[:1])
    keep = [torch.arange(g.size) % 2 == 0 if g.root == "0" else torch.ones(g.size, dtype=torch.bool) for g in groups]
    with pytest.raises(ModelError, match=r"layer '2' reads removed channels and is a _StandardizedConv"):
        reconstruct(model, copy.deepcopy(model), groups, keep, x)


def test_positions_sample_the_same_places_in_every_chunk():
    model, x, groups, keep = _setting("resnet20", (3, 16, 16), 24)
    spec = Reconstruction(positions=10)
    a, b = copy.deepcopy(model), copy.deepcopy(model)
    ra = reconstruct(model, a, groups, keep, x, spec=spec, batch_size=5)
    rb = reconstruct(model, b, groups, keep, x, spec=spec, batch_size=len(x))
    assert all(f.rows <= 24 * 10 for f in ra.layers) and any(f.rows == 240 for f in ra.layers)
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x), atol=1e-5, rtol=1e-5)
    assert ra.error_after < ra.error_before


@pytest.mark.parametrize("kwargs, match", [({"ridge": -1.0}, "ridge"), ({"positions": 0}, "positions")])
def test_bad_settings_are_refused(kwargs, match):
    with pytest.raises(PrunevoError, match=match):
        Reconstruction(**kwargs)


# --- criteria for the regime: loo and obs ------------------------------------------------------------------------
def test_loo_is_each_rows_ridge_least_squares_error_from_the_other_rows():
    import numpy as np

    from prunevo.primitives.grammar import LOO_RIDGE, _loo

    torch.manual_seed(0)
    x = torch.randn(6, 4, 5, dtype=torch.float64)
    rows = x.reshape(6, -1).numpy()
    lam = LOO_RIDGE * np.trace(rows @ rows.T) / 6
    expected = []
    for c in range(6):
        others = np.delete(rows, c, 0)
        coef = np.linalg.solve(others @ others.T + lam * np.eye(5), others @ rows[c])
        residual = rows[c] - coef @ others
        # the Schur complement of the ridge Gram matrix: the ridge objective's minimum plus the ridge
        expected.append((residual @ residual + lam * coef @ coef + lam) / rows.shape[1])
    np.testing.assert_allclose(_loo(x).numpy(), expected, rtol=1e-9)
    # a channel the others predict exactly costs nothing to remove but the ridge
    x[5] = x[0] - 2 * x[3]
    scores = _loo(x)
    assert scores[5] < 0.02 * scores.max()


class _OneByOne(nn.Module):
    """A convolution read by a 1x1 convolution without bias: the reader's input is the channels' feature maps."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.reader = nn.Conv2d(6, 4, 1, bias=False)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        return self.head(self.reader(torch.relu(self.bn(self.conv(x)))).mean((2, 3)))


def test_obs_is_the_reader_error_a_refit_cannot_remove():
    """``obs`` = ||Wn_c||^2 / [(XᵀX)^-1]_cc (ZipLM's structured OBS): the least-squares error that removing input c
    of the reader and refitting the rest leaves, per position; checked against a direct computation and against
    ``reconstruct`` removing each channel in turn."""
    from prunevo.pruning.calibration import Calibration
    from prunevo.pruning.criteria import as_criterion, score_groups

    torch.manual_seed(0)
    model = _OneByOne().eval()
    randomize = model.bn
    randomize.running_var.uniform_(0.5, 2)
    randomize.bias.data.uniform_(0.0, 0.5)
    x, y = torch.randn(32, 3, 6, 6), torch.arange(32) % 3
    groups = find_groups(model, x[:1])
    index = next(i for i, g in enumerate(groups) if g.root == "conv")
    calibration = Calibration(model, groups, x, y, 3)
    obs = score_groups(as_criterion("obs"), calibration, "mean")[index].double()
    with torch.no_grad():
        maps = torch.relu(model.bn(model.conv(x)))  # what the reader reads
    features = maps.transpose(0, 1).reshape(6, -1).double()  # [C, N·S]
    gram = features @ features.T
    from prunevo.primitives.grammar import LOO_RIDGE

    inverse = torch.linalg.inv(gram + LOO_RIDGE * torch.trace(gram) / 6 * torch.eye(6, dtype=torch.float64))
    weights = model.reader.weight.detach().double()[:, :, 0, 0]  # [4, 6]
    direct = weights.square().sum(0) / torch.diagonal(inverse) / features.shape[1]
    torch.testing.assert_close(obs, direct, rtol=1e-4, atol=1e-9)
    # the increase of the reader's squared error when channel c goes and the others are refitted
    increases = []
    for c in range(6):
        keep = [torch.ones(g.size, dtype=torch.bool) for g in groups]
        keep[index][c] = False
        report = reconstruct(model, copy.deepcopy(model), groups, keep, x, spec=Reconstruction(ridge=0.0))
        (fit,) = [f for f in report.layers if f.layer == "reader"]
        increases.append(fit.error_after)
    increases = torch.tensor(increases, dtype=torch.float64)
    # the same order (the ridge of loo is small): the channel obs ranks lowest is the cheapest to remove
    assert torch.argsort(increases).tolist() == torch.argsort(direct).tolist()
    assert torch.corrcoef(torch.stack([increases, direct]))[0, 1] > 0.99


def test_loo_and_obs_are_named_baselines_with_their_sources():
    from prunevo.primitives.classic import CLASSIC_NOTES, CLASSIC_TEXT
    from prunevo.pruning.criteria import BASELINE_NAMES

    assert CLASSIC_TEXT["loo"] == "loo(F)" and CLASSIC_TEXT["obs"] == "square(l2(Wn)) * loo(F)"
    assert {"loo", "obs"} <= set(BASELINE_NAMES)
    assert "ZipLM" in CLASSIC_NOTES["obs"] and "ThiNet" in CLASSIC_NOTES["loo"]


# --- where it is wired in ------------------------------------------------------------------------------------------
def test_a_session_with_reconstruction_refits_reports_and_stays_equal_to_the_masked_network():
    from tests.helpers import session_for

    plain = session_for("resnet20", target_macs=0.4)
    session = plain.with_settings(reconstruct=True)
    assert session.config.regime == "one-shot + reconstruction"
    _, without, _ = plain.run("l1", seed=0)
    model, result, _ = session.run("l1", seed=0)  # session.prune checks it against the masked network
    assert without.reconstruction is None
    summary = result.reconstruction
    assert summary["layers"] > 0 and summary["error_after"] < summary["error_before"]
    assert "reconstruct" in result.wall_s
    assert result.kept == without.kept  # the same channels: only the readers' weights change
    assert result.after.macs == without.after.macs


def test_reconstruction_needs_a_strategy_that_removes_channels():
    from prunevo import Setup, TransferConfig

    with pytest.raises(PrunevoError, match="reconstruct.*layer strategy"):
        TransferConfig(setup=Setup(model="small-vgg", dataset="digits"), strategy="layer", reconstruct=True)


def test_the_task_option_is_a_regime_of_its_own_and_keeps_old_identities():
    from prunevo.fitness.task_spec import TaskOverrides, parse_task

    plain = parse_task("small-vgg@digits:epochs=0")
    task = parse_task("small-vgg@digits:epochs=0,reconstruct=1")
    assert task.reconstruct and task.regime == "one-shot + reconstruction" and plain.regime == "one-shot"
    assert parse_task("small-vgg@digits:epochs=0,reconstruct=0").identity() == plain.identity()
    assert task.identity() != plain.identity()
    assert "refitted" in task.describe() and "reconstruction" in task.roles(type("D", (), {"roles": {}})())
    assert parse_task("small-vgg@digits:epochs=0", TaskOverrides(reconstruct=True)).reconstruct
    with pytest.raises(PrunevoError, match="reconstruct='2'.*allowed: 0, 1"):
        parse_task("small-vgg@digits:reconstruct=2")


def test_fitness_with_reconstruction_scores_and_does_not_depend_on_the_mode(prepared_tasks):
    from dataclasses import replace

    from prunevo.fitness.evaluator import Evaluator
    from prunevo.fitness.execution import Execution
    from prunevo.pruning.criteria import as_criterion

    vgg = prepared_tasks[0]
    oneshot = replace(vgg.task, name="vgg one-shot", finetune=replace(vgg.task.finetune, epochs=0.0))
    tasks = [replace(vgg, task=oneshot), replace(vgg, task=replace(oneshot, name="vgg refitted", reconstruct=True))]
    criteria = [as_criterion(c) for c in ("l1", "obs")]
    results = {}
    for mode in ("loop", "off"):
        with Evaluator(tasks, execution=Execution(batching=mode)) as evaluator:
            results[mode] = [r.accuracy for r in evaluator.evaluate(criteria)]
    assert results["loop"] == results["off"]
    for accuracy in results["loop"]:
        plain, refitted = accuracy[tasks[0].task.name], accuracy[tasks[1].task.name]
        assert 0 < plain <= 1 and 0 < refitted <= 1


def test_a_strided_dilated_conv1d_reader_is_refitted():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(2, 6, 3, padding=1), nn.ReLU(), nn.Conv1d(6, 4, 3, padding=2, dilation=2, stride=2),
                          nn.ReLU(), nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(4, 2)).eval()
    x = torch.randn(32, 2, 20)
    groups = find_groups(model, x[:1])
    keep = [torch.tensor([True, False, True, True, False, True]) if g.root == "0"
            else torch.ones(g.size, dtype=torch.bool) for g in groups]
    masked = copy.deepcopy(model)
    apply_masks(masked, groups, keep)
    refitted = copy.deepcopy(model)
    report = reconstruct(model, refitted, groups, keep, x, batch_size=5)
    assert [f.layer for f in report.layers] == ["2"] and report.layers[0].rows == 32 * 10
    assert report.layers[0].error_after < report.layers[0].error_before
    pruned = prune_model(copy.deepcopy(refitted), groups, keep, x[:1]).eval()
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), refitted(x), atol=1e-5, rtol=1e-4)


def test_the_command_line_sets_reconstruction_and_refuses_it_in_one_line(capsys):
    from prunevo.cli import main, parse_config

    config = parse_config(["apply", "--formula", "obs", "--model", "small-vgg", "--reconstruct",
                           "--reconstruct-ridge", "0.01", "--reconstruct-positions", "20"])
    assert config.reconstruct and config.reconstruction == Reconstruction(ridge=0.01, positions=20)
    assert config.regime == "one-shot + reconstruction" or config.finetune.epochs > 0
    assert not parse_config(["compare", "--model", "small-vgg"]).reconstruct
    fitness = parse_config(["score", "l1", "--tasks", "small-vgg@digits:epochs=0", "--reconstruct"])
    assert fitness.overrides.reconstruct and fitness.regime == "one-shot + reconstruction"
    for argv, message in [
        (["--strategy", "layer"], "--reconstruct refits the layers that read removed channels, which the layer "
                                  "strategy does not remove; allowed: --strategy channel or iterative"),
        (["--reconstruct-ridge", "-1"], "--reconstruct-ridge must be >= 0, got -1.0"),
    ]:
        code = main(["apply", "--formula", "l1", "--model", "small-vgg", "--reconstruct", *argv, "-o", "unused"])
        err = capsys.readouterr().err.strip()
        assert code == 2 and err == f"prunevo: error: {message}", err


def test_targets_kept_from_one_pass_equal_targets_recomputed_per_layer(monkeypatch):
    import prunevo.pruning.reconstruct as module

    model, x, groups, keep = _setting("small-resnet", (1, 8, 8), 30)
    kept, recomputed = copy.deepcopy(model), copy.deepcopy(model)
    a = reconstruct(model, kept, groups, keep, x, batch_size=7)
    monkeypatch.setattr(module, "TARGETS_MEMORY", 0)  # too little to keep them: each layer's pass recomputes them
    b = reconstruct(model, recomputed, groups, keep, x, batch_size=7)
    assert [(f.layer, f.rows) for f in a.layers] == [(f.layer, f.rows) for f in b.layers]
    for (name, p), q in zip(kept.state_dict().items(), recomputed.state_dict().values()):
        assert torch.equal(p, q), name
