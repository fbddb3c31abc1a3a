"""Base-model checkpoints: weights plus what is needed to rebuild the model, loadable with weights_only.

A prunevo checkpoint is a dict ``{"format", "model", "dataset", "num_classes", "input_shape", "stem",
"schedule", "metrics", "state_dict"}`` of plain values and tensors.  A bare ``state_dict`` works too.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunevo.errors import ModelError
from prunevo.utils import atomic_torch_save

FORMAT = "prunevo-checkpoint/1"


def save_checkpoint(path: str | Path, model: nn.Module, meta: dict[str, Any]) -> None:
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    atomic_torch_save(Path(path), {"format": FORMAT, **meta, "state_dict": state})


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state_dict, metadata); metadata is empty for a bare state dict."""
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
    if isinstance(data, dict) and all(isinstance(v, torch.Tensor) for v in data.values()):
        return data, {}
    raise ModelError(f"checkpoint {path} is neither a prunevo checkpoint nor a state_dict")


def load_weights(model: nn.Module, path: str | Path, expect: dict[str, Any]) -> dict[str, Any]:
    """Load ``path`` into ``model`` after checking that it was trained for the same model and classes."""
    state, meta = read_checkpoint(path)
    for key in ("model", "num_classes", "stem"):
        if key in meta and key in expect and meta[key] != expect[key]:
            raise ModelError(f"checkpoint {path} is for {key}={meta[key]!r}, but this run uses {expect[key]!r}")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise ModelError(f"checkpoint {path} does not fit the model: {first[1].strip() if len(first) > 1 else first[0]}") from None
    return meta
