"""The files of a run directory; every write is atomic, so an interrupted run never leaves half a file.

    config.json         the EvolutionConfig
    checkpoint.json     population, hall of fame, Pareto front, fitness cache, log: enough to resume
    log.csv             one row per generation
    hall_of_fame.json   the best distinct formulas (text, simplified, SymPy, LaTeX, fitness per task)
    pareto.json         fitness vs complexity front
    baselines.json      fitness of each classic criterion and of random on the run's tasks
    fitness.png         best/median fitness per generation against the baselines
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from prunevo.errors import RunError
from prunevo.utils import atomic_write_json, atomic_write_text

CHECKPOINT_VERSION = 1
LOG_FIELDS = ["generation", "evaluations", "jobs", "selections", "new_selections", "redrawn", "rungs", "best", "median",
              "mean", "valid", "mean_size", "cache_hit_rate", "evals_per_second", "selections_per_second", "seconds",
              "best_formula"]


def read_json(path: Path, what: str) -> Any:
    if not path.exists():
        raise RunError(f"{path} not found: not a prunevo run directory (no {what})")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunError(f"{path} is corrupt ({what} is not valid JSON: {exc})") from None


def write_log(path: Path, rows: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=LOG_FIELDS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def write_checkpoint(run_dir: Path, state: dict) -> None:
    atomic_write_json(run_dir / "checkpoint.json", {"version": CHECKPOINT_VERSION, **state})


def read_checkpoint(run_dir: Path) -> dict:
    state = read_json(run_dir / "checkpoint.json", "checkpoint")
    if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION:
        raise RunError(f"{run_dir / 'checkpoint.json'} has an unknown format (expected version {CHECKPOINT_VERSION})")
    required = {"generation", "population", "hall_of_fame", "pareto", "cache", "log", "baselines"}
    missing = required - set(state)
    if missing:
        raise RunError(f"{run_dir / 'checkpoint.json'} is corrupt: missing {', '.join(sorted(missing))}")
    return state
