"""Plain helpers shared by several test files (fixtures live in conftest.py)."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from prunevo.transfer.setup import Setup
from prunevo.fitness.execution import SERIAL
from prunevo.runs.config import EvolutionConfig
from prunevo.fitness.pretrain import PretrainRecipe
from prunevo.fitness.task_spec import make_task
from prunevo.pruning.ranking import PruneSpec
from prunevo.training import FitConfig


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


def evolve_config(generations: int, **kw) -> EvolutionConfig:
    """A small evolution on the two cheap digits tasks (the ``prepared_tasks`` fixture); its baselines under the
    tasks' own allocation only (tests/test_allocations.py covers the others), no racing unless asked
    (tests/test_racing.py and tests/test_reproducible.py race)."""
    return EvolutionConfig(tasks=("digits-vgg", "digits-resnet"), population=8, generations=generations,
                           execution=SERIAL, seed=3, elitism=1, hall_of_fame_size=5, random_baseline_seeds=2,
                           **{"rescore_seeds": 0, "baseline_allocations": (), "race": 0, **kw})


def randomize_batchnorm(model: nn.Module, seed: int = 0, running_mean: bool = False) -> nn.Module:
    """Random BatchNorm weights (and running means if asked): fresh BatchNorm layers have gamma = 1, which no
    criterion can rank.  Returns the model."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
                if running_mean:
                    m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
    return model


def session_for(model: str, **overrides):
    """A transfer session on fake data: MACs target 0.5, no fine-tuning, no latency, BatchNorm randomized."""
    from prunevo.transfer.config import TransferConfig
    from prunevo.transfer.session import TransferSession

    settings = dict(setup=Setup(model=model, dataset="fakedata"), target_macs=0.5, calibration_samples=20,
                    finetune=FitConfig(epochs=0.0), latency=None)
    settings.update(overrides)
    session = TransferSession(TransferConfig(**settings))
    randomize_batchnorm(session.model)
    return session


def write_image_folder(root, classes=("cat", "dog", "owl"), per_class=8, size=40, splits=("train",)):
    """An ImageFolder tree of PNGs under ``root``: one folder per split and class, each class a shade apart."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in splits:
        for k, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 60, (size, size, 3), dtype=np.uint8) + np.uint8(60 * k)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root
