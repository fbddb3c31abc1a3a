"""Where and how fitness jobs run: one frozen value passed down to the evaluator and its backend.

None of these settings changes a fitness value: jobs are pure functions of their inputs (``fitness.backends``)
and the fused batching equals the loop within floating-point tolerance (``fitness.jobs``).
"""
from __future__ import annotations

from dataclasses import dataclass

from prunevo.errors import PrunevoError
from prunevo.fitness.backends import BACKENDS
from prunevo.fitness.jobs import MODES

BATCHING = ("auto", *MODES)  # auto = fused on CUDA, loop on the CPU


@dataclass(frozen=True, kw_only=True)
class Execution:
    """Where fitness jobs run.  Results never depend on it (each job is a pure function of its inputs).

    Attributes:
        n_jobs: parallel workers.
        backend: ``loky`` (local processes), ``dask`` or ``ray``.
        address: a running scheduler or cluster (dask-jobqueue's, ``auto`` on a Ray node); None: start a local one.
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (CUDA when present; resolved when the config is made).
        batching: how a job scores its candidates: ``off``, ``loop``, ``fused`` (``stack`` candidates per vmapped
            pass) or ``auto`` (fused on CUDA, loop on the CPU).
        stack: candidates per fused pass, 1 to 1024.

    Raises:
        PrunevoError: a value outside the allowed ones.

    Example:
        >>> from prunevo import Execution
        >>> Execution(n_jobs=4).mode  # on the CPU
        'loop'
        >>> Execution(backend="mpi")
        Traceback (most recent call last):
        ...
        prunevo.errors.PrunevoError: unknown backend 'mpi'; allowed: loky, dask, ray
    """

    n_jobs: int = 2
    backend: str = "loky"
    address: str | None = None
    device: str = "cpu"
    batching: str = "auto"
    stack: int = 16

    def __post_init__(self) -> None:
        if self.device == "auto":  # frozen: resolved once, here, so a saved config says where jobs ran
            from prunevo.training.config import resolve_device

            object.__setattr__(self, "device", resolve_device("auto"))
        if self.n_jobs < 1:
            raise PrunevoError(f"{{param:n_jobs}} must be >= 1, got {self.n_jobs}")
        if self.backend not in BACKENDS:
            raise PrunevoError(f"unknown backend {self.backend!r}; allowed: {', '.join(BACKENDS)}")
        if self.batching not in BATCHING:
            raise PrunevoError(f"unknown batching {self.batching!r}; allowed: {', '.join(BATCHING)}")
        if not 1 <= self.stack <= 1024:
            raise PrunevoError(f"{{param:stack}} must be in [1, 1024], got {self.stack}")

    @property
    def mode(self) -> str:
        """The batching mode jobs use: ``batching`` with auto resolved for the device."""
        if self.batching != "auto":
            return self.batching
        return "fused" if self.device.startswith("cuda") else "loop"


SERIAL = Execution(n_jobs=1)  # one local worker: what an evaluator built without a run's settings uses
