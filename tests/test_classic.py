"""Every classic criterion written as a formula equals a direct implementation on the network itself."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import numpy as np

from prunevo.primitives import classic_formula, classic_formulas
from prunevo.pruning.groups import find_groups
from prunevo.pruning.statistics import gather_stats
from prunevo.zoo.nets import SmallVGG


def _setup():
    torch.manual_seed(0)
    model = SmallVGG(1, 10, widths=(6, 8, 10, 12)).eval()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.weight.data.uniform_(-1, 1)
            m.bias.data.uniform_(-0.5, 0.5)
    x, y = torch.randn(30, 1, 8, 8), torch.arange(30) % 3
    groups = find_groups(model, x[:1])
    stats = gather_stats(model, groups, x, y, 3)
    return model, x, y, groups, stats


def _direct_activations(model, x, y):
    """Activations (ReLU of BN output) of the second conv layer and the loss gradient w.r.t. the BN output."""
    feats = model.features
    h = feats[2](feats[1](feats[0](x)))
    z = feats[4](feats[3](h))
    z.retain_grad()
    out = feats[5](z)
    rest = feats[6:](out)
    loss = nn.functional.cross_entropy(model.classifier(torch.flatten(rest, 1)), y)
    loss.backward()
    return torch.relu(z).detach(), z.grad.detach()


@pytest.fixture(scope="module")
def direct():
    """The layer features.3's statistics, and each classic criterion computed directly on the network."""
    model, x, y, groups, stats = _setup()
    conv, bn = model.features[3], model.features[4]
    layer = next(s[0] for g, s in zip(groups, stats) if g.root == "features.3")
    act, grad = _direct_activations(model, x, y)
    w = conv.weight.detach()
    direct = {
        "l1": w.abs().sum((1, 2, 3)),
        "l2": w.flatten(1).norm(dim=1),
        "bn": bn.weight.detach().abs(),
        "taylor": (act * grad).mean((0, 2, 3)).abs(),
        "apoz": -(act <= 1e-6).float().mean((0, 2, 3)),
        "activation": act.mean((0, 2, 3)),
        "fpgm": torch.stack([sum((w[i] - w[j]).norm() for j in range(len(w))) for i in range(len(w))]),
    }
    per_class = [act[y == k] for k in range(3)]
    means = torch.stack([a.mean((0, 2, 3)) for a in per_class], 1)
    variances = torch.stack([a.transpose(0, 1).reshape(a.shape[1], -1).var(1, unbiased=False) for a in per_class], 1)
    direct["snr"] = means.var(1, unbiased=False) / (variances.mean(1) + 0.05)
    # Wanda: the weights that read the channel (the next conv's input slice) times the feature map's norm
    nxt = model.features[7].weight.detach()
    direct["wanda"] = nxt.abs().sum((0, 2, 3)) * act.transpose(0, 1).reshape(act.shape[1], -1).norm(dim=1)
    # leave-one-out: each channel's ridge least-squares error from the others' maps (the Schur complement), per
    # position; structured OBS: the squared weights that read it times that error (ZipLM)
    rows = act.transpose(0, 1).reshape(act.shape[1], -1).double()
    gram = rows @ rows.T
    ridge = 1e-3 * torch.trace(gram) / len(gram)
    loo = 1 / torch.diagonal(torch.linalg.inv(gram + ridge * torch.eye(len(gram), dtype=gram.dtype))) / rows.shape[1]
    direct["loo"] = loo.float()
    direct["obs"] = (nxt.double().square().sum((0, 2, 3)) * loo).float()
    return layer, direct


CLASSICS = ["l1", "l2", "bn", "taylor", "apoz", "activation", "fpgm", "snr", "wanda", "loo", "obs"]


def test_every_classic_but_gecco22_has_a_direct_implementation(direct):
    # gecco22 has its own test, against the seed paper's code
    assert sorted(direct[1]) == sorted(CLASSICS) == sorted(set(classic_formulas()) - {"gecco22"})


@pytest.mark.parametrize("name", CLASSICS)
def test_classic_formulas_match_direct_implementations(direct, name):
    layer, expected = direct
    got = classic_formula(name).score(layer)
    assert torch.allclose(got, expected[name], rtol=1e-4, atol=1e-6)


def test_next_layer_weights_are_the_consumer_input_slices():
    model, x, y, groups, stats = _setup()
    layer = next(s[0] for g, s in zip(groups, stats) if g.root == "features.3")
    nxt = model.features[7].weight.detach()  # reads features.3's channels
    expected = nxt.transpose(0, 1).reshape(nxt.shape[1], -1)
    assert torch.equal(layer.Wn, expected)


def test_layer_without_batchnorm_gets_unit_gamma():
    from prunevo.zoo.nets import LeNet5

    model = LeNet5(1, 10, 8).eval()
    x, y = torch.randn(20, 1, 8, 8), torch.arange(20) % 10
    groups = find_groups(model, x[:1])
    stats = gather_stats(model, groups, x, y, 10)
    for members in stats:
        assert torch.equal(members[0].gamma, torch.ones_like(members[0].gamma))


def _ga_func2(x: np.ndarray, y: np.ndarray) -> float:
    """The seed paper's GA_Func2 for one channel, written from the authors' published code
    (Transfer_Pruning/Util/GA_Discriminant_Function.py): ``x`` [N, D] feature maps, ``y`` [N] labels."""
    mean_map = x.mean(0)
    score = 0.0
    for k in np.unique(y):
        p, q = x[y == k], x[y != k]  # this class, the rest
        p_var, q_var, q_mean = p.var(), q.var(), q.mean()
        first = p_var / (q_var + 0.05) + q_var / (p_var + 0.05)
        second = np.square(np.std(mean_map) * q_var * mean_map + p_var - q_mean) / (q_var + p_var + 0.05)
        score += np.sum(first + second)
    return float(score)


def test_gecco22_is_the_seed_papers_function_divided_by_the_positions():
    model, x, y, groups, stats = _setup()
    act, _ = _direct_activations(model, x, y)
    layer = next(s[0] for g, s in zip(groups, stats) if g.root == "features.3")
    positions = act.shape[2] * act.shape[3]
    expected = np.array([_ga_func2(act[:, c].reshape(len(x), -1).double().numpy(), y.numpy())
                         for c in range(act.shape[1])])
    got = classic_formula("gecco22").score(layer).double().numpy() * positions
    np.testing.assert_allclose(got, expected, rtol=1e-4)
    assert np.argsort(got).tolist() == np.argsort(expected).tolist()  # the paper's ranking of the channels
