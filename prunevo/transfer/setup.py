"""Data and base model for a transfer setting: channels and input size agree, checkpoint loaded."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunevo.errors import ModelError
from prunevo.pruning.groups import check_prunable
from prunevo.pruning.saved import load_pruned
from prunevo.zoo.checkpoints import load_weights, read_checkpoint, trained_input
from prunevo.zoo.images import ImageData, load_image_data
from prunevo.zoo.models import (
    SMALL_INPUT_MAX,
    SMALL_NET_NAMES,
    build_model,
    in_float32,
    input_channels,
    is_pruned_weights_file,
    is_timm,
    needs_channels,
    pruned_alternative,
    source_dtype,
    torchvision_names,
    weights_dtype,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class Setup:
    """The model and data a command starts from: ``train`` trains it, ``apply``/``compare``/``benchmark`` prune it.

    Attributes:
        model: a torchvision classification model name, small-vgg, small-resnet, lenet5, timm:NAME,
            module:function or a whole-model .pt file (``zoo.models``).
        dataset: a registered dataset (``zoo.registry``): digits, mnist, fashion-mnist, cifar10, cifar100, svhn,
            imagefolder:PATH or fakedata.
        data_root: where dataset files are (torchvision's layout).
        download: let torchvision fetch missing files (never by default).
        checkpoint: weights to start from (``zoo.checkpoints``; DataParallel/DDP and torch.compile prefixes are
            read).
        image_size: input size in pixels (None: a prunevo checkpoint's, else the dataset's own, 224 for image
            folders).
        stem: of torchvision models: ``cifar``, ``imagenet`` or ``auto`` (a prunevo checkpoint's, else cifar at
            <= 64 px).
        cache_dir: extracted data (None: $PRUNEVO_CACHE or ~/.cache/prunevo).

    Raises:
        DataError, ModelError: when loaded (``load_setup``), for data or a model that cannot be read.

    Example:
        >>> from prunevo import Setup
        >>> Setup(model="resnet18", dataset="imagefolder:/data/imagenette2", image_size=224).stem
        'auto'
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
    """(data, model in eval mode on the CPU, in float32, checkpoint metadata).  A model without a checkpoint
    starts from weights drawn with ``init_seed``: the same setup gives the same model in every run.  Weights
    stored in another floating type are computed in float32 (``zoo.models.source_dtype`` keeps theirs).
    Raises DataError or ModelError."""
    state, saved = read_checkpoint(config.checkpoint) if config.checkpoint else ({}, {})
    # a prunevo checkpoint says the size and the stem it was trained at: they are what 'auto' means for it
    saved_size, saved_stem = trained_input(saved)
    image_size = config.image_size or saved_size
    chosen_stem = saved_stem if config.stem == "auto" and saved_stem else config.stem
    load = dict(data_root=config.data_root, image_size=image_size, download=config.download,
                cache_dir=config.cache_dir)
    data = load_image_data(config.dataset, channels=needs_channels(config.model), **load)

    def build(data: ImageData) -> nn.Module:
        with torch.random.fork_rng(devices=[]):  # the global generator is left as it was
            torch.manual_seed(init_seed)
            if is_pruned_weights_file(config.model):  # prunevo apply's pruned_weights.pt: pruned again
                try:
                    return in_float32(load_pruned(config.model))
                except ModelError as exc:
                    raise ModelError(f"{config.model} (pruned weights) cannot be rebuilt: {exc}; "
                                     f"{pruned_alternative(Path(config.model))}") from None
            return build_model(config.model, data.num_classes, data.input_shape, chosen_stem)

    model = build(data)
    check_prunable(model, config.model)  # before anything runs it: some refuse small inputs with a traceback
    wanted = _checkpoint_channels(model, state) if is_timm(config.model) else None  # timm's in_chans: the weights'
    wanted = wanted or input_channels(model, data.input_shape[1])
    if wanted != data.input_shape[0]:  # a user's model that reads another channel count
        data = load_image_data(config.dataset, channels=wanted, **load)
        if is_timm(config.model):
            model = build(data)
    meta: dict[str, Any] = {}
    stem = resolved_stem(config.model, chosen_stem, data.input_shape[1])
    if config.checkpoint:
        meta = load_weights(model, config.checkpoint,
                            {"model": config.model, "num_classes": data.num_classes, "stem": stem})
        in_float32(model, weights_dtype(state.values()))  # the checkpoint's type is the one the user gave
    elif warn_untrained and (config.model in torchvision_names() or config.model in SMALL_NET_NAMES
                             or is_timm(config.model)):
        log.warning("no checkpoint: %s starts from random weights drawn with seed %d (train one with 'prunevo "
                    "train')", config.model, init_seed)
    dtype = str(source_dtype(model)).removeprefix("torch.")
    if dtype != "float32":
        log.warning("%s holds %s weights: pruned in float32, pruned models saved as %s",
                    config.checkpoint or config.model, dtype, dtype)
    return data, model.eval(), meta


def _checkpoint_channels(model: nn.Module, state: dict[str, torch.Tensor]) -> int | None:
    """The channel count the checkpoint's weights of ``model``'s first convolution read (None: no checkpoint,
    or no such weight in it): timm builds any ``in_chans``, so the weights say which one fits them."""
    name, conv = next(((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), (None, None))
    weight = state.get(f"{name}.weight") if conv is not None else None
    if not isinstance(weight, torch.Tensor) or weight.dim() != 4:
        return None
    return weight.shape[1] * conv.groups
