"""Shared fixtures: small prepared tasks on the embedded digits data, base nets cached per session."""
from __future__ import annotations

import os

import pytest
import torch

from prunevo.fitness.pretrain import PretrainRecipe
from prunevo.fitness.task_spec import make_task
from prunevo.fitness.tasks import prepare_task
from prunevo.training import FitConfig
from prunevo.pruning.ranking import PruneSpec


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


def quick_task(name: str, **overrides):
    """A cheap variant of a task: short pretraining and fine-tuning."""
    defaults = dict(
        prune=PruneSpec(ratio=0.5),
        finetune=FitConfig(epochs=0.25, lr=0.02, batch_size=64, lr_schedule="cosine"),
        pretrain=PretrainRecipe(FitConfig(epochs=2, lr=0.05, batch_size=64, lr_schedule="cosine")),
        calibration_per_class=8,
    )
    defaults.update(overrides)
    return make_task(name, **defaults)


@pytest.fixture(scope="session")
def prepared_tasks(cache_dir):
    return [prepare_task(quick_task("digits-vgg"), cache_dir=cache_dir),
            prepare_task(quick_task("digits-resnet"), cache_dir=cache_dir)]


@pytest.fixture(scope="session")
def resnet_stats(prepared_tasks):
    return prepared_tasks[1]


@pytest.fixture
def rng():
    return torch.Generator().manual_seed(0)
