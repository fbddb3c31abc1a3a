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
    """``n_jobs`` parallel workers of ``backend`` (loky = local processes, dask, ray; ``address`` of a running
    scheduler or cluster, None = start a local one), each running fitness jobs on ``device`` and scoring a job's
    candidates as ``batching`` says (off, loop, fused with ``stack`` candidates per vmapped pass, auto);
    ``device`` auto = CUDA when present.

    Raises PrunevoError for a value outside the allowed ones.
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
