"""CLI: the commands work, bad input gives one clear line and exit code 2."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from prunevo.cli import main
from prunevo.evolve.run import evolve
from tests.helpers import evolve_config


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, prepared_tasks):
    path = tmp_path_factory.mktemp("cli") / "run"
    evolve(evolve_config(1), path, progress=False, prepared=prepared_tasks)
    return path


@pytest.mark.slow
def test_show_and_export(run_dir, capsys, tmp_path):
    from prunevo.runs.result import load_run
    from prunevo.fitness.scoring import baselines_from_json, best_classic
    from prunevo.pruning.criteria import BASELINE_NAMES

    assert main(["show", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "hall of fame" in out and "Pareto front" in out and "random" in out
    run = load_run(run_dir)
    assert set(BASELINE_NAMES) <= set(run.baselines)  # the Torch-Pruning importances are evolve's baselines too
    best = best_classic(baselines_from_json(run.baselines))
    assert f"best classic: {best.label} {best.fitness:.4f}" in out
    top = run.hall_of_fame[0]
    assert f"{top.fitness:8.4f}  {top.fitness - best.fitness:+8.4f}" in out  # the vs-best column
    for fmt, marker in [("json", '"text"'), ("sympy", ""), ("latex", ""), ("python", "def criterion")]:
        assert main(["export", str(run_dir), "--format", fmt]) == 0
        assert marker in capsys.readouterr().out
    target = tmp_path / "best.json"
    assert main(["export", str(run_dir), "-o", str(target)]) == 0
    data = json.loads(target.read_text())
    assert data["rank"] == 1 and data["tasks"] == ["digits-vgg", "digits-resnet"]


@pytest.mark.parametrize("argv,expected", [([], ("uniform", "global")),
                                           (["--baseline-allocations", "none"], ()),
                                           (["--baseline-allocations", "global"], ("global",))])
def test_baselines_run_under_each_allocation_unless_told(argv, expected):
    from prunevo.cli import parse_config

    assert parse_config(["evolve", *argv]).baseline_allocations == expected
    assert parse_config(["score", "l1", *argv]).baseline_allocations == expected


def test_an_unknown_baseline_allocation_is_one_line_naming_the_flag(capsys):
    assert main(["score", "l1", "--baseline-allocations", "widest"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("prunevo: error: --baseline-allocations 'widest' is unknown; allowed: uniform, global, "
                   "random-search")


@pytest.mark.slow
def test_score_beside_baselines(capsys, tmp_path):
    from prunevo.pruning.criteria import BASELINE_NAMES

    formula = tmp_path / "f.txt"
    formula.write_text("l1(W) / (std(F) + 0.05)")
    code = main(["score", str(formula), "abs(gamma)", "tp-l2", "--tasks", "digits-lenet5", "digits-vgg",
                 "--n-jobs", "1", "--prune-ratio", "0.5", "--finetune-epochs", "0", "--baseline-allocations", "none"])
    out = capsys.readouterr().out
    assert code == 0
    for name in ["l1(W) / (std(F) + 0.05)", "base accuracy", "regime: one-shot (a criterion"]:
        assert name in out
    rows = {line.split()[0]: line for line in out.splitlines()[1:] if line.split()[0] in (*BASELINE_NAMES, "random")}
    assert set(rows) == {*BASELINE_NAMES, "random"}  # every classic and Torch-Pruning criterion, tp-l2 once
    assert out.count("\ntp-l2 ") == 1  # under the tasks' allocation only
    # LeNet-5 has no BatchNorm: BN criteria are n/a there, scored on digits-vgg alone, never shown as 0
    gamma_row = next(line for line in out.splitlines() if line.startswith("abs(gamma)"))
    for line in (rows["bn"], rows["tp-bn"], gamma_row):
        assert "n/a on digits-lenet5" in line and float(line.split()[1]) > 0.1, line
    assert "needs BatchNorm (gamma)" in rows["bn"] and "BNScaleImportance has no score" in rows["tp-bn"]
    # best classic: the best of every classic and Torch-Pruning criterion that applies to both tasks
    fitness = {n: float(line.split()[1]) for n, line in rows.items()
               if n != "random" and "n/a" not in line and "invalid" not in line}
    best = max(fitness, key=fitness.get)
    assert f"best classic: {best} (uniform) {fitness[best]:.4f}" in out  # the pair: the tasks are uniform
    # the vs-best column: the difference of the unrounded values, so within print precision of the printed ones
    gap = float(rows["l1"].split()[2])
    assert abs(gap - (fitness["l1"] - fitness[best])) <= 1.5e-4, rows["l1"]


@pytest.mark.parametrize("argv, fragment", [
    (["score", "__import__('os').system('echo pwned')"], "unexpected character"),
    (["score", "l1(W) +"], "unexpected end of formula"),
    (["score", "l1(W)", "--tasks", "cifar-vgg"], "task 'cifar-vgg' is not MODEL@DATASET"),
    (["score", "l1(W)", "--tasks", "mnist-lenet5"], "needs --data-root"),
    (["score", "missing.json"], "not found"),
    (["show", "/nonexistent/run"], "not a prunevo run directory"),
    (["evolve", "--population", "1", "--run-dir", "/tmp/never"], "population must be at least 2"),
    (["evolve", "--prune-ratio", "1.5", "--generations", "0", "--run-dir", "/tmp/never"], "out of range"),
    (["evolve", "--ladder", "2", "--run-dir", "/tmp/never"], "ladder shares must be in (0, 1]"),
    (["evolve", "--ladder", "half", "--run-dir", "/tmp/never"], "is not a list of shares"),
    (["evolve", "--stack", "0", "--run-dir", "/tmp/never"], "stack must be in [1, 1024]"),
    (["score", "l1(W)", "--tasks", "small-vgg@digits:recal=0"], "recal=0 is out of range"),
    pytest.param(["evolve", "--device", "cuda", "--run-dir", "/tmp/never"], "CUDA is not available",
                 marks=pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA")),
])
def test_bad_input_is_one_line_and_exit_code_2(argv, fragment, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err and err.strip().count("\n") == 0, err


@pytest.mark.slow
@pytest.mark.parametrize("argv, fragment", [
    (["score", "__import__('os').system('echo pwned')"], "unexpected character"),
    (["evolve", "--ladder", "half", "--run-dir", "/tmp/never"], "is not a list of shares"),
])
def test_the_installed_command_prints_one_line_and_exits_2(argv, fragment, tmp_path):
    """The same as a user's shell sees it: a process of its own, its stderr, its exit status."""
    proc = subprocess.run([sys.executable, "-m", "prunevo.cli", *argv], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2 and fragment in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.strip().count("\n") == 0 and "pwned" not in proc.stdout


def test_throughput_options_reach_the_run_config():
    from prunevo.cli import parse_config
    from prunevo.fitness.execution import Execution

    config = parse_config(["evolve", "--ladder", "0.5,0.25", "--ladder-subset", "100", "--ladder-recal", "2",
                           "--batching", "fused", "--stack", "4", "--backend", "dask", "--address",
                           "tcp://scheduler:8786", "--n-jobs", "8"])
    assert config.ladder == (0.5, 0.25) and config.ladder_subset == 100 and config.ladder_recal == 2
    assert config.execution == Execution(n_jobs=8, backend="dask", address="tcp://scheduler:8786", device="cpu",
                                         batching="fused", stack=4)
    assert config.ladder_spec().rungs == 3 and config.execution.mode == "fused"
    assert parse_config(["evolve"]).ladder == () and parse_config(["evolve"]).ladder_spec() is None


@pytest.mark.parametrize("argv, check", [
    ([], "default"),
    (["--check-tasks", "none"], ()),
    (["--rescore-seeds", "0"], ()),  # nothing scores them
    (["--tasks", "lenet5@digits"], ()),  # your own tasks
    (["--check-tasks", "lenet5@digits:epochs=0"], ("lenet5@digits:epochs=0",)),
])
def test_the_default_run_carries_a_check_task_of_another_network_family(argv, check):
    from prunevo import EvolutionConfig
    from prunevo.cli import parse_config
    from prunevo.fitness.task_spec import DEFAULT_CHECK_TASKS, DEFAULT_TASKS, parse_task

    fitness_nets = {parse_task(t).model for t in DEFAULT_TASKS}
    assert all(parse_task(t).model not in fitness_nets for t in DEFAULT_CHECK_TASKS)
    expected = DEFAULT_CHECK_TASKS if check == "default" else check
    assert parse_config(["evolve", *argv]).check_tasks == expected
    if not argv:  # the library decides it, not the command line: the same default without it
        assert EvolutionConfig().check_tasks == DEFAULT_CHECK_TASKS


@pytest.mark.slow
def test_a_second_process_or_lock_on_a_run_directory_is_refused_and_a_killed_owner_frees_it(run_dir):
    import os
    import signal
    import socket

    from prunevo.errors import RunError
    from prunevo.runs.rundir import RunLock

    lock = RunLock(run_dir).acquire()  # this process holds the run, as a running evolution would
    try:
        for argv in (["evolve", "--run-dir", str(run_dir), "--resume", "--generations", "3"],
                     ["show", str(run_dir), "--rescore"]):
            proc = subprocess.run([sys.executable, "-m", "prunevo.cli", *argv], capture_output=True, text=True)
            assert proc.returncode == 2, proc.stderr
            assert f"is in use by process {os.getpid()}" in proc.stderr and proc.stderr.strip().count("\n") == 0
        with pytest.raises(RunError, match=f"is in use by process {os.getpid()}") as second:
            RunLock(run_dir).acquire()  # another lock in the same process is refused too: not reentrant
        assert "\n" not in str(second.value)
    finally:
        lock.release()
    RunLock(run_dir).acquire().release()
    # a process killed with SIGKILL while holding the lock: the OS frees it, nothing stale is left to detect
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from prunevo.runs.rundir import RunLock; "
                               f"lock = RunLock({str(run_dir)!r}).acquire(); print('held', flush=True); "
                               "time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunError, match=f"is in use by process {holder.pid}"):
            RunLock(run_dir).acquire()
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    # what the files say does not matter, only the OS lock: here they name a live process (a reused pid)
    (run_dir / ".lock").write_text(json.dumps({"host": socket.gethostname(), "pid": os.getppid()}))
    (run_dir / ".lock.owner").write_text(json.dumps({"host": socket.gethostname(), "pid": os.getppid()}))
    taken = RunLock(run_dir).acquire()
    assert json.loads((run_dir / ".lock.owner").read_text())["pid"] == os.getpid()
    taken.release()
    assert not (run_dir / ".lock.owner").exists()


@pytest.mark.slow
def test_export_rank_out_of_range(run_dir, capsys):
    assert main(["export", str(run_dir), "--rank", "99"]) == 2
    assert "out of range" in capsys.readouterr().err


COMMANDS = ["evolve", "show", "export", "score", "tasks", "criteria", "train", "apply", "compare", "benchmark"]


def _help(command: str, capsys) -> str:
    from prunevo.cli import build_parser

    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([command, "--help"])  # every help string renders (a stray % would raise here)
    assert exit_.value.code == 0
    return capsys.readouterr().out


def _options_without_help(text: str) -> list[str]:
    """Options listed in --help with no text: an option line ends at its name (or metavar) and the next line
    is another option, a group title or the end."""
    lines = text.splitlines()
    bare = []
    for i, line in enumerate(lines):
        if re.match(r"^  -", line) and len(re.split(r"\s{2,}", line.strip())) == 1:
            following = lines[i + 1] if i + 1 < len(lines) else ""
            if not re.match(r"^ {20,}\S", following):
                bare.append(line.strip())
    return bare


@pytest.mark.parametrize("command", COMMANDS)
def test_help_explains_every_option(command, capsys):
    text = _help(command, capsys)
    assert not _options_without_help(text), f"prunevo {command}: options without help: {_options_without_help(text)}"
    assert "(default: None)" not in text and "(default: MISSING" not in text


def test_options_are_grouped_as_users_look_for_them(capsys):
    text = _help("apply", capsys)
    titles = [line[:-1] for line in text.splitlines() if line and not line.startswith(" ") and line.endswith(":")]
    assert titles == ["positional arguments", "options", "run and seeds", "data and model", "pruning target",
                      "criterion and its statistics", "strategy and allocation",
                      "reconstruction (refit what removed channels fed, without training)", "training and fine-tune",
                      "latency",
                      "execution", "output"]  # positional: apply RUN_DIR
    assert _options_without_help("  --bare\n  --next  text\n") == ["--bare"]  # the helper finds a bare option


def test_help_defaults_are_the_config_defaults(capsys):
    """--help states each default as the dataclass holds it (one place), and an untouched option keeps it."""
    from prunevo.cli import parse_config

    lines = _help("apply", capsys).splitlines()

    def option_help(flag: str) -> str:  # the option's block of --help, joined
        start = next(i for i, line in enumerate(lines) if line.startswith(f"  {flag} "))
        end = next((i for i in range(start + 1, len(lines)) if not lines[i].startswith(" " * 5)), len(lines))
        return " ".join(" ".join(lines[start:end]).split())

    config = parse_config(["apply", "--model", "lenet5"])
    for flag, value in (("--epochs", config.finetune.epochs), ("--lr", config.finetune.lr),
                        ("--calibration-samples", config.calibration_samples), ("--cycles", config.cycles),
                        ("--max-layer-ratio", config.max_layer_ratio), ("--search-samples", config.search.samples),
                        ("--latency-repeats", config.latency.repeats), ("--stem", config.setup.stem)):
        shown = f"{value:g}" if isinstance(value, float) else str(value)
        assert option_help(flag).endswith(f"(default: {shown})"), option_help(flag)
    train = parse_config(["train", "--model", "lenet5"])
    assert (train.fit.epochs, train.fit.lr_schedule, train.output) == (10, "step", "base.pt")
    evolve_help = " ".join(_help("evolve", capsys).split())
    from prunevo import EvolutionConfig
    assert f"(default: {EvolutionConfig.population})" in evolve_help


@pytest.mark.parametrize("argv, fragment", [
    (["apply", "--model", "lenet5", "--target-macs", "0.5", "--channel-ratio", "0.3"], "not allowed with"),
    (["export", "run", "--format", "yaml"], "invalid choice: 'yaml'"),
    (["evolve", "--population", "many"], "invalid int value"),
])
def test_usage_errors_are_one_line_too(argv, fragment, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith("prunevo: error: ") and fragment in err
    assert err.strip().count("\n") == 0 and "--help" in err, err


def test_tasks_lists_the_syntax():
    assert main(["tasks"]) == 0


def test_criteria_lists_every_name_and_what_the_grammar_lacks(capsys):
    from prunevo.pruning.tp_criteria import TP_CRITERIA

    assert main(["criteria"]) == 0
    out = capsys.readouterr().out
    for name, spec in TP_CRITERIA.items():
        assert f"  {name} " in out and spec.cls in out
    assert out.count("cannot express it") == 3  # tp-taylor, tp-hessian and tp-obdc
    assert "square(l2(W)) + square(l2(Wn)) + square(gamma)" in out and "l1(W)" in out
    from prunevo.primitives.classic import CLASSIC_NOTES, CLASSIC_TEXT
    for name in CLASSIC_TEXT:  # every classic with its source
        assert f"  {name} " in out and CLASSIC_NOTES[name].split(" (")[0][:40] in out
    assert "GECCO 2022" in out and "Sun et al., ICLR 2024" in out


def test_output_piped_into_a_closed_reader_stops_quietly(monkeypatch, capsys):
    import os

    read_end, write_end = os.pipe()
    os.close(read_end)  # like `prunevo criteria | head -1` after head has exited
    closed = os.fdopen(write_end, "w", buffering=1)
    monkeypatch.setattr(sys, "stdout", closed)
    assert main(["criteria"]) == 141
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.slow
def test_resume_refuses_contradictions_and_applies_what_may_change(tmp_path, capsys):
    import json

    from dataclasses import replace

    from prunevo.errors import RunError
    from prunevo.evolve.run import evolve
    from prunevo.runs.result import saved_config

    run = str(tmp_path / "run")
    start = ["evolve", "--tasks", "lenet5@digits:epochs=0,pretrain=1", "--population", "4", "--generations", "1",
             "--rescore-seeds", "0", "--n-jobs", "1", "--elitism", "0", "--no-progress", "--run-dir", run]
    assert main(start) == 0
    capsys.readouterr()
    for typed, fragment in ((["--population", "6"], "--population (6; the run has 4)"),
                            (["--seed", "0", "--population", "48", "--tasks", "lenet5@digits"],
                             "--population (48; the run has 4); --tasks (lenet5@digits; the run has lenet5@digits:")):
        assert main(["evolve", "--resume", "--run-dir", run, *typed]) == 2
        err = capsys.readouterr().err.strip()
        assert fragment in err and "allowed on resume: --generations, --n-jobs" in err and len(err.splitlines()) == 1
    assert json.loads((tmp_path / "run" / "config.json").read_text())["population"] == 4  # untouched
    # options equal to the run's are fine; the ones that may change are applied, and said
    assert main(["evolve", "--resume", "--run-dir", run, "--population", "4", "--generations", "2", "--no-progress"]) == 0
    assert "resume: --generations 1 -> 2" in capsys.readouterr().out
    assert saved_config(tmp_path / "run").generations == 2
    # a resumed run only extends: fewer generations than it has run is refused, its config left as it was
    assert main(["evolve", "--resume", "--run-dir", run, "--generations", "1", "--no-progress"]) == 2
    assert "allowed --generations >= 2, got 1" in capsys.readouterr().err
    assert saved_config(tmp_path / "run").generations == 2
    # the library refuses the same way, naming parameters
    with pytest.raises(RunError, match=r"differs: seed 9 \(the run has 0\); allowed to change on resume: generations"):
        evolve(replace(saved_config(tmp_path / "run"), seed=9), run, resume=True, progress=False)
