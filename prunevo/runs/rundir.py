"""The files of a run directory; every write is atomic, so an interrupted run never leaves half a file.

    config.json         the EvolutionConfig
    checkpoint.json     population, hall of fame, Pareto front, fitness cache, log: enough to resume
    log.csv             one row per generation
    hall_of_fame.json   the best distinct formulas (text, simplified, SymPy, LaTeX, fitness per task)
    pareto.json         fitness vs complexity front
    baselines.json      fitness of each classic criterion and of random on the run's tasks
    fitness.png         best/median fitness per generation against the baselines
    .lock               locked by the process using the directory (see ``RunLock``)
    .lock.owner         that process's host and pid
"""
from __future__ import annotations

import csv
import io
import json
import os
import socket
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from prunevo.errors import RunError
from prunevo.utils import atomic_write_json, atomic_write_text

LOG_FIELDS = ["generation", "evaluations", "jobs", "selections", "new_selections", "redrawn", "rungs", "raced", "best",
              "hall_of_fame_best", "median", "mean", "valid", "mean_size", "cache_hit_rate", "evals_per_second",
              "selections_per_second", "seconds", "best_formula"]


class RunLock:
    """One process at a time per run directory: an OS lock (``filelock``) on ``.lock``.  The OS frees it when
    its process ends however it ends (``kill -9``, a crash), so a lock is never stale.  ``.lock.owner`` names
    the holder's host and pid, only for the message a second process gets.

    A second ``RunLock`` on the same directory in the same process is refused like another process: each
    ``RunLock`` opens its own lock file descriptor (``flock`` locks conflict between descriptors), and its
    ``FileLock`` is neither a per-path singleton nor per-thread, so ``release`` may come from any thread."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / ".lock"
        self.owner_path = Path(run_dir) / ".lock.owner"
        self._lock = FileLock(self.path, timeout=0, thread_local=False, is_singleton=False)

    @property
    def held(self) -> bool:
        return self._lock.is_locked

    def acquire(self) -> "RunLock":
        """Take the lock without waiting.  Raises RunError when another process (or another RunLock) holds it."""
        try:
            self._lock.acquire()
        except Timeout:
            raise RunError(f"{self.path.parent} is in use by {self._owner()}; wait for it to finish or stop it") \
                from None
        atomic_write_json(self.owner_path, {"host": socket.gethostname(), "pid": os.getpid()})
        return self

    def _owner(self) -> str:
        try:
            owner = json.loads(self.owner_path.read_text())
            return f"process {owner['pid']} on {owner['host']}"
        except (OSError, ValueError, TypeError, KeyError):
            return "another process"  # it has only just taken the lock and not yet written its name

    def release(self) -> None:
        if self.held:
            self.owner_path.unlink(missing_ok=True)  # before unlocking: never the next owner's file
            self._lock.release()


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
