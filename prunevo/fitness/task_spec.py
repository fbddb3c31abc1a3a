"""Fitness tasks from text: ``MODEL@DATASET[:key=value,...]``.

``MODEL`` is any name ``prunevo apply --model`` accepts (``small-vgg``, ``lenet5``, ``resnet20``,
``resnet18``, ``module:function``...) and ``DATASET`` any dataset it reads (``digits``, ``mnist``,
``fashion-mnist``, ``cifar10``, ``imagefolder:PATH``, ``fakedata``...).  Options (see ``OPTIONS``) set the
prune target, the allocation, the fine-tune budget, the subset sizes, the image size and the weight.
Defaults come from the dataset's budget (``BUDGET_DEFAULTS``); run-wide overrides (``TaskOverrides``) come next,
and a task's own options last.  The names of earlier versions (``digits-vgg``...) are aliases.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from prunevo.errors import PrunevoError
from prunevo.fitness.data import HOLDOUT_MAX
from prunevo.fitness.pretrain import PretrainRecipe
from prunevo.fitness.tasks import RECAL_BATCHES, Task
from prunevo.pruning.allocation import ALLOCATIONS, RANKING_OF, SearchSpec, check_allocation
from prunevo.pruning.ranking import REDUCTIONS, PruneSpec
from prunevo.training import FitConfig
from prunevo.zoo.datasets import in_memory_datasets
from prunevo.zoo.models import STEMS, is_model_file
from prunevo.zoo.registry import find_dataset

# The default fitness (what `make run` evolves on; embedded data only), chosen by rank fidelity per CPU-second
# (benchmarks/fidelity.py, docs/BENCHMARKS.md "Fidelity per regime"): of the proxies a fresh machine can
# build, CIFAR ResNet-20 on the digits upsampled to 32 px, pruned one-shot to 25% of the MACs (BatchNorm
# re-estimated on one batch of 256 images), lost least on the one-shot references at 25% when evolution
# keeps its best criteria (held-out networks and data: ResNet-20/56, VGG, MobileNetV2 on Fashion-MNIST and
# Imagenette-32), at 0.7 CPU-s per evaluation.  At 50% of the MACs the same net ranked the panel as well but
# its best criteria tie near the unpruned accuracy (nothing left to select on); the 8 px nets of earlier
# versions ranked criteria less well and their best lost more.
DEFAULT_TASKS = ("resnet20@digits:size=32,macs=0.25,epochs=0,recal=1",)
# The default check task, never a fitness task: another network family (VGG) at another input size (8 px),
# 75% of its channels removed; its paired verdict tells a new user whether the winner transfers beyond its
# fitness task.
TASK_SYNTAX_HELP = ("each MODEL@DATASET[:key=value,...] with any model and dataset that 'prunevo apply' accepts "
                    "(lenet5@mnist, small-vgg@imagefolder:PATH:size=32, resnet20@fashion-mnist:macs=0.5,epochs=1,"
                    "train=4000,val=2000,weight=2), or a short name such as digits-vgg; 'prunevo tasks' lists the "
                    "options and defaults")
DEFAULT_CHECK_TASKS = ("small-vgg@digits:epochs=0,recal=1",)
ALIAS_NETS = {"vgg": "small-vgg", "resnet": "small-resnet", "lenet5": "lenet5", "resnet20": "resnet20"}


def _defaults(prune_ratio: float, finetune: FitConfig, pretrain: FitConfig, image_size: int | None = None) -> dict:
    return dict(prune=PruneSpec(ratio=prune_ratio), finetune=finetune, pretrain=PretrainRecipe(pretrain),
                image_size=image_size)


# Budgets per kind of dataset: aggressive enough that criteria differ, short enough for a laptop.
_DIGITS = _defaults(0.75, FitConfig(epochs=0.5, lr=0.02, batch_size=64, lr_schedule="cosine"),
                    FitConfig(epochs=40, lr=0.05, batch_size=64, weight_decay=1e-3, lr_schedule="cosine"))
_MNIST = _defaults(0.75, FitConfig(epochs=1.0, lr=0.02, batch_size=128, max_samples=4000, lr_schedule="cosine"),
                   FitConfig(epochs=2, lr=0.05, batch_size=128, lr_schedule="cosine"))
_COLOUR = _defaults(0.5, FitConfig(epochs=1.0, lr=0.02, batch_size=128, max_samples=4000, lr_schedule="cosine"),
                    FitConfig(epochs=15, lr=0.05, batch_size=128, lr_schedule="cosine"), image_size=32)
BUDGET_DEFAULTS = {"digits": _DIGITS, "grey": _MNIST, "colour": _COLOUR}  # one per zoo.registry.BUDGETS


def dataset_defaults(dataset: str) -> dict:
    """Task defaults for a dataset, by the budget it registered (``zoo.registry``): digits and the MNISTs have
    their own, colour images (and names not registered, which fail later with the allowed ones) share one (32 px)."""
    spec = find_dataset(dataset)
    return BUDGET_DEFAULTS[spec.budget if spec is not None else "colour"]


def alias_datasets() -> list[str]:
    """The datasets with short task names (``digits-vgg``): those fitness holds whole in memory."""
    return in_memory_datasets()


@dataclass(frozen=True)
class TaskOverrides:
    """Settings applied to every task of a run, for a task option its spec does not give.

    None keeps each task's default; a task's own options (``MODEL@DATASET:key=value``) win over these.

    Attributes:
        prune_ratio: share of channels removed, in [0, 1) (the ``ratio=`` option).
        ranking: ``layerwise`` or ``global`` (``pruning.ranking.PruneSpec.ranking``).
        group_reduction: how coupled layers' scores combine: ``mean``, ``sum`` or ``max``.
        finetune_epochs: epochs of fine-tuning after pruning (0: one-shot, BatchNorm re-estimation only).
        allocation: ``uniform``, ``global`` or ``random-search`` (at the uniform ranking's MACs).
        reconstruct: refit the layers that read removed channels before BatchNorm is re-estimated (the
            ``reconstruct=1`` option).

    Raises:
        PrunevoError: when a config builds its tasks with a value out of range or unknown (the config's
            construction validates them, before anything is trained).

    Example:
        >>> from prunevo import EvolutionConfig, TaskOverrides
        >>> config = EvolutionConfig(overrides=TaskOverrides(allocation="global", finetune_epochs=1))
        >>> task = config.task_list()[0]  # the default task says epochs=0 itself, which wins
        >>> task.allocation, task.finetune.epochs
        ('global', 0.0)
    """

    prune_ratio: float | None = None
    ranking: str | None = None  # layerwise | global (PruneSpec.ranking; "selection" in older runs' config.json)
    group_reduction: str | None = None
    finetune_epochs: float | None = None
    allocation: str | None = None  # uniform | global | random-search (at the uniform ranking's MACs)
    reconstruct: bool | None = None  # refit the layers that read removed channels (pruning.reconstruct)

    @classmethod
    def from_json(cls, data: dict) -> "TaskOverrides":
        """Overrides as a run's config.json stores them (older runs name ``ranking`` ``selection``)."""
        data = dict(data)
        if "selection" in data:
            data.setdefault("ranking", data.pop("selection"))
        return cls(**data)


def _number(kind: type, low: float, high: float | None = None) -> Callable[[str, str], float]:
    def parse(key: str, text: str):
        try:
            value = kind(text)
        except ValueError:
            kind_word = "an integer" if kind is int else "a number"
            raise PrunevoError(f"task option {key}={text!r} is not {kind_word}") from None
        if value < low or (high is not None and value > high):
            bound = f"{low} <= {key}" + (f" <= {high}" if high is not None else "")
            raise PrunevoError(f"task option {key}={text} is out of range; allowed: {bound}")
        return value
    return parse


def _path(key: str, text: str) -> str:
    if not text:
        raise PrunevoError(f"task option {key}= needs a file path")
    return text


def _choice(*allowed: str) -> Callable[[str, str], str]:
    def parse(key: str, text: str) -> str:
        if text not in allowed:
            raise PrunevoError(f"task option {key}={text!r} is unknown; allowed: {', '.join(allowed)}")
        return text
    return parse


# key -> (parser, help)
OPTIONS: dict[str, tuple[Callable[[str, str], object], str]] = {
    "macs": (_number(float, 0.01, 1.0), "share of the MACs kept (e.g. 0.5); replaces ratio"),
    "ratio": (_number(float, 0.0, 0.99), "share of the channels removed"),
    "allocation": (_choice(*ALLOCATIONS),
                   "uniform | global (the formula also sets each layer's width) | random-search"),
    "epochs": (_number(float, 0.0), "fine-tune epochs (fractions allowed)"),
    "lr": (_number(float, 1e-6), "fine-tune learning rate"),
    "batch": (_number(int, 2), "fine-tune batch size"),
    "train": (_number(int, 2), "fine-tune on this many training images (a seeded subset)"),
    "val": (_number(int, 10), "score on at most this many stratified validation images"),
    "holdout": (_number(int, 10), f"re-score on at most this many stratified held-out images (default {HOLDOUT_MAX})"),
    "size": (_number(int, 8, 1024), "image size in pixels"),
    "classes": (_number(int, 2), "a cheaper proxy: only the images of the first this many classes (sorted by "
                                 "name) are read, the network keeps all its outputs"),
    "seeds": (_number(int, 1, 16), "fine-tune seeds; fitness reads the mean accuracy"),
    "recal": (_number(int, 1, 64), "batches of 256 training images that re-estimate BatchNorm statistics "
                                   f"after pruning and after the fine-tune (default {RECAL_BATCHES})"),
    "pretrain": (_number(float, 0.0), "pretraining epochs of the base net"),
    "checkpoint": (_path, "the base net's weights, a file as 'prunevo apply --checkpoint' reads it: nothing is "
                          "trained, and fitness never reads images these weights may have trained on (no commas "
                          "in the path)"),
    "stem": (_choice(*STEMS), "torchvision models' stem: auto = cifar at <= 64 px (default: a checkpoint's, else "
                              "auto)"),
    "weight": (_number(float, 1e-6), "weight in the geometric mean over tasks"),
    "reduction": (_choice(*REDUCTIONS), "how the scores of coupled layers combine"),
    "reconstruct": (_choice("0", "1"), "1: refit the layers that read removed channels by least squares on the "
                                       "calibration batch before BatchNorm is re-estimated (the regime 'one-shot + "
                                       "reconstruction')"),
}


def options_help() -> str:
    return "; ".join(f"{k}: {h}" for k, (_, h) in OPTIONS.items())


def split_spec(spec: str) -> tuple[str, str, dict[str, str]]:
    """``MODEL@DATASET[:k=v,...]`` -> (model, dataset, raw options); an alias -> its model and dataset."""
    if "@" not in spec:
        dataset, _, net = spec.rpartition("-")
        if dataset in alias_datasets() and net in ALIAS_NETS:
            return ALIAS_NETS[net], dataset, {}
        raise PrunevoError(f"task {spec!r} is not MODEL@DATASET[:key=value,...] (e.g. lenet5@mnist, "
                           f"small-vgg@imagefolder:PATH:size=32) nor a task name ({', '.join(alias_names())})")
    model, _, rest = spec.partition("@")
    dataset, options = rest, {}
    head, sep, tail = rest.rpartition(":")
    if sep and "=" in tail:
        dataset = head
        for item in tail.split(","):
            key, eq, value = item.partition("=")
            key = key.strip()
            if not eq or key not in OPTIONS:
                raise PrunevoError(f"task option {item!r} in {spec!r} is unknown; allowed: {', '.join(OPTIONS)}")
            if key in options:
                raise PrunevoError(f"task option {key!r} is given twice in {spec!r}")
            options[key] = value.strip()
    if not model or not dataset:
        raise PrunevoError(f"task {spec!r} needs a model and a dataset: MODEL@DATASET (e.g. lenet5@mnist)")
    if "macs" in options and "ratio" in options:
        raise PrunevoError(f"task {spec!r} gives both macs and ratio; allowed: one prune target")
    if "checkpoint" in options and "pretrain" in options:
        raise PrunevoError(f"task {spec!r} gives both checkpoint and pretrain; a task from a checkpoint trains "
                           f"nothing: allowed: one of them")
    return model, dataset, options


def alias_names() -> list[str]:
    return [f"{d}-{n}" for d in alias_datasets() for n in ALIAS_NETS]


def available_tasks() -> list[str]:
    """The short task names (aliases); any ``MODEL@DATASET`` works too."""
    return alias_names()


def with_allocation(task: Task, allocation: str) -> Task:
    """``task`` allocating its widths the ``allocation`` way (uniform, global or random-search)."""
    check_allocation(allocation)
    if allocation == "random-search":
        return replace(task, search=task.search or SearchSpec())
    return replace(task, search=None, prune=replace(task.prune, ranking=RANKING_OF[allocation]))


def _apply_overrides(task: Task, o: TaskOverrides) -> Task:
    prune = task.prune
    prune = replace(prune, ratio=o.prune_ratio) if o.prune_ratio is not None else prune
    prune = replace(prune, ranking=o.ranking) if o.ranking is not None else prune
    prune = replace(prune, group_reduction=o.group_reduction) if o.group_reduction is not None else prune
    if o.finetune_epochs is not None and o.finetune_epochs < 0:
        raise PrunevoError(f"fine-tune epochs must be >= 0, got {o.finetune_epochs}")
    finetune = replace(task.finetune, epochs=o.finetune_epochs) if o.finetune_epochs is not None else task.finetune
    task = replace(task, prune=prune, finetune=finetune)
    if o.reconstruct is not None:
        task = replace(task, reconstruct=o.reconstruct)
    return with_allocation(task, o.allocation) if o.allocation is not None else task


def _apply_options(task: Task, options: dict[str, str]) -> Task:
    v = {k: OPTIONS[k][0](k, text) for k, text in options.items()}
    ft = task.finetune
    ft = replace(ft, epochs=v.get("epochs", ft.epochs), lr=v.get("lr", ft.lr), batch_size=v.get("batch", ft.batch_size),
                 max_samples=v.get("train", ft.max_samples))
    pretrain = task.pretrain
    if "pretrain" in v:
        pretrain = replace(pretrain, budget=replace(pretrain.budget, epochs=v["pretrain"]))
    prune = task.prune
    if "ratio" in v:
        prune = replace(prune, ratio=v["ratio"])
    if "reduction" in v:
        prune = replace(prune, group_reduction=v["reduction"])
    target = v.get("macs", None if "ratio" in v else task.target_macs)
    task = replace(task, finetune=ft, pretrain=pretrain, prune=prune, target_macs=target,
                   image_size=v.get("size", task.image_size), val_samples=v.get("val", task.val_samples),
                   holdout_samples=v.get("holdout", task.holdout_samples), classes=v.get("classes", task.classes),
                   seeds=v.get("seeds", task.seeds), weight=v.get("weight", task.weight),
                   recal_batches=v.get("recal", task.recal_batches), checkpoint=v.get("checkpoint", task.checkpoint),
                   stem=v.get("stem", task.stem), reconstruct=v["reconstruct"] == "1" if "reconstruct" in v
                   else task.reconstruct)
    return with_allocation(task, v["allocation"]) if "allocation" in v else task


def parse_task(spec: str, overrides: TaskOverrides = TaskOverrides(), **fields) -> Task:
    """The task ``spec`` names: dataset defaults, then ``overrides``, then the spec's options, then
    ``fields`` (Task fields, for the Python API)."""
    model, dataset, options = split_spec(spec)
    if "pretrain" in options and is_model_file(model):
        raise PrunevoError(f"task {spec!r}: {model} is a whole-model file, whose weights are the base net (nothing "
                           f"is trained); allowed: no pretrain= option")
    defaults = dataset_defaults(dataset)
    if "checkpoint" in options or is_model_file(model):  # the user's weights: their image size, not a default
        defaults = {**defaults, "image_size": None}
    task = Task(name=spec, model=model, dataset=dataset, **defaults)
    task = _apply_options(_apply_overrides(task, overrides), options)
    if task.search is not None and task.target_macs is None and task.prune.ratio == 0:
        raise PrunevoError(f"task {spec!r}: random search needs a prune target (macs=... or ratio > 0)")
    return replace(task, **fields) if fields else task


def build_tasks(specs: tuple[str, ...] | list[str], weights: tuple[float, ...] | None = None,
                overrides: TaskOverrides = TaskOverrides()) -> list[Task]:
    """A run's tasks; ``weights`` (one per task) replace the tasks' own weights."""
    tasks = [parse_task(spec, overrides) for spec in specs]
    if weights is not None:
        tasks = [replace(t, weight=w) for t, w in zip(tasks, weights)]
    return tasks


# A search on the user's own network (``prunevo evolve --model M --checkpoint C --dataset D``): one-shot, where
# the criterion decides most and fitness costs forward passes only; BatchNorm re-estimated on 2 batches of 256
# training images; fitness on at most 2,000 validation images; global allocation, so that the formula's scores
# also set each layer's width (docs/BENCHMARKS.md, "Discovery on the user's network").
DISCOVERY_OPTIONS = {"epochs": "0", "recal": "2", "val": "2000", "allocation": "global"}

# Inputs of at least LARGE_INPUT_PX pixels (ImageNet-size): fitness reads a cheaper proxy of the task, the one
# with the best Spearman rho against the full-size ranking of the criteria per CPU-second among the proxies
# that change only the fitness images (docs/BENCHMARKS.md, "Searching on ImageNet-size networks"; a smaller
# input or fewer classes would change the network and data the verdict judges).  The re-scoring and the
# verdict read the held-out images at the full size.
LARGE_INPUT_PX = 160
LARGE_INPUT_PROXY = {"val": "250"}
LARGE_INPUT_PROXY_TEXT = "250 validation images"


def input_size(dataset: str, image_size: int | None = None,
               checkpoint: str | os.PathLike | None = None) -> int | None:
    """The image size in pixels a task on ``dataset`` reads: ``image_size``, else the one ``checkpoint`` was
    trained at (a prunevo checkpoint says it), else the dataset's (an image folder's is probed from its files);
    None when it cannot be known without loading the data."""
    if image_size is not None:
        return image_size
    if checkpoint is not None:
        from prunevo.zoo.checkpoints import read_checkpoint, trained_input

        size = trained_input(read_checkpoint(checkpoint)[1])[0]
        if size:
            return size
    if dataset.startswith("imagefolder:"):
        from prunevo.zoo.images import folder_size

        train = Path(dataset.split(":", 1)[1]).expanduser() / "train"
        return folder_size(train) if train.is_dir() else None
    return dataset_defaults(dataset).get("image_size")


def large_input_proxy(dataset: str, image_size: int | None = None,
                      checkpoint: str | os.PathLike | None = None) -> dict[str, str]:
    """The task options of the fitness proxy for this input (``LARGE_INPUT_PROXY`` at ``LARGE_INPUT_PX`` pixels
    or more), else none."""
    size = input_size(dataset, image_size, checkpoint)
    return dict(LARGE_INPUT_PROXY) if size is not None and size >= LARGE_INPUT_PX else {}


def proxy_note(spec: str) -> str | None:
    """What ``evolve --model`` prints when the task ``spec`` it built reads the large-input proxy, else None."""
    options = split_spec(spec)[2]
    if not LARGE_INPUT_PROXY or any(options.get(k) != v for k, v in LARGE_INPUT_PROXY.items()):
        return None
    return (f"fitness proxy: {LARGE_INPUT_PROXY_TEXT} (inputs of {LARGE_INPUT_PX} px or more; "
            f"docs/BENCHMARKS.md, 'Searching on ImageNet-size networks'); the re-scoring and the verdict read the "
            f"held-out images at full size; --no-proxy searches on the whole task")


def task_for(model: str, dataset: str | None = None, *, checkpoint: str | os.PathLike | None = None,
             image_size: int | None = None, stem: str | None = None, target_macs: float | None = None,
             channel_ratio: float | None = None, allocation: str | None = None, proxy: bool = True) -> str:
    """The fitness task of a search on the user's own network, as a task spec (``prunevo evolve --model``).

    The task prunes one-shot with the discovery options (``DISCOVERY_OPTIONS``: BatchNorm re-estimated, global
    allocation, 2,000 validation images), and, with ``proxy`` on inputs of ``LARGE_INPUT_PX`` pixels or more,
    measures on the fitness proxy ``LARGE_INPUT_PROXY`` (``large_input_proxy``).

    Args:
        model: any name ``prunevo apply --model`` accepts (torchvision, timm:NAME, module:function, a .pt file).
        dataset: its data (default: the dataset a prunevo checkpoint names).
        checkpoint: its weights; the path is made absolute, so the run reads it from any directory.
        image_size: the input size in pixels (default: the checkpoint's, else the dataset's).
        stem: the stem of torchvision models (``cifar``, ``imagenet``, ``auto``).
        target_macs: the share of the MACs the pruned network keeps (default ``DEFAULT_TARGET_MACS``).
        channel_ratio: instead of ``target_macs``, the share of channels removed.
        allocation: replaces the discovery allocation (``global``).
        proxy: measure large inputs on the fitness proxy.

    Returns:
        The task spec, ``MODEL@DATASET:key=value,...``.

    Raises:
        PrunevoError: two targets, a dataset neither given nor named by the checkpoint, or a path a task spec
            cannot hold (a comma or a colon).

    Example:
        >>> from prunevo import task_for
        >>> task_for("small-vgg", "digits", target_macs=0.5)
        'small-vgg@digits:epochs=0,recal=2,val=2000,allocation=global,macs=0.5'
    """
    from prunevo.pruning.target import DEFAULT_TARGET_MACS, check_macs_target
    from prunevo.zoo.checkpoints import read_checkpoint, trained_input

    if target_macs is not None and channel_ratio is not None:
        raise PrunevoError("give one of {param:target_macs} and {param:channel_ratio}")
    options, meta = dict(DISCOVERY_OPTIONS), {}
    if checkpoint is not None:
        path = str(Path(checkpoint).expanduser().resolve())
        if "," in path or ":" in path:
            raise PrunevoError(f"{{param:checkpoint}} {path} has a comma or a colon, which a task spec cannot hold; "
                               f"allowed: a path without them (copy or link the file)")
        meta = read_checkpoint(path)[1]
        dataset = dataset or meta.get("dataset")
        options["checkpoint"] = path
    if not dataset:
        raise PrunevoError("{param:dataset} is needed (the checkpoint does not name the dataset it was trained on)")
    if proxy:
        options.update(large_input_proxy(dataset, image_size or trained_input(meta)[0]))
    if channel_ratio is not None:
        options["ratio"] = f"{channel_ratio:g}"
    else:
        target = DEFAULT_TARGET_MACS if target_macs is None else target_macs
        check_macs_target(target)
        options["macs"] = f"{target:g}"
    for key, value in (("size", image_size), ("stem", stem), ("allocation", allocation)):
        if value is not None:
            options[key] = str(value)
    spec = f"{model}@{dataset}:" + ",".join(f"{k}={v}" for k, v in options.items())
    parse_task(spec)  # every option checked now, with the task's own messages
    return spec


def make_task(spec: str, **fields) -> Task:
    """The task ``spec`` names, with ``fields`` (Task fields) replaced: ``make_task("lenet5@mnist", seeds=3)``."""
    return parse_task(spec, **fields)
