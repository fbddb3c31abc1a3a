"""Base networks: a user's checkpoint, or trained by prunevo on first use and cached by the hash of their recipe.

No weights can be downloaded, so every base net prunevo trains is reproducible from (dataset, model, recipe);
a checkpoint is the user's own network (``from_checkpoint``) and trains nothing.
"""
from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from prunevo.fitness.data import TaskData
from prunevo.training import FitConfig, fit, top1
from prunevo.utils import atomic_torch_save, default_cache_dir, load_state, stable_hash, torch_threads
from prunevo.zoo.checkpoints import load_weights
from prunevo.zoo.models import build_model

log = logging.getLogger(__name__)
NETS_VERSION = 3  # bump when a zoo architecture or the training loop changes: old cached weights stop matching


@dataclass(frozen=True)
class PretrainRecipe:
    budget: FitConfig = field(default_factory=lambda: FitConfig(epochs=30, lr=0.05, batch_size=64,
                                                                lr_schedule="cosine"))
    seed: int = 0


def build_for(model: str, input_shape: tuple[int, int, int], num_classes: int, stem: str = "auto") -> nn.Module:
    """An untrained ``model`` (any name ``--model`` accepts) for this input shape and class count; ``stem``:
    torchvision models' stem (``zoo.models.STEMS``)."""
    return build_model(model, num_classes, input_shape, stem)


def from_checkpoint(model_name: str, data: TaskData, checkpoint: str | Path, stem: str = "auto") -> nn.Module:
    """``model_name`` with the weights of ``checkpoint`` (every form ``prunevo apply --checkpoint`` reads, loaded
    with ``weights_only=True``), in eval mode.  Raises ModelError when they do not fit."""
    model = build_for(model_name, data.input_shape, data.num_classes, stem)
    expect = {"model": model_name, "num_classes": data.num_classes}
    if stem != "auto":
        expect["stem"] = stem
    load_weights(model, checkpoint, expect)
    return model.eval()


def recipe_hash(model: str, data: TaskData, recipe: PretrainRecipe, **extra) -> str:
    return stable_hash({"model": model, "data": data.name, "fingerprint": data.fingerprint(),
                        "recipe": asdict(recipe), "nets_version": NETS_VERSION, **extra})


def pretrained(model_name: str, data: TaskData, recipe: PretrainRecipe, cache_dir: Path | None = None,
               threads: int | None = None, progress: bool | None = None, stem: str = "auto") -> nn.Module:
    """The base net for (model, dataset, recipe): from the cache, or trained now and cached atomically, with a
    progress bar (``progress`` True or None: a bar on a terminal, a plain line at most every 30 s in a log;
    False: nothing)."""
    cache_dir = Path(cache_dir or default_cache_dir())
    label = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{Path(data.name).name}-{Path(model_name).name}")[-60:]
    extra = {} if stem == "auto" else {"stem": stem}  # nets cached before the option keep their name
    path = cache_dir / "nets" / f"{label}-{recipe_hash(model_name, data, recipe, **extra)}.pt"
    if path.exists():
        model = build_for(model_name, data.input_shape, data.num_classes, stem)
        try:
            load_state(model, torch.load(path, map_location="cpu", weights_only=True))
            return model.eval()
        except Exception as exc:  # a damaged cache entry is rebuilt, never trusted
            log.warning("cached base net %s is unreadable (%s); retraining it", path, exc)
    torch.manual_seed(recipe.seed)
    model = build_for(model_name, data.input_shape, data.num_classes, stem)
    with torch_threads(threads):
        fit(model, data.train, recipe.budget, recipe.seed, progress=progress, desc=f"pretrain {model_name}")
    log.info("trained %s on %s: val acc %.4f", model_name, data.name, top1(model, data.val))
    atomic_torch_save(path, model.state_dict())
    return model.eval()
