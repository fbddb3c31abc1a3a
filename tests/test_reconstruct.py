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
    model = _randomized("resnet20", (3, 16, 16))
    x = torch.randn(40, 3, 16, 16)
    groups = find_groups(model, x[:1])
    keep = _random_keep(groups)
    streamed, whole = copy.deepcopy(model), copy.deepcopy(model)
    a = reconstruct(model, streamed, groups, keep, x, batch_size=6)
    b = reconstruct(model, whole, groups, keep, x, batch_size=None)
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
        w = (self.weight - self.weight.mean((1, 2, 3), keepdim=True)) / (self.weight.std((1, 2, 3), keepdim=True) + 1e-5)
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
    model = _randomized("resnet20", (3, 16, 16))
    x = torch.randn(24, 3, 16, 16)
    groups = find_groups(model, x[:1])
    keep = _random_keep(groups)
    spec = Reconstruction(positions=10)
    a, b = copy.deepcopy(model), copy.deepcopy(model)
    ra = reconstruct(model, a, groups, keep, x, spec=spec, batch_size=5)
    rb = reconstruct(model, b, groups, keep, x, spec=spec, batch_size=None)
    assert all(f.rows <= 24 * 10 for f in ra.layers) and any(f.rows == 240 for f in ra.layers)
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x), atol=1e-5, rtol=1e-5)
    assert ra.error_after < ra.error_before


@pytest.mark.parametrize("kwargs, match", [({"ridge": -1.0}, "ridge"), ({"positions": 0}, "positions")])
def test_bad_settings_are_refused(kwargs, match):
    with pytest.raises(PrunevoError, match=match):
        Reconstruction(**kwargs)
