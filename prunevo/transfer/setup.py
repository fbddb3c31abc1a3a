"""Data and base model for a transfer setting: channels and input size agree, checkpoint loaded."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from prunevo.pruning.groups import check_prunable
from prunevo.zoo.checkpoints import load_weights, read_checkpoint, trained_input
from prunevo.zoo.images import ImageData, load_image_data
from prunevo.zoo.models import SMALL_INPUT_MAX, SMALL_NET_NAMES, build_model, input_channels, needs_channels, torchvision_names

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class Setup:
    """The model and data a command starts from: ``train`` trains it, ``apply``/``compare``/``benchmark`` prune it.

    ``model``: a torchvision classification model name, small-vgg, small-resnet, lenet5, module:function or a
    whole-model .pt file (``zoo.models``); ``dataset``: digits, mnist, fashion-mnist, cifar10, cifar100, svhn
    (files under ``data_root``, fetched by torchvision only when ``download``), imagefolder:PATH or fakedata
    (``zoo.images``); ``checkpoint``: weights to start from (``zoo.checkpoints``); ``image_size`` in pixels
    (None: a prunevo checkpoint's, else the dataset's own, 224 for image folders); ``stem`` of torchvision
    models (auto = a prunevo checkpoint's, else cifar at <= 64 px); ``cache_dir``: extracted data (None:
    $PRUNEVO_CACHE or ~/.cache/prunevo).
    """

    model: str
    dataset: str = "digits"
    data_root: str | None = None
    download: bool = False
    checkpoint: str | None = None
    image_size: int | None = None
    stem: str = "auto"
    cache_dir: str | None = None


def resolved_stem(model: str, stem: str, input_size: int) -> str | None:
    """The stem actually built: ``cifar`` or ``imagenet`` for torchvision models, None for others."""
    if model not in torchvision_names():
        return None
    if stem == "auto":
        return "cifar" if input_size <= SMALL_INPUT_MAX else "imagenet"
    return stem


def load_setup(config: Setup, warn_untrained: bool = True,
               init_seed: int = 0) -> tuple[ImageData, nn.Module, dict[str, Any]]:
    """(data, model in eval mode on the CPU, checkpoint metadata).  A model without a checkpoint starts from
    weights drawn with ``init_seed``: the same setup gives the same model in every run.  Raises DataError or
    ModelError."""
    # a prunevo checkpoint says the size and the stem it was trained at: they are what 'auto' means for it
    saved_size, saved_stem = trained_input(read_checkpoint(config.checkpoint)[1] if config.checkpoint else {})
    image_size = config.image_size or saved_size
    chosen_stem = saved_stem if config.stem == "auto" and saved_stem else config.stem
    load = dict(data_root=config.data_root, image_size=image_size, download=config.download,
                cache_dir=config.cache_dir)
    data = load_image_data(config.dataset, channels=needs_channels(config.model), **load)
    with torch.random.fork_rng(devices=[]):  # the global generator is left as it was
        torch.manual_seed(init_seed)
        model = build_model(config.model, data.num_classes, data.input_shape, chosen_stem)
    check_prunable(model, config.model)  # before anything runs it: some refuse small inputs with a traceback
    wanted = input_channels(model, data.input_shape[1])
    if wanted != data.input_shape[0]:  # a user's model that reads another channel count
        data = load_image_data(config.dataset, channels=wanted, **load)
    meta: dict[str, Any] = {}
    stem = resolved_stem(config.model, chosen_stem, data.input_shape[1])
    if config.checkpoint:
        meta = load_weights(model, config.checkpoint,
                            {"model": config.model, "num_classes": data.num_classes, "stem": stem})
    elif warn_untrained and (config.model in torchvision_names() or config.model in SMALL_NET_NAMES):
        log.warning("no checkpoint: %s starts from random weights drawn with seed %d (train one with 'prunevo "
                    "train')", config.model, init_seed)
    return data, model.eval(), meta
