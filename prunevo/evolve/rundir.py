"""The files of a run directory; every write is atomic, so an interrupted run never leaves half a file.

    config.json         the EvolutionConfig
    checkpoint.json     population, hall of fame, Pareto front, fitness cache, log: enough to resume
    log.csv             one row per generation
    hall_of_fame.json   the best distinct formulas (text, simplified, SymPy, LaTeX, fitness per task)
    pareto.json         fitness vs complexity front
    baselines.json      fitness of each classic criterion and of random on the run's tasks
    fitness.png         best/median fitness per generation against the baselines
    .lock               the host and pid of the process using the directory (see ``RunLock``)
"""
from __future__ import annotations

import csv
import io
import json
import os
import socket
from pathlib import Path
from typing import Any

from prunevo.errors import RunError
from prunevo.utils import atomic_write_json, atomic_write_text

CHECKPOINT_VERSION = 1
LOG_FIELDS = ["generation", "evaluations", "jobs", "selections", "new_selections", "redrawn", "rungs", "best", "median",
              "mean", "valid", "mean_size", "cache_hit_rate", "evals_per_second", "selections_per_second", "seconds",
              "best_formula"]


class RunLock:
    """One process at a time per run directory: ``.lock`` names the owner's host and pid.  A lock whose
    process is gone (killed, crashed, machine rebooted) is stale and taken over; a live owner is a clear
    error.  A lock from another host cannot be checked and is treated as live."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / ".lock"
        self.held = False

    def acquire(self) -> "RunLock":
        me = {"host": socket.gethostname(), "pid": os.getpid()}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                if owner is not None and _alive(owner):
                    raise RunError(f"{self.path.parent} is in use by process {owner.get('pid')} on {owner.get('host')}; "
                                   f"wait for it to finish or stop it (if no such process is running, delete "
                                   f"{self.path})") from None
                self.path.unlink(missing_ok=True)  # stale: its process is gone
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.held = True
            return self
        raise RunError(f"cannot lock {self.path.parent}: {self.path} keeps reappearing")

    def _owner(self) -> dict | None:
        try:
            owner = json.loads(self.path.read_text())
            return owner if isinstance(owner, dict) else None
        except (OSError, ValueError):
            return None  # unreadable or half-written by a process killed while writing it: stale

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False


def _alive(owner: dict) -> bool:
    if owner.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(owner.get("pid", -1)), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    except (TypeError, ValueError, OverflowError):
        return False
    return True


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
