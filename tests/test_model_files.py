"""Model files as people bring them: float16/bfloat16 weights (YOLOv5 saves its .pt in float16), and the files
``prunevo apply`` writes, given back to it as --model to prune a pruned model again."""
from __future__ import annotations

import json
import logging
import textwrap

import pytest
import torch
import torchvision

from prunevo.cli import main
from prunevo.transfer import load_pruned
from prunevo.transfer.setup import Setup, load_setup
from prunevo.zoo import models
from prunevo.zoo.models import build_model

HALF_USER_NET = textwrap.dedent('''
    import torch
    from torch import nn


    def build(num_classes=10):
        net = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                            nn.Conv2d(16, 24, 3, padding=1), nn.BatchNorm2d(24), nn.ReLU(),
                            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(24, num_classes))
        return net.to(torch.bfloat16)
''')


def _apply(out, model, *extra: str) -> int:
    return main(["apply", "--formula", "l1", "--model", str(model), "--dataset", "digits", "--epochs", "0",
                 "--no-latency", "--no-progress", "-o", str(out), *extra])


def _refused(capsys, out, model, *extra: str) -> str:
    """``prunevo apply`` that exits with code 2, one error line and no output directory: the line."""
    capsys.readouterr()
    assert _apply(out, model, *extra) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("prunevo: error: ") and "Traceback" not in err, err
    assert not out.exists()
    return err


def _report(out) -> dict:
    return json.loads((out / "report.json").read_text())


def _floating(tensors) -> set[torch.dtype]:
    return {t.dtype for t in tensors if t.is_floating_point()}


def _assert_saved_as(out, dtype: torch.dtype, channels: int, caplog) -> None:
    """Every file apply wrote holds ``dtype`` weights (the .pt2 may be float32, saying so), and they compute alike."""
    pickled = torch.load(out / "pruned_model.pt", weights_only=False).eval()
    assert _floating(pickled.state_dict().values()) == {dtype}
    assert not hasattr(pickled, models.SOURCE_DTYPE_ATTR)  # prunevo's record stays out of the user's file
    assert _floating(torch.load(out / "pruned_weights.pt", weights_only=True)["state_dict"].values()) == {dtype}
    rebuilt = load_pruned(out / "pruned_weights.pt")
    assert _floating(rebuilt.state_dict().values()) == {dtype}
    x = torch.linspace(-1, 1, 2 * channels * 64).reshape(2, channels, 8, 8).to(dtype)
    with torch.no_grad():
        expected = pickled(x)
        assert expected.shape == (2, 10) and expected.dtype == dtype
        assert torch.equal(rebuilt(x), expected)
        exported = torch.export.load(str(out / "pruned_model.pt2")).module()
        (pt2_dtype,) = _floating(exported.state_dict().values())
        assert pt2_dtype == dtype or "pruned_model.pt2 is float32" in caplog.text
        got = exported(x.to(pt2_dtype))
    assert torch.allclose(got.float(), expected.float(), atol=0.05 * (1 + expected.abs().max().item()))


def test_a_float16_whole_model_is_pruned_in_float32_and_saved_as_float16(tmp_path, capsys, caplog):
    torch.save(torchvision.models.resnet18(num_classes=10).half(), tmp_path / "m.pt")
    caplog.set_level(logging.WARNING)
    assert _apply(tmp_path / "out", tmp_path / "m.pt") == 0, capsys.readouterr().err
    assert "m.pt holds float16 weights: pruned in float32, pruned models saved as float16" in caplog.text
    _assert_saved_as(tmp_path / "out", torch.float16, 3, caplog)


def test_a_bfloat16_user_net_is_pruned_in_float32_and_saved_as_bfloat16(tmp_path, capsys, caplog, monkeypatch):
    (tmp_path / "halfnet.py").write_text(HALF_USER_NET)
    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.WARNING)
    assert _apply(tmp_path / "out", "halfnet.py:build") == 0, capsys.readouterr().err
    assert "holds bfloat16 weights: pruned in float32, pruned models saved as bfloat16" in caplog.text
    _assert_saved_as(tmp_path / "out", torch.bfloat16, 1, caplog)


