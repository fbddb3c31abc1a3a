"""Shared fixtures: small prepared tasks on the embedded digits data, base nets cached per session."""
from __future__ import annotations

import os

import pytest
import torch

from prunevo.fitness.tasks import prepare_task
from tests.helpers import quick_task


# the longest tests (about 100 s each) first: started last, one would leave the other xdist worker idle at the end
FIRST = ("test_reproducible.py", "test_notebook.py", "test_winners.py", "test_saved_models.py")


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: FIRST.index(item.path.name) if item.path.name in FIRST else len(FIRST))


def pytest_configure(config):
    # Under pytest-xdist (make test) each worker gets its share of the cores, and so do the processes its tests
    # start: two torch processes that each use every core thrash.  Fitness never depends on it (jobs pin threads).
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        threads = max(1, (os.cpu_count() or 1) // int(workers))
        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("prunevo-cache")


@pytest.fixture(autouse=True)
def _isolated_cache(cache_dir, monkeypatch):
    # never touch the user's cache from tests
    monkeypatch.setenv("PRUNEVO_CACHE", str(cache_dir))


@pytest.fixture(scope="session")
def prepared_tasks(cache_dir):
    return [prepare_task(quick_task("digits-vgg"), cache_dir=cache_dir),
            prepare_task(quick_task("digits-resnet"), cache_dir=cache_dir)]


@pytest.fixture(scope="session")
def resnet_stats(prepared_tasks):
    return prepared_tasks[1]
