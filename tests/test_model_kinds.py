"""Models as people bring them: frozen layers, training-only auxiliary heads, attention models."""
from __future__ import annotations

import pytest
import torch

from prunevo.transfer.setup import Setup
from prunevo.cli import main
from prunevo.errors import ModelError
from prunevo.pruning.groups import build_dependency_graph, find_groups
from prunevo.zoo.models import build_model


def _refused(tmp_path, monkeypatch, capsys, module: str, source: str, model: str, *extra: str) -> str:
    """``prunevo apply`` on a user's model written to ``module``.py: exit code 2, and the one error line."""
    (tmp_path / f"{module}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    args = ["apply", "--formula", "l1", "--model", model, "--dataset", "digits", "--epochs", "0", "--no-latency",
            "--no-progress", "-o", str(tmp_path / "out"), *extra]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("prunevo: error: ") and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()
    return err


def _layout(groups):
    return [(g.root, g.size, [m.layer for m in g.members], [c.layer for c in g.consumers]) for g in groups]


@pytest.mark.parametrize("name, frozen", [
    ("resnet20", ("stem.0",)),  # the layer the input reaches first: it was dropped from the graph
    ("small-vgg", ("features.0", "features.1")),  # a conv and its BatchNorm
    ("resnet20", ("stem", "layers.0", "layers.1")),  # the first blocks
])
def test_frozen_layers_do_not_change_the_groups(name, frozen):
    model = build_model(name, 10, (1, 16, 16)).eval()
    example = torch.randn(1, 1, 16, 16)
    whole = _layout(find_groups(model, example))
    for layer in frozen:
        for p in model.get_submodule(layer).parameters():
            p.requires_grad_(False)
    assert _layout(find_groups(model, example)) == whole
    assert all(not p.requires_grad for layer in frozen for p in model.get_submodule(layer).parameters())


@pytest.mark.parametrize("name, size", [("googlenet", 32), ("inception_v3", 75)])
def test_auxiliary_heads_are_left_out(name, size):
    model = build_model(name, 10, (3, size, size)).train()
    out = model(torch.randn(2, 3, size, size))  # training mode: one logits tensor, no aux outputs
    assert isinstance(out, torch.Tensor) and out.shape == (2, 10)
    assert not any("aux" in n for n, _ in model.named_modules())


