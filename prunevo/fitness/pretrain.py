"""Base networks: trained by prunevo on first use and cached by the hash of their recipe.

No weights can be downloaded, so every base net is reproducible from (dataset, network, recipe).
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from prunevo.fitness.training import TrainBudget, accuracy, torch_threads, train
from prunevo.utils import atomic_torch_save, default_cache_dir, stable_hash
from prunevo.zoo.datasets import Splits
from prunevo.zoo.nets import build_small_net

log = logging.getLogger(__name__)
NETS_VERSION = 2  # bump when a zoo architecture changes: old cached weights stop matching


@dataclass(frozen=True)
class PretrainRecipe:
    budget: TrainBudget = field(default_factory=lambda: TrainBudget(epochs=30, lr=0.05, batch_size=64))
    seed: int = 0


def build_for(net: str, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    c, h, _ = input_shape
    return build_small_net(net, c, num_classes, h)


def recipe_hash(net: str, splits: Splits, recipe: PretrainRecipe) -> str:
    return stable_hash({"net": net, "data": splits.name, "fingerprint": splits.fingerprint(),
                        "recipe": asdict(recipe), "nets_version": NETS_VERSION})


def pretrained(net: str, splits: Splits, recipe: PretrainRecipe, cache_dir: Path | None = None,
               threads: int | None = None) -> nn.Module:
    """The base net for (net, dataset, recipe): from the cache, or trained now and cached atomically."""
    cache_dir = Path(cache_dir or default_cache_dir())
    path = cache_dir / "nets" / f"{splits.name}-{net}-{recipe_hash(net, splits, recipe)}.pt"
    if path.exists():
        model = build_for(net, splits.input_shape, splits.num_classes)
        try:
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            return model.eval()
        except Exception as exc:  # a damaged cache entry is rebuilt, never trusted
            log.warning("cached base net %s is unreadable (%s); retraining it", path, exc)
    torch.manual_seed(recipe.seed)
    model = build_for(net, splits.input_shape, splits.num_classes)
    with torch_threads(threads):
        train(model, splits.train_x, splits.train_y, recipe.budget, recipe.seed)
    log.info("trained %s on %s: val acc %.4f", net, splits.name, accuracy(model, splits.val_x, splits.val_y))
    atomic_torch_save(path, model.state_dict())
    return model.eval()
