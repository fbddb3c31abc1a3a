"""Same config and seed, same run: across processes (different PYTHONHASHSEED), worker counts and resumes."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# a small evolution on the cheap test tasks; argv: run_dir n_jobs [stop_after_generation] [--resume]
SCRIPT = r"""
import sys
from prunevo.fitness.execution import Execution
from prunevo.runs.config import EvolutionConfig
from prunevo.evolve.run import evolve
from prunevo.fitness.tasks import prepare_task
from tests.helpers import quick_task

run_dir, n_jobs = sys.argv[1], int(sys.argv[2])
stop = int(sys.argv[3]) if len(sys.argv) > 3 and sys.argv[3] != "-" else None
resume = "--resume" in sys.argv
prepared = [prepare_task(quick_task("digits-vgg")), prepare_task(quick_task("digits-resnet"))]
config = EvolutionConfig(tasks=("digits-vgg", "digits-resnet"), population=10, generations=3,
                         execution=Execution(n_jobs=n_jobs), seed=5,
                         elitism=1, hall_of_fame_size=8, random_baseline_seeds=1, rescore_seeds=0, race=3,
                         race_draws=2)
# no re-scoring: it is a function of the hall of fame and its own seeds, and test_winners runs it twice; racing
# on: its draws, caches and raced means must survive workers, processes and a kill -9

def interrupt(generation):
    if generation == stop:
        raise SystemExit(0)

evolve(config, run_dir, resume=resume, progress=False, prepared=prepared, on_generation=interrupt)
"""


def _popen(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", SCRIPT, *args], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def _run(tmp_path: Path, hash_seed: int, *args: str) -> None:
    env = {**os.environ, "PYTHONHASHSEED": str(hash_seed)}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, *args], cwd=REPO, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.slow
def test_same_seed_same_hall_of_fame_across_processes_workers_resumes_and_kill_9(tmp_path, cache_dir):
    _run(tmp_path, 1, str(tmp_path / "a"), "1")
    _run(tmp_path, 2, str(tmp_path / "b"), "2")
    hall = [(tmp_path / run / "hall_of_fame.json").read_bytes() for run in ("a", "b")]
    assert hall[0] == hall[1]
    # the baselines too, under the tasks' allocation and under global allocation
    baselines = [(tmp_path / run / "baselines.json").read_bytes() for run in ("a", "b")]
    assert baselines[0] == baselines[1] and b"(global)" in baselines[0]
    # a run killed mid-generation, resumed in another process with another hash seed and 2 workers
    # (test_evolve covers the resume after a clean stop, in one process)
    _kill_9_mid_generation_then_resume(tmp_path, hall[0], (tmp_path / "a" / "pareto.json").read_bytes())


def _kill_9_mid_generation_then_resume(tmp_path: Path, whole: bytes, pareto: bytes) -> None:
    """A real process killed with SIGKILL after its first checkpoints, in the middle of a generation, then
    resumed in a new process: the same hall of fame as the uninterrupted run."""
    import json
    import signal
    import time

    killed = tmp_path / "killed"
    proc = _popen(str(killed), "1")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        try:  # checkpoints are written atomically: a file that exists is whole
            if json.loads((killed / "checkpoint.json").read_text())["generation"] >= 1:
                break
        except FileNotFoundError:
            pass
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    generation = json.loads((killed / "checkpoint.json").read_text())["generation"]
    assert 1 <= generation < 3
    _run(tmp_path, 5, str(killed), "2", "-", "--resume")
    assert (killed / "hall_of_fame.json").read_bytes() == whole
    assert (killed / "pareto.json").read_bytes() == pareto
    assert not (killed / ".lock.owner").exists()  # the resumed run took the killed one's lock and released it

