"""Base-model checkpoints: weights plus what is needed to rebuild the model, loadable with weights_only.

A prunevo checkpoint is a dict ``{"format", "model", "dataset", "num_classes", "input_shape", "stem",
"schedule", "metrics", "state_dict"}`` of plain values and tensors.  Checkpoints as other tools write them work
too: a bare ``state_dict``; one nested under ``state_dict``, ``model_state_dict``, ``model`` or ``net`` beside
an epoch or optimizer state (torchvision's reference scripts, PyTorch Lightning, timm); and keys prefixed by a
wrapper (``module.`` from ``nn.DataParallel``/DDP, ``_orig_mod.`` from ``torch.compile``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

from prunevo.errors import ModelError
from prunevo.utils import atomic_torch_save, load_state

FORMAT = "prunevo-checkpoint/1"
NESTED_KEYS = ("state_dict", "model_state_dict", "model", "net")  # where training scripts put the weights
WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DataParallel/DDP, torch.compile; nested wrappers stack them


def save_checkpoint(path: str | Path, model: nn.Module, meta: dict[str, Any]) -> None:
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    atomic_torch_save(Path(path), {"format": FORMAT, **meta, "state_dict": state})


def trained_input(meta: dict[str, Any]) -> tuple[int | None, str | None]:
    """(image size in pixels, stem) a checkpoint's metadata says its network was trained at; None where it does
    not say (another tool's checkpoint)."""
    shape = meta.get("input_shape")
    return (int(shape[-1]) if shape else None), (meta.get("stem") or None)


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state_dict, metadata); metadata is empty for a checkpoint not written by prunevo.

    Raises ModelError when ``path`` is missing, unreadable with ``weights_only=True`` (a pickled module, a
    corrupt file) or holds no state_dict."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"checkpoint {path} does not exist")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt files and pickled modules fail in many ways
        raise ModelError(f"checkpoint {path} is unreadable or not a weights-only file ({type(exc).__name__}); "
                         f"allowed: a prunevo checkpoint or a state_dict saved with torch.save") from None
    if isinstance(data, dict) and data.get("format") == FORMAT:
        meta = {k: v for k, v in data.items() if k not in ("state_dict", "format")}
        return data["state_dict"], meta
    state = _find_state_dict(data)
    if state is None:
        raise ModelError(f"checkpoint {path} holds no state_dict (a dict of tensors, bare or under one of "
                         f"{', '.join(NESTED_KEYS)}); allowed: a prunevo checkpoint or a state_dict saved with "
                         f"torch.save")
    return _strip_wrappers(state), {}


def _is_state_dict(value: Any) -> bool:
    return isinstance(value, dict) and bool(value) and all(isinstance(v, torch.Tensor) for v in value.values())


def _find_state_dict(data: Any) -> dict[str, torch.Tensor] | None:
    if _is_state_dict(data):
        return data
    if isinstance(data, dict):
        for key in NESTED_KEYS:
            if _is_state_dict(data.get(key)):
                return data[key]
    return None


def _strip_wrappers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove wrapper prefixes that every key carries (a model saved inside DataParallel, torch.compile...)."""
    state = dict(state)  # consume_prefix_in_state_dict_if_present edits in place
    stripped = True
    while stripped:
        stripped = False
        for prefix in WRAPPER_PREFIXES:
            if all(k.startswith(prefix) for k in state):
                consume_prefix_in_state_dict_if_present(state, prefix)
                stripped = True
    return state


def _misfit(model: nn.Module, state: dict[str, torch.Tensor], shown: int = 3) -> str | None:
    """One line on how ``state`` does not fit ``model``, or None when it fits."""
    own = model.state_dict()
    # BatchNorm's step counter is absent from old checkpoints and never read in eval or recalibration
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
              if k in state and state[k].shape != v.shape]

    def few(keys: list[str]) -> str:
        return f"{len(keys)} (" + ", ".join(keys[:shown]) + (", ..." if len(keys) > shown else "") + ")"

    parts = [f"missing keys: {few(missing)}" if missing else "",
             f"unexpected keys: {few(unexpected)}" if unexpected else "",
             f"other shapes, checkpoint vs model: {few(shapes)}" if shapes else ""]
    return "; ".join(p for p in parts if p) or None


def load_weights(model: nn.Module, path: str | Path, expect: dict[str, Any]) -> dict[str, Any]:
    """Load ``path`` into ``model`` after checking that it was trained for the same model and classes.

    Raises ModelError, in one line, when it was not, or when its keys or shapes do not fit ``model``."""
    state, meta = read_checkpoint(path)
    for key in ("model", "num_classes", "stem"):
        if key in meta and key in expect and meta[key] != expect[key]:
            raise ModelError(f"checkpoint {path} is for {key}={meta[key]!r}, but this run uses {expect[key]!r}")
    misfit = _misfit(model, state)
    if misfit:
        raise ModelError(f"checkpoint {path} does not fit the model: {misfit}")
    load_state(model, state, strict=False)  # strict but for num_batches_tracked: _misfit checked the rest
    return meta
