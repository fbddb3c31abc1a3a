"""The dataset registry: one registration per dataset name, from which every list of names is derived.

Modelled on timm's ``register_model`` (timm/models/_registry.py): a decorator adds a loader under a name, and
the CLI's help, error messages, the fitness tasks' defaults and the tests read the registry, so coverage grows by
itself.  A name ending in ``:`` is a prefix that takes a parameter (``imagefolder:PATH``).

Example (``README.md``, "Adding a dataset")::

    @register_dataset("noise", classes=10, help="noise (random images)")
    def load_noise(name, data_root, channels, image_size, download, cache_dir):
        ...  # -> zoo.images.ImageData
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from prunevo.errors import DataError

# (name, data_root, channels, image_size, download, cache_dir) -> zoo.images.ImageData
Loader = Callable[[str, "str | os.PathLike | None", "int | None", "int | None", bool, "Path | None"], object]

# task defaults (``fitness.task_spec``) by kind of dataset: how aggressive a prune and how long a fine-tune
BUDGETS = ("digits", "grey", "colour")


@dataclass(frozen=True)
class DatasetSpec:
    """One registered dataset.

    Attributes:
        name: what ``--dataset`` and task specs write (``mnist``); a name ending in ``:`` is a prefix whose rest
            is a parameter (``imagefolder:`` takes a path).
        load: the loader, ``load(name, data_root, channels, image_size, download, cache_dir) -> ImageData``.
        classes: the number of classes, or None when the data decides (an image folder).
        help: the dataset in ``--help`` (``"svhn (from --data-root)"``).
        budget: which task defaults apply (``BUDGETS``: digits, grey, colour).
        splits: for datasets fitness can hold whole in memory, ``splits(name, data_root, cache_dir) ->
            zoo.datasets.Splits``; None otherwise.  These also have the short task names (``digits-vgg``).
        parameter: the parameter's placeholder in listings (``PATH``), for prefix names.
    """

    name: str
    load: Loader
    classes: int | None
    help: str
    budget: str = "colour"
    splits: Callable | None = None
    parameter: str = ""

    @property
    def shown(self) -> str:
        """The name as listings show it: ``imagefolder:PATH`` for a prefix."""
        return self.name + self.parameter


_REGISTRY: dict[str, DatasetSpec] = {}


def register_dataset(name: str, *, classes: int | None, help: str, budget: str = "colour",
                     splits: Callable | None = None, parameter: str = "") -> Callable[[Loader], Loader]:
    """Register the decorated function as the loader of ``name``.

    Args:
        name: the dataset's name; end it with ``:`` for a prefix that takes a parameter (give ``parameter``).
        classes: its number of classes (None: decided by the data).
        help: how ``--help`` lists it.
        budget: the task defaults it gets, one of ``BUDGETS``.
        splits: a loader of its whole in-memory splits, for datasets fitness reads whole.
        parameter: the placeholder of a prefix's parameter (``PATH``).

    Returns:
        A decorator that registers the loader and returns it unchanged.

    Raises:
        ValueError: a name already registered, an unknown budget, or a prefix without its parameter.
    """
    if name in _REGISTRY:
        raise ValueError(f"dataset {name!r} is already registered")
    if budget not in BUDGETS:
        raise ValueError(f"unknown budget {budget!r}; allowed: {', '.join(BUDGETS)}")
    if name.endswith(":") != bool(parameter):
        raise ValueError("a prefix name (ending in ':') needs its parameter's placeholder, and only a prefix has one")

    def add(load: Loader) -> Loader:
        _REGISTRY[name] = DatasetSpec(name, load, classes, help, budget, splits, parameter)
        return load

    return add


def unregister_dataset(name: str) -> None:
    """Remove ``name`` from the registry (for tests and plugins that register temporarily)."""
    _REGISTRY.pop(name, None)


@contextmanager
def registered_dataset(name: str, load: Loader, **facts) -> Iterator[DatasetSpec]:
    """``register_dataset`` for the duration of a ``with`` block."""
    register_dataset(name, **facts)(load)
    try:
        yield _REGISTRY[name]
    finally:
        unregister_dataset(name)


def dataset_specs() -> list[DatasetSpec]:
    """Every registered dataset, in registration order."""
    return list(_REGISTRY.values())


def dataset_names() -> list[str]:
    """Every registered name as listings show it (``imagefolder:PATH``)."""
    return [spec.shown for spec in _REGISTRY.values()]


def find_dataset(name: str) -> DatasetSpec | None:
    """The spec of ``name`` (a prefix's for ``imagefolder:/some/path``), or None."""
    if name in _REGISTRY and not name.endswith(":"):
        return _REGISTRY[name]
    prefix = name.split(":", 1)[0] + ":"
    return _REGISTRY.get(prefix) if ":" in name else None


def dataset_spec(name: str) -> DatasetSpec:
    """The spec of ``name``.  Raises DataError naming the allowed datasets."""
    spec = find_dataset(name)
    if spec is None:
        raise DataError(f"unknown dataset {name!r}; allowed: {', '.join(dataset_names())}")
    return spec


def datasets_help() -> str:
    """The registered datasets as ``--help`` lists them: ``a, b, ..., or z``."""
    helps = [spec.help for spec in _REGISTRY.values()]
    return ", ".join(helps[:-1]) + ", or " + helps[-1] if len(helps) > 1 else "".join(helps)
