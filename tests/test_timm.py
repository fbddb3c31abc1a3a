"""timm architectures by name (``--model timm:NAME``): built without downloads, pruned end to end, their
checkpoints loaded; refused in one line without timm or for an unknown name."""
from __future__ import annotations

import json
import sys

import pytest
import torch

from prunevo.cli import main
from prunevo.pruning.cost import measure_cost
from prunevo.transfer import load_pruned
from prunevo.transfer.setup import Setup, load_setup

timm = pytest.importorskip("timm")


def _apply(out, model, *extra: str) -> int:
    return main(["apply", "--formula", "l1", "--model", model, "--dataset", "digits", "--epochs", "0",
                 "--no-latency", "--no-progress", "-o", str(out), *extra])


def _refused(capsys, out, model: str) -> str:
    capsys.readouterr()
    assert _apply(out, model) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("prunevo: error: ") and "Traceback" not in err, err
    assert not out.exists()
    return err


@pytest.mark.slow
def test_a_timm_model_prunes_end_to_end(tmp_path, capsys):
    out = tmp_path / "out"
    assert _apply(out, "timm:resnet18", "--target-macs", "0.6") == 0, capsys.readouterr().err
    result = json.loads((out / "report.json").read_text())["result"]
    base = timm.create_model("resnet18", pretrained=False, num_classes=10, in_chans=1)  # digits: one channel
    x = torch.randn(2, 1, 8, 8)
    assert result["before"]["macs"] == measure_cost(base, x[:1]).macs
    pruned = torch.load(out / "pruned_model.pt", weights_only=False).eval()
    with torch.no_grad():
        assert pruned(x).shape == (2, 10)
        assert torch.allclose(load_pruned(out / "pruned_weights.pt")(x), pruned(x), atol=1e-5)
    macs = measure_cost(pruned, x[:1]).macs
    assert macs == result["after"]["macs"]
    assert macs / result["before"]["macs"] == pytest.approx(0.6, abs=0.03)


@pytest.mark.parametrize("in_chans", [1, 3])
def test_a_timm_checkpoint_is_loaded_with_the_channels_it_reads(in_chans, tmp_path):
    state = timm.create_model("resnet18", pretrained=False, num_classes=10, in_chans=in_chans).state_dict()
    torch.save({"model": state, "epoch": 10}, tmp_path / "ckpt.pt")  # as timm's train.py nests it
    data, model, _ = load_setup(Setup(model="timm:resnet18", checkpoint=str(tmp_path / "ckpt.pt")))
    assert data.input_shape[0] == in_chans  # grey digits become RGB for a 3-channel checkpoint
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())


def test_without_timm_the_refusal_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # `import timm` raises ImportError
    err = _refused(capsys, tmp_path / "out", "timm:resnet18")
    assert err == ("prunevo: error: --model timm:resnet18 needs timm, which is not installed; pip install "
                   "'prunevo[timm]'")


def test_an_unknown_timm_name_lists_close_matches(tmp_path, capsys):
    err = _refused(capsys, tmp_path / "out", "timm:renset18")
    assert err.startswith("prunevo: error: unknown timm model 'renset18' (close matches: resnet18")
    assert err.endswith("allowed: timm:NAME with a NAME from timm.list_models()")
