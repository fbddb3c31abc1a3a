"""Only classifiers are pruned: a model that returns a per-pixel map (segmentation, dense prediction) is refused in
one line when it is built, before any data-heavy step, whatever container holds the map."""
from __future__ import annotations

import textwrap

import pytest

from prunevo.cli import main
from prunevo.errors import ModelError
from prunevo.zoo.models import build_model

DENSE = textwrap.dedent('''
    from torch import nn
    from torchvision.models import segmentation


    def lraspp(num_classes=10):
        return segmentation.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=num_classes)


    def deeplab(num_classes=10):
        return segmentation.deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None,
                                                         num_classes=num_classes)


    def per_pixel(num_classes=10):  # a home-made dense head: a tensor [N, classes, H, W]
        return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                             nn.Conv2d(16, num_classes, 1))


    def unflattened(num_classes=10):  # a classifier that forgot to flatten: [N, classes, 1, 1]
        return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, num_classes, 1),
                             nn.AdaptiveAvgPool2d(1))
''')


@pytest.fixture
def dense_module(tmp_path, monkeypatch):
    (tmp_path / "dense.py").write_text(DENSE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("function, shown", [
    ("lraspp", "a per-pixel map of shape [N, 10, 8, 8] (a segmentation/dense-prediction model)"),
    ("per_pixel", "a per-pixel map of shape [N, 10, 8, 8] (a segmentation/dense-prediction model)"),
    ("unflattened", "an output of shape [N, 10, 1, 1]"),
])
def test_a_model_that_is_not_a_classifier_is_refused_in_one_line(function, shown, dense_module, capsys):
    out = dense_module / "out"
    args = ["apply", "--formula", "l1", "--model", f"dense:{function}", "--dataset", "digits", "--epochs", "0",
            "--no-latency", "--no-progress", "-o", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err == (f"prunevo: error: dense:{function} returns {shown}; only classifiers (logits [N, classes]) are "
                   f"supported")
    assert not out.exists()


def test_the_refusal_comes_when_the_model_is_built(dense_module):
    """build_model is what every command (and evolve's tasks) loads a model with."""
    with pytest.raises(ModelError, match=r"dense:deeplab returns a per-pixel map of shape \[N, 10, 32, 32\]"):
        build_model("dense:deeplab", 10, (3, 32, 32))
