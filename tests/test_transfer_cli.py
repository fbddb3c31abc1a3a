"""prunevo train | apply | compare end to end on digits, the API beside them, and their bad-input errors."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

from prunevo.pruning.latency import LatencySpec, measure_latency
from prunevo.training.schedules import lr_curve, lr_factor
from prunevo.training import Accelerator, FitConfig, fit
from prunevo.zoo.images import load_image_data
from prunevo.zoo.models import build_model


def run_cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "prunevo.cli", *args], capture_output=True, text=True, cwd=cwd)


@pytest.fixture(scope="module")
def base_checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("train")
    r = run_cli("train", "--model", "small-resnet", "--dataset", "digits", "--epochs", "5", "--lr", "0.05",
                "--device", "cpu", "--no-progress", "-o", str(out / "base.pt"), cwd=out)
    assert r.returncode == 0, r.stderr
    assert "validation top-1" in r.stdout
    return out / "base.pt"


@pytest.mark.slow
def test_apply_writes_model_and_reports(base_checkpoint, tmp_path):
    r = run_cli("apply", "--formula", "gamma + mean(abs(Wn))", "--model", "small-resnet", "--checkpoint",
                str(base_checkpoint), "--target-macs", "0.6", "--epochs", "0.5", "--latency-batches", "1", "8",
                "--latency-repeats", "2", "--device", "cpu", "--no-progress", "-o", str(tmp_path / "out"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    result = report["result"]
    assert abs(result["macs_fraction"] - 0.6) <= 0.018
    assert result["after"]["macs"] < result["before"]["macs"] and result["after"]["params"] < result["before"]["params"]
    assert set(result["after"]["latency_ms"]["cpu"]) == {"1", "8"}
    assert result["before"]["top1"] > 0.5  # the checkpoint was loaded, not a random net
    assert "| after |" in (tmp_path / "out" / "report.md").read_text()
    loaded = torch.export.load(str(tmp_path / "out" / "pruned_model.pt2")).module()
    assert loaded(torch.randn(2, 1, 8, 8)).shape == (2, 10)


@pytest.mark.slow
def test_compare_prints_table_vs_random_and_plots(base_checkpoint, tmp_path):
    r = run_cli("compare", "--formulas", "l1", "bn", "--model", "small-resnet", "--checkpoint", str(base_checkpoint),
                "--channel-ratio", "0.4", "--round-to", "8", "--epochs", "0.25", "--seeds", "2", "--no-latency",
                "--device", "cpu", "--no-progress", "-o", str(tmp_path / "cmp"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "vs random" in r.stdout and "| random |" in r.stdout and "± " in r.stdout
    data = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert len(data["runs"]) == 6  # (l1, bn, random) x 2 seeds
    assert (tmp_path / "cmp" / "compare.png").stat().st_size > 1000
    # identical settings: every criterion kept the same number of channels per group, rounded to multiples of 8
    kept = {json.dumps(run["kept"]) for run in data["runs"]}
    assert len(kept) == 1
    widths = [w for w, total in data["runs"][0]["kept"].values() if w < total]
    assert widths and all(w % 8 == 0 for w in widths), widths
    assert data["config"]["round_to"] == 8 and "multiples of 8" in r.stdout


@pytest.mark.parametrize("args,message", [
    (["apply", "--formula", "l1", "--model", "resnet9000"], "unknown --model 'resnet9000'"),
    (["apply", "--formula", "l1(W) +", "--model", "lenet5"], "formula"),
    (["apply", "--formula", "l1(W) +", "--model", "resnet9000"], "unexpected end of formula"),  # before the model
    (["apply", "--formula", "l1", "--model", "lenet5", "--channel-ratio", "1"], "--channel-ratio 1.0 is out of range"),
    (["apply", "--formula", "l1", "--model", "lenet5", "--epochs", "-1"], "--epochs must be >= 0, got -1.0"),
    (["apply", "--formula", "l1", "--model", "lenet5", "--dataset", "cifar10", "--data-root", "."], "cifar10 not found"),
    (["apply", "--formula", "l1", "--model", "lenet5", "--dataset", "cifar10"], "needs --data-root"),
    (["apply", "--formula", "l1", "--model", "lenet5", "--target-macs", "1.5"], "out of range"),
    (["apply", "--formula", "l1", "--model", "lenet5", "--target-macs", "0"], "out of range"),
    (["compare", "--formulas", "l1", "--model", "lenet5", "--target-macs", "0"], "allowed: 0 < target <= 1"),
    (["apply", "--formula", "taylor", "--model", "lenet5", "--calibration-batch", "0"],
     "--calibration-batch must be at least 1"),
    (["apply", "--formula", "l1", "--model", "shufflenet_v2_x0_5", "--image-size", "32"], "after layer"),
    (["apply", "--formula", "l1", "--model", "lenet5", "--checkpoint", "missing.pt"], "does not exist"),
    (["apply", "--formula", "tp-bn", "--model", "lenet5", "--epochs", "0", "--no-latency"],
     "criterion 'tp-bn' does not apply to lenet5"),
    (["apply", "--formula", "tp-l3", "--model", "lenet5"], "tp-l2"),  # the error lists the named criteria
    (["train", "--model", "lenet5", "--device", "cuda:7"] if not torch.cuda.is_available() else
     ["train", "--model", "lenet5", "--device", "tpu"], "device"),
])
@pytest.mark.slow
def test_bad_input_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys, args, message):
    from prunevo.cli import main

    monkeypatch.chdir(tmp_path)
    assert main([*args, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert len([line for line in err.splitlines() if line.startswith("prunevo: error")]) == 1
    assert not (tmp_path / "pruned").exists()  # no half-written output directory


def _bad_folder(root, kind):
    from tests.helpers import write_image_folder

    if kind == "empty classes":
        for name in ("cat", "dog"):
            (root / "train" / name).mkdir(parents=True)
        return root
    write_image_folder(root, classes=("cat", "dog"), per_class=6, size=32)
    for f in sorted((root / "train" / "dog").iterdir()):  # the same images as JPEGs, one of them cut short
        from PIL import Image

        Image.open(f).save(f.with_suffix(".jpg"))
        f.unlink()
    victim = sorted((root / "train" / "dog").iterdir())[3]
    victim.write_bytes(victim.read_bytes()[:200])
    return root


@pytest.mark.slow
@pytest.mark.parametrize("kind,message", [("empty classes", "Found no valid file for the classes cat, dog"),
                                          ("truncated JPEG", "dog/3.jpg cannot be read")])
def test_broken_image_folders_are_one_line_errors(tmp_path, kind, message):
    root = _bad_folder(tmp_path / "imgs", kind)
    out = tmp_path / "out"
    for command in (["apply", "--formula", "l1", "--no-latency"], ["compare", "--formulas", "l1", "--seeds", "1",
                                                                 "--no-latency"]):
        r = run_cli(*command, "--model", "small-resnet", "--dataset", f"imagefolder:{root}", "--epochs", "0.2",
                    "--no-progress", "-o", str(out), cwd=tmp_path)
        assert r.returncode == 2, r.stderr[-2000:]
        errors = [line for line in r.stderr.splitlines() if line.startswith("prunevo: error")]
        assert len(errors) == 1 and message in errors[0] and "Traceback" not in r.stderr, r.stderr[-2000:]
        assert not out.exists()  # no half-written output directory


@pytest.mark.slow
def test_checkpoint_mismatch_and_corruption_are_refused(base_checkpoint, tmp_path):
    r = run_cli("apply", "--formula", "l1", "--model", "small-vgg", "--checkpoint", str(base_checkpoint), "-o",
                str(tmp_path / "out"), cwd=tmp_path)
    assert r.returncode == 2 and "is for model='small-resnet'" in r.stderr and "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0 and not (tmp_path / "out").exists()
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    r = run_cli("apply", "--formula", "l1", "--model", "small-resnet", "--checkpoint", str(bad), cwd=tmp_path)
    assert r.returncode == 2 and "unreadable" in r.stderr and "Traceback" not in r.stderr


def test_retraining_schedules_match_their_definitions():
    # SLR: linear warm-up over 10% to the peak, then the original (step) schedule compressed into 90%
    assert lr_factor("slr", 0.05) == pytest.approx(0.5)
    assert lr_factor("slr", 0.1 + 0.9 * 0.49) == 1.0 and lr_factor("slr", 0.1 + 0.9 * 0.51) == pytest.approx(0.1)
    assert lr_factor("slr", 0.1 + 0.9 * 0.76) == pytest.approx(0.01)
    assert lr_factor("slr", 0.5, original="cosine") == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.4 / 0.9)))
    # CLR: the same warm-up, then one cosine cycle to zero; FT: constant 1% of the peak
    assert lr_factor("clr", 0.1 + 0.9 * 0.5) == pytest.approx(0.5)
    assert set(lr_curve("ft", 50)) == {0.01}
    curve = lr_curve("slr", 100)
    assert curve[:10] == sorted(curve[:10]) and max(curve) == 1.0 and curve[-1] == pytest.approx(0.01)
    with pytest.raises(ValueError, match="allowed"):
        lr_factor("onecycle", 0.5)


@pytest.mark.parametrize("schedule,original", [("cosine", "step"), ("step", "step"), ("ft", "step"),
                                               ("slr", "step"), ("slr", "cosine"), ("clr", "step")])
def test_torch_schedulers_follow_the_definitions(schedule, original):
    # training steps torch's lr_scheduler classes; they must apply the documented factor at t = step / steps
    steps = 200
    curve = lr_curve(schedule, steps, original)
    assert len(curve) == steps
    for s, factor in enumerate(curve):
        assert factor == pytest.approx(lr_factor(schedule, s / steps, original), abs=2e-3), s


@pytest.mark.slow
def test_the_gpu_training_path_runs_on_cpu_and_is_seeded():
    data = load_image_data("digits")
    config = FitConfig(epochs=0.3, lr=0.05, batch_size=64)
    weights = []
    for accel in (Accelerator("cpu"), Accelerator("cpu"), Accelerator("cpu", amp=True, channels_last=True)):
        torch.manual_seed(0)
        model = build_model("small-vgg", 10, data.input_shape)
        fit(model, data.train, config, seed=3, accel=accel)
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.equal(weights[0], weights[1])  # same seed, same weights
    assert not torch.equal(weights[0], weights[2]) and torch.isfinite(weights[2]).all()  # bf16 autocast ran


def test_latency_harness_reports_medians_per_batch():
    model = build_model("small-vgg", 10, (1, 8, 8))
    result = measure_latency(model, (1, 8, 8), "cpu", LatencySpec(batch_sizes=(1, 4), warmup=1, repeats=3, threads=1))
    assert set(result.median_ms) == {1, 4} and all(v > 0 for v in result.median_ms.values())
    assert result.threads == 1 and result.device == "cpu"


def test_user_models_from_a_function_and_a_whole_model_file(tmp_path):
    model = build_model("torchvision.models:resnet18", 7, (3, 32, 32))
    assert model.fc.out_features == 7
    whole = build_model("lenet5", 10, (1, 28, 28))
    torch.save(whole, tmp_path / "mine.pt")
    loaded = build_model(str(tmp_path / "mine.pt"), 10, (1, 28, 28))
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(loaded(x), whole(x))
