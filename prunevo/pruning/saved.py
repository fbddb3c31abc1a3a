"""Pruned models saved as weights: ``pruned_weights.pt`` (``transfer.apply`` writes it) read back.

The file holds the base architecture's name, the channels each pruning cycle kept (by group root), the
layers removed and the pruned state dict; rebuilding replays the pruning on a fresh base model, so
loading needs no pickled code (``torch.load(weights_only=True)``) and no dataset.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from prunevo.errors import ModelError
from prunevo.pruning.groups import find_groups
from prunevo.pruning.layers import remove_units
from prunevo.pruning.physical import prune_model
from prunevo.pruning.reparam import fold_reparametrizations
from prunevo.utils import load_state
from prunevo.zoo.models import (
    PRUNED_WEIGHTS_FORMAT,
    SOURCE_DTYPE_ATTR,
    build_model,
    is_pruned_weights_file,
    weights_dtype,
)

PRUNED_FORMAT = f"{PRUNED_WEIGHTS_FORMAT}2"  # /2: channel cycles and removed layers
READABLE_FORMATS = (f"{PRUNED_WEIGHTS_FORMAT}1", PRUNED_FORMAT)


def load_pruned(path: str | Path) -> nn.Module:
    """Rebuild a pruned model from the ``pruned_weights.pt`` that ``apply_formula`` wrote.

    Weights-only loading (``torch.load(weights_only=True)``: no code runs from the file), no dataset needed;
    the weights keep the floating type they were saved in.

    Args:
        path: the ``pruned_weights.pt`` file.

    Returns:
        The pruned model, in eval mode, on the CPU.

    Raises:
        ModelError: a missing, corrupt or foreign file.

    Example:
        >>> import tempfile
        >>> from prunevo import FitConfig, Setup, TransferConfig, apply_formula, load_pruned
        >>> config = TransferConfig(setup=Setup(model="small-vgg", dataset="digits"), target_macs=0.5,
        ...                         finetune=FitConfig(epochs=0), latency=None)
        >>> out = tempfile.mkdtemp()
        >>> pruned, _ = apply_formula("l1(W)", config, out)
        >>> model = load_pruned(out + "/pruned_weights.pt")
        >>> sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in pruned.parameters())
        True
    """
    try:
        data = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # missing, corrupt or pickled-code files
        raise ModelError(f"{path} is not a readable pruned-weights file ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict) or data.get("format") not in READABLE_FORMATS:
        raise ModelError(f"{path} is not a prunevo pruned-weights file ({PRUNED_FORMAT})")
    shape = tuple(data["input_shape"])
    if is_pruned_weights_file(data["model"]):  # pruned from a pruned_weights.pt: rebuild that one first
        model = load_pruned(data["model"]).float().eval()
    else:
        model = build_model(data["model"], data["num_classes"], shape, data["stem"], data.get("module_file")).eval()
    fold_reparametrizations(model)  # as the pruned model was: weight/spectral normalization folded
    example = torch.zeros(1, *shape)
    remove_units(model, data.get("removed", []))
    cycles = data["cycles"] if "cycles" in data else [data["keep"]]
    for kept in cycles:  # replay each channel-pruning cycle on the model it was chosen for
        groups = find_groups(model, example, keep_layers=tuple(data.get("ignore_layers", ())))
        masks = []
        for g in groups:
            mask = torch.zeros(g.size, dtype=torch.bool)
            mask[torch.as_tensor(kept.get(g.root, list(range(g.size))), dtype=torch.long)] = True
            masks.append(mask)
        prune_model(model, groups, masks, example)
    load_state(model, data["state_dict"])
    model.__dict__.pop(SOURCE_DTYPE_ATTR, None)  # the base's type: the saved weights say it
    return model.to(weights_dtype(data["state_dict"].values()) or torch.float32).eval()
