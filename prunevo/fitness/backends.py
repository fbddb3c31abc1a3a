"""Where fitness jobs run: joblib's process pool here (``loky``), or a Dask or Ray cluster, all through
joblib's ``parallel_config`` so that the evaluator has one code path.

``dask`` connects to a running scheduler (``address``, e.g. from dask-jobqueue's ``SLURMCluster``) or starts a
local cluster with one single-threaded worker per job; ``ray`` connects to a running cluster
(``address="auto"`` on a Ray node) or starts a local one.  Fitness does not depend on the backend: every
job is a pure function of its inputs.  Operators and operands registered in this process beyond prunevo's own
(README, "Adding an operator") travel with the jobs, so workers read the same formulas.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import warnings
from typing import Any, Callable, Iterable

from joblib import Parallel, delayed, parallel_config

from prunevo.errors import PrunevoError
from prunevo.primitives.grammar import Extensions, extensions, install

BACKENDS = ("loky", "dask", "ray")

# loky replaces a worker whose memory grew past 300 MB between two jobs (a torch worker always does) and says
# so with a generic warning that reads like a crash (joblib#883, loky#641); no job is lost, so users never see it
warnings.filterwarnings("ignore", message="A worker stopped while some jobs were given to the executor",
                        category=UserWarning)


def _with_extensions(extra: Extensions, function: Callable, *args: Any) -> Any:
    install(extra)
    return function(*args)


class Backend:
    """A started backend; ``map`` runs jobs on it in order, ``close`` releases what it started."""

    def __init__(self, name: str = "loky", n_jobs: int = 1, address: str | None = None):
        if name not in BACKENDS:
            raise PrunevoError(f"unknown backend {name!r}; allowed: {', '.join(BACKENDS)}")
        self.name, self.n_jobs, self.address = name, n_jobs, address
        self._client: Any = None
        self._cluster: Any = None
        self._ray_started = False

    def _start(self) -> None:
        if self.name == "dask" and self._client is None:
            try:
                import dask
                from dask.distributed import Client, LocalCluster
            except ImportError:
                raise PrunevoError("{param:backend=dask} needs Dask: pip install 'prunevo[dask]'") from None
            logging.getLogger("distributed").setLevel(logging.ERROR)  # no scheduler/worker chatter in reports
            if self.address:
                self._client = Client(self.address)
            else:
                # Dask starts workers with MALLOC_TRIM_THRESHOLD_=65536 to hand memory back to the OS; torch
                # then pays page faults on every tensor allocation and a fitness job runs 2-3x slower
                # (measured: docs/BENCHMARKS.md).  Workers of this short-lived cluster keep glibc's default.
                with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
                    self._cluster = LocalCluster(n_workers=self.n_jobs, threads_per_worker=1, processes=True,
                                                 dashboard_address=None, scheduler_kwargs={"dashboard": False},
                                                 silence_logs=logging.ERROR)
                self._client = Client(self._cluster)
        elif self.name == "ray" and not self._ray_started:
            try:
                import ray
                from ray.util.joblib import register_ray
            except ImportError:
                raise PrunevoError("{param:backend=ray} needs Ray: pip install 'prunevo[ray]'") from None
            if not ray.is_initialized():
                quiet = dict(log_to_driver=False, logging_level=logging.ERROR)
                if self.address:
                    ray.init(address=self.address, **quiet)
                else:
                    ray.init(num_cpus=self.n_jobs, include_dashboard=False, **quiet)
                self._ray_started = True
            register_ray()
            logging.getLogger("ray").setLevel(logging.ERROR)  # its joblib pool warns about an unused argument

    def map(self, function: Callable, calls: Iterable[tuple], shared: list | None = None) -> list:
        """``function(*args)`` for each tuple of ``calls``, in order.  ``shared`` are objects that many calls
        take as an argument (a task's data and weights): sent to each worker once per ``map``, not once per
        call (Dask scatters them; loky memory-maps their large arrays)."""
        calls = list(calls)
        if self.name == "loky" and (self.n_jobs == 1 or len(calls) <= 1):
            return [function(*args) for args in calls]  # no pool for serial work
        extra = extensions()
        if extra:  # workers imported prunevo only: give them the operators and operands registered here
            function = functools.partial(_with_extensions, extra, function)
        self._start()
        options = {"scatter": list(shared)} if self.name == "dask" and shared else {}
        with parallel_config(backend=self.name, n_jobs=self.n_jobs if self.name == "loky" else -1, **options):
            return Parallel()(delayed(function)(*args) for args in calls)

    def close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            if self._cluster is not None:
                with contextlib.suppress(Exception):
                    self._cluster.close()
            self._client = self._cluster = None
        if self._ray_started:
            import ray

            ray.shutdown()
            self._ray_started = False
