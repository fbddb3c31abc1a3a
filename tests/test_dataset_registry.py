"""The dataset registry (zoo.registry): every entry is complete, every list of names derives from it, and one
registration makes a dataset usable by name (the README's "Adding a dataset" block, run as written)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from prunevo.cli_transfer import DATASET_HELP
from prunevo.errors import DataError, PrunevoError
from prunevo.fitness.task_spec import BUDGET_DEFAULTS, available_tasks, dataset_defaults, parse_task
from prunevo.transfer.strategies import RUNNERS
from prunevo.transfer.variants import STRATEGIES
from prunevo.zoo import in_memory_datasets, load_dataset
from prunevo.zoo.images import load_image_data, tensor_image_data
from prunevo.zoo.registry import (BUDGETS, dataset_names, dataset_spec, dataset_specs, datasets_help, find_dataset,
                                  register_dataset, registered_dataset, unregister_dataset)

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.mark.parametrize("spec", dataset_specs(), ids=lambda s: s.shown)
def test_every_dataset_has_every_field(spec):
    assert callable(spec.load)
    assert spec.help.startswith(spec.shown)
    assert spec.budget in BUDGETS and set(BUDGET_DEFAULTS) == set(BUDGETS)
    assert (spec.classes is None) == spec.name.endswith(":")  # only a folder's data decides its classes
    assert spec.splits is None or callable(spec.splits)
    name = spec.name + "x" if spec.name.endswith(":") else spec.name
    assert find_dataset(name) is spec
    assert dataset_defaults(name) is BUDGET_DEFAULTS[spec.budget]


def test_lists_of_names_derive_from_the_registry():
    names = dataset_names()
    assert names == [s.shown for s in dataset_specs()]
    assert DATASET_HELP == datasets_help() and all(s.help in DATASET_HELP for s in dataset_specs())
    assert in_memory_datasets() == [s.name for s in dataset_specs() if s.splits is not None]
    assert set(in_memory_datasets()) <= set(names)
    with pytest.raises(DataError, match=re.escape("allowed: " + ", ".join(names))):
        load_image_data("no-such-data")
    with pytest.raises(DataError, match=re.escape("allowed: " + ", ".join(in_memory_datasets()))):
        load_dataset("cifar10")  # registered, but not one fitness holds whole
    aliases = available_tasks()  # short task names: one per in-memory dataset and small net
    assert aliases and all(any(a.startswith(d + "-") for d in in_memory_datasets()) for a in aliases)
    assert {d for d in in_memory_datasets() if any(a.startswith(d + "-") for a in aliases)} == set(in_memory_datasets())


def test_strategies_derive_from_the_runners():
    assert STRATEGIES == tuple(RUNNERS)


def test_registration_is_checked():
    with pytest.raises(ValueError, match="already registered"):
        register_dataset("digits", classes=10, help="digits")
    with pytest.raises(ValueError, match="budget"):
        register_dataset("x-data", classes=10, help="x-data", budget="huge")
    with pytest.raises(ValueError, match="prefix"):
        register_dataset("x-folder:", classes=None, help="x-folder:")


def _toy(name, data_root, channels, image_size, download, cache_dir):
    gen = torch.Generator().manual_seed(1)
    split = lambda n: (torch.randn(n, 1, 8, 8, generator=gen), torch.arange(n) % 4)  # noqa: E731
    return tensor_image_data(name, 4, (split(40), split(20), split(20)), channels, image_size, flip=False)


def test_one_registration_makes_a_dataset_usable_by_name():
    with registered_dataset("toy4", _toy, classes=4, help="toy4 (random grey 8 px)", budget="digits") as spec:
        assert "toy4" in dataset_names() and "toy4 (random grey 8 px)" in datasets_help()
        data = load_image_data("toy4", channels=3, image_size=16)
        assert data.num_classes == 4 and data.input_shape == (3, 16, 16)
        assert data.train[0][0].shape == (3, 16, 16)
        task = parse_task("small-vgg@toy4:epochs=0")
        assert task.dataset == "toy4" and task.prune.ratio == BUDGET_DEFAULTS["digits"]["prune"].ratio
        assert dataset_spec("toy4") is spec
    assert "toy4" not in dataset_names()  # gone after the block: other tests never see it
    with pytest.raises(DataError, match="unknown dataset 'toy4'"):
        load_image_data("toy4")


def _readme_block(title: str) -> str:
    section = README.read_text().split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, flags=re.DOTALL).group(1)


def test_readme_adding_a_dataset_runs_as_written():
    code = _readme_block("Adding a dataset")
    try:
        exec(compile(code, "README.md: Adding a dataset", "exec"), {})
        assert "noise3" in dataset_names()
        with pytest.raises(PrunevoError):
            parse_task("small-vgg@noise3:epochs=-1")  # the task options still check their values
    finally:
        unregister_dataset("noise3")
    assert "noise3" not in dataset_names()