@pytest.mark.slow
def test_attention_models_are_refused_in_one_line(tmp_path, capsys):
    args = ["apply", "--formula", "l1", "--model", "swin_t", "--dataset", "digits", "--epochs", "0", "--no-latency",
            "--no-progress", "-o", str(tmp_path / "out")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "swin_t has attention" in err and "supported: convolutional" in err
    assert not (tmp_path / "out").exists()
    vit = build_model("vit_b_16", 10, (3, 224, 224))
    with pytest.raises(ModelError, match="attention: layer 'encoder.layers.encoder_layer_0.self_attention' "
                                         r"\(MultiheadAttention\)"):
        build_dependency_graph(vit, torch.zeros(1, 3, 224, 224))


def test_channel_attention_in_a_cnn_is_not_refused():
    model = build_model("mobilenet_v3_small", 10, (3, 32, 32)).eval()  # squeeze-excitation blocks
    assert find_groups(model, torch.randn(1, 3, 32, 32))


OUTPUTS = '''
import collections

import torch
from torch import nn

Out = collections.namedtuple("Out", "logits features")


class Net(nn.Module):
    def __init__(self, wrap, num_classes=10):
        super().__init__()
        self.wrap = wrap
        self.body = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                                  nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(16, num_classes)

    def forward(self, x):
        h = self.body(x)
        return self.wrap(self.head(h), h)


def as_tuple(num_classes=10):
    return Net(lambda y, h: (y, h), num_classes)


def as_named_tuple(num_classes=10):
    return Net(Out, num_classes)


def as_list(num_classes=10):
    return Net(lambda y, h: [y, h], num_classes)


def as_dict(num_classes=10):
    return Net(lambda y, h: {"logits": y, "features": h}, num_classes)


def as_segmentation_dict(num_classes=10):
    return Net(lambda y, h: {"out": y, "aux": h}, num_classes)


def as_unknown_dict(num_classes=10):
    return Net(lambda y, h: {"scores": y}, num_classes)


def as_string(num_classes=10):
    return Net(lambda y, h: "done", num_classes)
'''


@pytest.mark.slow
@pytest.mark.parametrize("function", ["as_tuple", "as_named_tuple", "as_list", "as_dict", "as_segmentation_dict"])
def test_models_returning_a_tuple_or_dict_are_read_for_their_logits(function, tmp_path, monkeypatch, capsys, caplog):
    (tmp_path / "outputs.py").write_text(OUTPUTS)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    args = ["apply", "--formula", "taylor", "--model", f"outputs:{function}", "--dataset", "digits", "--epochs",
            "0.1", "--target-macs", "0.6", "--no-latency", "--no-progress", "-o", str(tmp_path / "out")]
    assert main(args) == 0, capsys.readouterr().err
    pruned = torch.export.load(str(tmp_path / "out" / "pruned_model.pt2")).module()
    assert pruned(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    # a model holding lambdas cannot be pickled whole: that file is left out, with a warning, not a traceback
    picklable = function == "as_named_tuple"
    assert (tmp_path / "out" / "pruned_model.pt").exists() == picklable
    assert picklable or "cannot be pickled as a whole" in caplog.text


@pytest.mark.parametrize("function, shown", [("as_unknown_dict", "a dict with keys 'scores'"), ("as_string", "a str")])
def test_models_returning_something_else_are_refused_in_one_line(function, shown, tmp_path, monkeypatch, capsys):
    err = _refused(tmp_path, monkeypatch, capsys, "outputs", OUTPUTS, f"outputs:{function}")
    assert f"the model returns {shown}; prunevo reads the logits" in err


class _SqueezeExcite(torch.nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.fc1, self.fc2 = torch.nn.Linear(channels, channels // 4), torch.nn.Linear(channels // 4, channels)

    def forward(self, x):
        w = torch.sigmoid(self.fc2(torch.relu(self.fc1(x.mean((2, 3))))))
        return x * w[:, :, None, None]


class _LateRegistered(torch.nn.Module):
    """The classifier is registered before a squeeze-excitation block that runs before it."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1, self.bn1 = torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.BatchNorm2d(16)
        self.conv2, self.bn2 = torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.BatchNorm2d(32)
        self.classifier = torch.nn.Linear(32, num_classes)
        self.se = _SqueezeExcite(32)

    def forward(self, x):
        h = torch.relu(self.bn1(self.conv1(x)))
        h = self.se(torch.relu(self.bn2(self.conv2(h))))
        return self.classifier(h.mean((2, 3)))


@pytest.mark.slow
def test_the_output_layer_is_found_by_execution_not_registration(tmp_path, monkeypatch):
    from prunevo.pruning.groups import default_ignored
    from prunevo.transfer import TransferConfig, apply_formula

    model, x = _LateRegistered().eval(), torch.randn(1, 1, 8, 8)
    assert default_ignored(model, x) == [model.classifier]
    assert default_ignored(model) == [model.se.fc2]  # what registration order guesses
    groups = find_groups(model, x)
    assert all("classifier" not in m.layer for g in groups for m in g.members)
    # end to end: pruned, masked == pruned, and still 10 classes
    (tmp_path / "late.py").write_text("from tests.test_model_kinds import _LateRegistered as build\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    pruned, result = apply_formula("l1", TransferConfig(setup=Setup(model="late:build", dataset="digits"),
                                                        target_macs=0.6, latency=None, calibration_samples=40))
    assert pruned(torch.randn(2, 1, 8, 8)).shape == (2, 10) and abs(result.macs_fraction - 0.6) < 0.018


class _PartlyFrozenForward(torch.nn.Module):
    """A pretrained stem run under torch.no_grad() in forward, as feature-extractor code does."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.stem = torch.nn.Sequential(torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.BatchNorm2d(16), torch.nn.ReLU())
        self.body = torch.nn.Sequential(torch.nn.Conv2d(16, 24, 3, padding=1), torch.nn.BatchNorm2d(24), torch.nn.ReLU(),
                                        torch.nn.Conv2d(24, 32, 3, padding=1), torch.nn.BatchNorm2d(32), torch.nn.ReLU())
        self.head = torch.nn.Linear(32, num_classes)

    def forward(self, x):
        with torch.no_grad():
            x = self.stem(x)
        return self.head(self.body(x).mean((2, 3)))


@pytest.mark.parametrize("batch_size", [None, 4])  # whole-tensor statistics and streamed ones
def test_gradients_reach_layers_after_a_no_grad_block_and_the_rest_says_why(batch_size):
    from prunevo.pruning.calibration import Calibration
    from prunevo.pruning.criteria import FormulaCriterion
    from prunevo.pruning.scores import NotApplicable
    from prunevo.primitives.formula import Formula

    torch.manual_seed(0)
    model = _PartlyFrozenForward().eval()
    x, y = torch.randn(12, 1, 8, 8), torch.arange(12) % 10
    groups = find_groups(model, x[:1])
    calibration = Calibration(model, groups, x, y, 10, batch_size=batch_size)
    taylor = FormulaCriterion(Formula.parse("abs(mean(F * G))"))
    by_root = {g.root: g for g in groups}
    assert {"stem.0", "body.0", "body.3"} <= set(by_root)
    # what plain PyTorch computes: the gradient of the loss at body.1's output, parameters trainable
    kept = {}
    def keep_gradient(_module, _inputs, output):
        output.register_hook(lambda g: kept.__setitem__("G", g))

    handle = model.body[1].register_forward_hook(keep_gradient)
    torch.nn.functional.cross_entropy(model(x), y, reduction="sum").div(len(x)).backward()
    handle.remove()
    model.zero_grad(set_to_none=True)
    expected = (torch.relu(model.body[1](model.body[0](model.stem(x)))) * kept["G"]).mean((0, 2, 3)).abs()
    with pytest.raises(NotApplicable, match=r"group of layer 'stem.0' does not have: no loss gradient reaches "
                                            r"its output \(computed under torch.no_grad\(\)"):
        taylor.group_scores(calibration, "mean")
    stats = calibration.stats_for_formula(taylor.formula)
    index = [g.root for g in groups].index("body.0")
    score = taylor.formula.score(stats[index][0]).double()
    torch.testing.assert_close(score, expected.double(), rtol=1e-4, atol=1e-9)


class _Shared(torch.nn.Module):
    """One convolution applied twice: to the same resolution (a recurrent refinement) or to two (multi-scale)."""

    def __init__(self, multiscale: bool, num_classes: int = 10):
        super().__init__()
        self.multiscale = multiscale
        self.stem = torch.nn.Sequential(torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.BatchNorm2d(16), torch.nn.ReLU())
        self.shared = torch.nn.Conv2d(16, 16, 3, padding=1)
        self.head = torch.nn.Linear(16, num_classes)

    def forward(self, x):
        h = self.stem(x)
        first = torch.relu(self.shared(h))
        if self.multiscale:
            second = torch.relu(self.shared(torch.nn.functional.avg_pool2d(h, 2)))
            return self.head(first.mean((2, 3)) + second.mean((2, 3)))
        return self.head(torch.relu(self.shared(first)).mean((2, 3)))


@pytest.mark.parametrize("batch_size", [None, 4, 5])  # whole tensors, and streamed in chunks (one uneven)
@pytest.mark.parametrize("multiscale", [False, True])
def test_a_module_called_twice_accumulates_every_call_in_both_statistics_paths(multiscale, batch_size):
    from prunevo.pruning.calibration import Calibration
    from prunevo.pruning.criteria import FormulaCriterion
    from prunevo.primitives.formula import Formula

    torch.manual_seed(0)
    model = _Shared(multiscale).eval()
    x, y = torch.randn(12, 1, 8, 8), torch.arange(12) % 10
    groups = find_groups(model, x[:1])
    index = [g.root for g in groups].index("shared")
    # what each call computes, with trainable parameters: F and G of both calls, joined along space
    maps, grads = [], {}

    def keep(_module, _inputs, output):
        k = len(maps)
        maps.append(torch.relu(output.detach()))
        output.register_hook(lambda g: grads.__setitem__(k, g))

    handle = model.shared.register_forward_hook(keep)
    torch.nn.functional.cross_entropy(model(x), y, reduction="sum").div(len(x)).backward()
    handle.remove()
    model.zero_grad(set_to_none=True)
    flat = lambda t: t.flatten(2).transpose(0, 1)  # noqa: E731  [N, C, H, W] -> [C, N, S]
    F = torch.cat([flat(m) for m in maps], 2)
    G = torch.cat([flat(grads[k]) for k in range(len(maps))], 2)
    expected = {"abs(mean(F * G))": (F * G).mean((1, 2)).abs(), "mean(F)": F.mean((1, 2)),
                "var(smean(F))": F.mean(2).var(1, unbiased=False), "l2(F)": F.flatten(1).norm(dim=1)}
    calibration = Calibration(model, groups, x, y, 10, batch_size=batch_size)
    for text, value in expected.items():
        criterion = FormulaCriterion(Formula.parse(text))
        stats = calibration.stats_for_formula(criterion.formula)
        got = criterion.formula.score(stats[index][0]).double()
        torch.testing.assert_close(got, value.double(), rtol=1e-4, atol=1e-7, msg=lambda m: f"{text}: {m}")
    assert criterion.group_scores(calibration, "mean")  # and the whole model scores


GROUPED_AND_HARDCODED = '''
import torch
from torch import nn


class Grouped(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.c2, self.b2 = nn.Conv2d(8, 12, 3, padding=1, groups=2), nn.BatchNorm2d(12)
        self.c3, self.b3 = nn.Conv2d(12, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x):
        x = torch.relu(self.b1(self.c1(x)))
        x = torch.relu(self.b2(self.c2(x)))
        return self.fc(torch.relu(self.b3(self.c3(x))).mean((2, 3)))


class TinyResNeXt(nn.Module):
    """A ResNeXt bottleneck: 1x1, grouped 3x3 (4 groups), 1x1, with an identity shortcut."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.stem, self.bn0 = nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.a, self.bna = nn.Conv2d(16, 32, 1), nn.BatchNorm2d(32)
        self.b, self.bnb = nn.Conv2d(32, 32, 3, padding=1, groups=4), nn.BatchNorm2d(32)
        self.c, self.bnc = nn.Conv2d(32, 16, 1), nn.BatchNorm2d(16)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x):
        x = torch.relu(self.bn0(self.stem(x)))
        h = torch.relu(self.bna(self.a(x)))
        h = torch.relu(self.bnb(self.b(h)))
        return self.fc(torch.relu(x + self.bnc(self.c(h))).mean((2, 3)))


class HardCoded(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.fc = nn.Linear(16 * 4, num_classes)

    def forward(self, x):
        x = torch.relu(self.b1(self.c1(x)))
        return self.fc(nn.functional.adaptive_avg_pool2d(x, 2).view(-1, 16 * 4))  # the width, written in
'''


@pytest.mark.parametrize("function, where", [("HardCoded", "")])
def test_a_model_that_fails_once_pruned_is_refused_in_one_line(function, where, tmp_path, monkeypatch, capsys):
    assert where in _refused(tmp_path, monkeypatch, capsys, "odd", GROUPED_AND_HARDCODED, f"odd:{function}")


@pytest.mark.slow
def test_ignore_layers_keeps_their_channels_and_the_saved_model_reloads(tmp_path, capsys):
    from prunevo.transfer import load_pruned

    out = tmp_path / "out"
    args = ["apply", "--formula", "l1", "--model", "small-vgg", "--dataset", "digits", "--epochs", "0", "--no-latency",
            "--no-progress", "--target-macs", "0.6", "-o", str(out)]
    assert main([*args, "--ignore-layers", "features.0", "features.7"]) == 0
    pruned = load_pruned(out / "pruned_weights.pt")
    base = build_model("small-vgg", 10, (1, 8, 8))
    for name in ("features.0", "features.7"):
        assert pruned.get_submodule(name).out_channels == base.get_submodule(name).out_channels
    assert pruned.get_submodule("features.3").out_channels < base.get_submodule("features.3").out_channels
    x = torch.randn(2, 1, 8, 8)
    exported = torch.export.load(str(out / "pruned_model.pt2")).module()
    torch.testing.assert_close(pruned.eval()(x), exported(x))
    capsys.readouterr()
    assert main([*args, "--ignore-layers", "features.99"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no layer named 'features.99'" in err and "features.0" in err


class _TrainingOnlyBranch(torch.nn.Module):
    """A deep-supervision branch that runs only in training mode, as GoogLeNet's auxiliary heads do."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.c1, self.b1 = torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.BatchNorm2d(16)
        self.c2, self.b2 = torch.nn.Conv2d(16, 24, 3, padding=1), torch.nn.BatchNorm2d(24)
        self.aux = torch.nn.Conv2d(16, num_classes, 1)
        self.head = torch.nn.Linear(24, num_classes)

    def forward(self, x):
        h = torch.relu(self.b1(self.c1(x)))
        logits = self.head(torch.relu(self.b2(self.c2(h))).mean((2, 3)))
        if self.training:
            logits = logits + 0.1 * self.aux(h).mean((2, 3))
        return logits


def test_a_branch_that_only_runs_in_training_is_caught_by_the_train_mode_check(tmp_path, monkeypatch, capsys, caplog):
    """The graph is traced in eval mode, so it misses the branch; trying the groups in training mode too
    (``pruning.prunable``) leaves the group the branch reads whole, and says so, instead of failing."""
    (tmp_path / "branchy.py").write_text("from tests.test_model_kinds import _TrainingOnlyBranch as build\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    args = ["apply", "--formula", "l1", "--model", "branchy:build", "--dataset", "digits", "--epochs", "0",
            "--no-latency", "--no-progress", "--target-macs", "0.8", "-o", str(tmp_path / "out")]
    assert main(args) == 0, capsys.readouterr().err
    notes = [r.getMessage() for r in caplog.records if "left whole" in r.getMessage()]
    assert len(notes) == 1 and "layer 'c1' (16 channels)" in notes[0], notes
    pruned = torch.load(tmp_path / "out" / "pruned_model.pt", weights_only=False)
    assert pruned.c1.out_channels == 16 and pruned.c2.out_channels < 24


@pytest.mark.parametrize("function", ["Grouped", "TinyResNeXt"])
@pytest.mark.parametrize("formula", ["l1", "taylor"])
def test_grouped_convolutions_lose_the_same_positions_in_every_slice(function, formula, tmp_path, monkeypatch):
    from prunevo.transfer import TransferConfig
    from prunevo.transfer.session import TransferSession
    from prunevo.pruning.criteria import as_criterion

    (tmp_path / "odd.py").write_text(GROUPED_AND_HARDCODED)
    monkeypatch.syspath_prepend(str(tmp_path))
    session = TransferSession(TransferConfig(setup=Setup(model=f"odd:{function}", dataset="digits"), target_macs=0.5,
                                             latency=None, calibration_samples=40))
    tied = [g for g in session.groups if g.ties is not None]
    assert tied and all(g.slices > 1 for g in tied)
    chosen = session.select(as_criterion(formula), 0)
    assert abs(chosen.macs_fraction - 0.5) <= 0.015
    for group, keep in zip(session.groups, chosen.keep):
        if group.ties is not None:  # a position goes in every slice or in none
            ties = torch.tensor(group.ties)
            for position in range(int(ties.max()) + 1):
                assert keep[ties == position].unique().numel() == 1
    assert any(not k.all() for g, k in zip(session.groups, chosen.keep) if g.ties is not None)
    pruned = session.prune(chosen.keep, session.calibration(0).x[:8], chosen.pruned)  # checks eval and train
    grouped = [m for m in pruned.modules() if isinstance(m, torch.nn.Conv2d) and m.groups > 1]
    assert grouped and all(m.in_channels % m.groups == 0 and m.out_channels % m.groups == 0 for m in grouped)


@pytest.mark.slow
def test_regnet_prunes_at_32_px():
    from prunevo.transfer import TransferConfig
    from prunevo.transfer.session import TransferSession
    from prunevo.pruning.criteria import as_criterion

    session = TransferSession(TransferConfig(setup=Setup(model="regnet_x_400mf", dataset="digits", image_size=32),
                                             target_macs=0.5, latency=None, calibration_samples=16))
    chosen = session.select(as_criterion("l1"), 0)
    assert abs(chosen.macs_fraction - 0.5) <= 0.015
    session.prune(chosen.keep, session.calibration(0).x[:4], chosen.pruned)  # masked == pruned, eval and train


class _AttentionFirst(torch.nn.Module):
    """A spatial-attention convolution registered before the stem that reads the image."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.gate = torch.nn.Conv2d(16, 1, 1)  # registered first, runs second
        self.stem, self.bn = torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.BatchNorm2d(16)
        self.head = torch.nn.Linear(16, num_classes)

    def forward(self, x):
        h = torch.relu(self.bn(self.stem(x)))
        return self.head((h * torch.sigmoid(self.gate(h))).mean((2, 3)))


def test_the_layer_that_reads_the_image_is_found_by_execution(tmp_path, monkeypatch):
    from prunevo.transfer import TransferConfig
    from prunevo.transfer.session import TransferSession
    from prunevo.zoo.models import input_channels

    model = _AttentionFirst()
    assert input_channels(model) == 16  # what registration order guesses
    assert input_channels(model, 8) == 1
    assert input_channels(build_model("resnet18", 10, (3, 32, 32)), 32) == 3
    (tmp_path / "gated.py").write_text("from tests.test_model_kinds import _AttentionFirst as build\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    session = TransferSession(TransferConfig(setup=Setup(model="gated:build", dataset="digits"), latency=None,
                                             calibration_samples=40))
    assert session.input_shape == (1, 8, 8)  # grey digits as they are, not spread over 16 channels


class _SizeAsserting(torch.nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv, self.bn = torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.BatchNorm2d(8)
        self.head = torch.nn.Linear(8, num_classes)

    def forward(self, x):
        assert x.shape[-1] == 16, f"expected 16-px images, got {x.shape[-1]}"
        return self.head(torch.relu(self.bn(self.conv(x))).mean((2, 3)))


def test_a_tracing_failure_says_its_own_cause(tmp_path, monkeypatch, capsys):
    err = _refused(tmp_path, monkeypatch, capsys, "strict",
                   "from tests.test_model_kinds import _SizeAsserting as build\n", "strict:build")
    assert "AssertionError: expected 16-px images, got 8" in err and "shuffle" not in err, err
