"""CLI: the commands work, bad input gives one clear line and exit code 2."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from prunevo.cli import main
from prunevo.evolve.run import evolve
from tests.test_evolve import _config


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, prepared_tasks):
    path = tmp_path_factory.mktemp("cli") / "run"
    evolve(_config(1), path, progress=False, prepared=prepared_tasks)
    return path


def test_show_and_export(run_dir, capsys, tmp_path):
    assert main(["show", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "hall of fame" in out and "Pareto front" in out and "random" in out
    for fmt, marker in [("json", '"text"'), ("sympy", ""), ("latex", ""), ("python", "def criterion")]:
        assert main(["export", str(run_dir), "--format", fmt]) == 0
        assert marker in capsys.readouterr().out
    target = tmp_path / "best.json"
    assert main(["export", str(run_dir), "-o", str(target)]) == 0
    data = json.loads(target.read_text())
    assert data["rank"] == 1 and data["tasks"] == ["digits-vgg", "digits-resnet"]


def test_score_beside_baselines(capsys, tmp_path):
    formula = tmp_path / "f.txt"
    formula.write_text("l1(W) / (std(F) + 0.05)")
    code = main(["score", str(formula), "abs(gamma)", "--tasks", "digits-lenet5", "--n-jobs", "1",
                 "--prune-ratio", "0.5", "--finetune-epochs", "0"])
    out = capsys.readouterr().out
    assert code == 0
    for name in ["l1(W) / (std(F) + 0.05)", "l1 ", "taylor", "random", "base accuracy"]:
        assert name in out
    # LeNet-5 has no BatchNorm: gamma is constant there and the formula is reported invalid
    assert "invalid: digits-lenet5: constant scores" in out


@pytest.mark.parametrize("argv, fragment", [
    (["score", "__import__('os').system('echo pwned')"], "unexpected character"),
    (["score", "l1(W) +"], "unexpected end of formula"),
    (["score", "l1(W)", "--tasks", "cifar-vgg"], "unknown task 'cifar-vgg'"),
    (["score", "l1(W)", "--tasks", "mnist-lenet5"], "needs --data-root"),
    (["score", "missing.json"], "not found"),
    (["show", "/nonexistent/run"], "not a prunevo run directory"),
    (["evolve", "--population", "1", "--run-dir", "/tmp/never"], "population must be at least 2"),
    (["evolve", "--prune-ratio", "1.5", "--generations", "0", "--run-dir", "/tmp/never"], "out of range"),
])
def test_bad_input_is_one_line_and_exit_code_2(argv, fragment, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "prunevo.cli", *argv], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert fragment in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0


def test_export_rank_out_of_range(run_dir, capsys):
    assert main(["export", str(run_dir), "--rank", "99"]) == 2
    assert "out of range" in capsys.readouterr().err


def test_help_explains_every_option():
    import argparse

    from prunevo.cli import _parser

    parser = _parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(subparsers.choices) >= {"evolve", "show", "export", "score", "tasks", "train", "apply", "compare"}
    for command, sub in subparsers.choices.items():
        for action in sub._actions:
            assert action.help and action.help.strip(), f"prunevo {command} {action.option_strings or action.dest} has no help"
        sub.format_help()  # every help string renders (a stray % would raise here)
    proc = subprocess.run([sys.executable, "-m", "prunevo.cli", "apply", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "--target-macs" in proc.stdout
    assert main(["tasks"]) == 0