def test_a_float16_state_dict_loads_into_the_float32_model_and_is_saved_as_float16(tmp_path, capsys, caplog):
    net = build_model("small-vgg", 10, (1, 8, 8))
    state = {k: v.half() if v.is_floating_point() else v for k, v in net.state_dict().items()}
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "half.pt")
    _, model, _ = load_setup(Setup(model="small-vgg", checkpoint=str(tmp_path / "half.pt")))
    loaded = model.state_dict()
    assert _floating(loaded.values()) == {torch.float32}
    assert all(torch.equal(loaded[k], v.float()) for k, v in state.items() if v.is_floating_point())
    assert models.source_dtype(model) == torch.float16
    caplog.set_level(logging.WARNING)
    assert _apply(tmp_path / "out", "small-vgg", "--checkpoint", str(tmp_path / "half.pt")) == 0, \
        capsys.readouterr().err
    assert "half.pt holds float16 weights" in caplog.text
    _assert_saved_as(tmp_path / "out", torch.float16, 1, caplog)


def test_every_file_apply_writes_is_accepted_as_model_or_names_the_one_that_is(tmp_path, capsys):
    first = tmp_path / "first"
    assert _apply(first, "small-vgg") == 0, capsys.readouterr().err
    pruned = _report(first)["result"]["after"]
    for name in ("pruned_model.pt", "pruned_weights.pt"):
        again = tmp_path / f"again-from-{name}"
        assert _apply(again, first / name) == 0, capsys.readouterr().err
        result = _report(again)["result"]
        # the second run starts from the first one's pruned model, weights included
        assert (result["before"]["macs"], result["before"]["params"]) == (pruned["macs"], pruned["params"])
        assert result["before"]["top1"] == pytest.approx(pruned["top1"])
        assert result["after"]["macs"] < 0.55 * pruned["macs"]
    # a third generation rebuilds through the second's pruned_weights.pt, which rebuilds through the first's
    second = tmp_path / "again-from-pruned_weights.pt"
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(load_pruned(second / "pruned_weights.pt")(x),
                              torch.load(second / "pruned_model.pt", weights_only=False).eval()(x), atol=1e-5)
    err = _refused(capsys, tmp_path / "from-pt2", first / "pruned_model.pt2")
    assert "pruned_model.pt2 is a torch.export program" in err and f"use {first / 'pruned_model.pt'} instead" in err


def test_pruned_weights_whose_base_model_is_gone_name_the_file_to_use(tmp_path, capsys):
    torch.save(build_model("small-vgg", 10, (1, 8, 8)), tmp_path / "base.pt")
    out = tmp_path / "out"
    assert _apply(out, tmp_path / "base.pt", "--no-progress") == 0, capsys.readouterr().err
    (tmp_path / "base.pt").unlink()  # pruned_weights.pt holds the pruned weights, not the base architecture
    err = _refused(capsys, tmp_path / "again", out / "pruned_weights.pt")
    assert "pruned_weights.pt (pruned weights) cannot be rebuilt: model file" in err
    assert f"use {out / 'pruned_model.pt'} instead" in err
    assert _apply(tmp_path / "again", out / "pruned_model.pt") == 0, capsys.readouterr().err


def test_an_exported_program_alone_is_refused_saying_what_is_allowed(tmp_path, capsys):
    net = build_model("small-vgg", 10, (1, 8, 8)).eval()
    torch.export.save(torch.export.export(net, (torch.zeros(2, 1, 8, 8),)), tmp_path / "net.pt2")
    err = _refused(capsys, tmp_path / "out", tmp_path / "net.pt2")
    assert "net.pt2 is a torch.export program" in err
    assert "allowed: a whole-model file saved with torch.save(model)" in err


def test_the_pt2_stays_float32_saying_so_when_half_export_fails(tmp_path, capsys, caplog, monkeypatch):
    from prunevo.transfer import apply

    exported = apply._exported

    def float32_only(model, example):
        if example.dtype != torch.float32:
            raise RuntimeError("no float16 kernel")
        return exported(model, example)

    monkeypatch.setattr(apply, "_exported", float32_only)
    torch.save(build_model("small-vgg", 10, (1, 8, 8)).half(), tmp_path / "half.pt")
    caplog.set_level(logging.WARNING)
    assert _apply(tmp_path / "out", tmp_path / "half.pt") == 0, capsys.readouterr().err
    assert ("pruned_model.pt2 is float32: torch.export could not export the float16 model (RuntimeError: no "
            "float16 kernel); pruned_model.pt and pruned_weights.pt are float16") in caplog.text
    _assert_saved_as(tmp_path / "out", torch.float16, 1, caplog)
