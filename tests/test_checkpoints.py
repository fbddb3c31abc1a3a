"""Checkpoints as people have them: wrapper prefixes, nested state dicts, old BatchNorm keys, and misfits
refused in one line."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from prunevo.errors import ModelError
from prunevo.zoo.checkpoints import load_weights, read_checkpoint
from prunevo.zoo.models import build_model


def _net() -> nn.Module:
    torch.manual_seed(0)
    return build_model("small-resnet", 10, (1, 8, 8)).eval()


def _same(a: nn.Module, b: nn.Module) -> bool:
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return torch.equal(a(x), b(x))


class _Wrapper(nn.Module):  # what nn.DataParallel, DDP and torch.compile put around a model: one named child
    def __init__(self, name: str, inner: nn.Module):
        super().__init__()
        self.add_module(name, inner)


@pytest.mark.parametrize("wrap", [
    lambda m: nn.DataParallel(m).state_dict(),  # module.*, as DataParallel/DDP save it
    lambda m: _Wrapper("_orig_mod", m).state_dict(),  # torch.compile's OptimizedModule
    lambda m: _Wrapper("module", _Wrapper("_orig_mod", m)).state_dict(),  # a compiled model inside DDP
    lambda m: {"epoch": 90, "model": nn.DataParallel(m).state_dict(), "args": {"lr": 0.1}},  # torchvision refs
    lambda m: {"state_dict": m.state_dict(), "optimizer": {"state": {}, "param_groups": []}},  # many scripts
    lambda m: {"model_state_dict": m.state_dict(), "epoch": 3},  # the PyTorch tutorial's recipe
], ids=["dataparallel", "compile", "compile-in-ddp", "torchvision-reference", "state_dict-key", "tutorial"])
def test_wrapped_and_nested_checkpoints_load(tmp_path, wrap):
    trained = _net()
    path = tmp_path / "ckpt.pt"
    torch.save(wrap(trained), path)
    fresh = build_model("small-resnet", 10, (1, 8, 8)).eval()
    assert not _same(fresh, trained)
    load_weights(fresh, path, {})
    assert _same(fresh, trained)


def test_a_checkpoint_without_batchnorm_step_counters_loads(tmp_path):
    trained = _net()
    state = {k: v for k, v in trained.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "old.pt")
    fresh = build_model("small-resnet", 10, (1, 8, 8)).eval()
    load_weights(fresh, tmp_path / "old.pt", {})
    assert _same(fresh, trained)


def test_a_misfit_is_one_line_with_counts_and_the_first_keys(tmp_path):
    state = _net().state_dict()
    renamed = {("backbone." + k if i % 2 else k): v for i, (k, v) in enumerate(state.items())}
    torch.save(renamed, tmp_path / "renamed.pt")
    with pytest.raises(ModelError) as err:
        load_weights(_net(), tmp_path / "renamed.pt", {})
    message = str(err.value)
    missing = sum(1 for i, k in enumerate(state) if i % 2 and not k.endswith("num_batches_tracked"))
    assert "\n" not in message and len(message) < 600, message
    assert f"missing keys: {missing} (" in message and f"unexpected keys: {len(state) // 2} (backbone." in message
    assert "..." in message
    wide = build_model("small-resnet", 10, (3, 8, 8)).state_dict()  # another input channel count
    torch.save(wide, tmp_path / "rgb.pt")
    with pytest.raises(ModelError, match=r"other shapes, checkpoint vs model: 1 \(\S+ \(\d+, 3, 3, 3\) vs "):
        load_weights(_net(), tmp_path / "rgb.pt", {})


def test_what_is_not_a_state_dict_is_refused_without_unpickling(tmp_path):
    torch.save({"epoch": 3, "lr": 0.1}, tmp_path / "nostate.pt")
    with pytest.raises(ModelError, match="holds no state_dict .* under one of state_dict, model_state_dict"):
        read_checkpoint(tmp_path / "nostate.pt")

    marker = tmp_path / "unpickled"

    class Boom:
        def __reduce__(self):
            return (exec, (f"import pathlib; pathlib.Path({str(marker)!r}).write_text('x')",))

    torch.save({"state_dict": Boom()}, tmp_path / "evil.pt")  # torch's format, a pickled callable inside
    with pytest.raises(ModelError, match="not a weights-only file"):
        read_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()
