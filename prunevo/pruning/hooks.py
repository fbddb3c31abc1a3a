"""One eval-mode forward pass of a single example with forward hooks on chosen modules (shape probing)."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn


def probe(model: nn.Module, example_input: torch.Tensor, modules: dict[str, nn.Module],
          record: Callable[[str, tuple, object], None]) -> None:
    """Call ``record(name, inputs, output)`` for every module of ``modules`` during one forward pass."""
    handles = [m.register_forward_hook(lambda mod, i, o, n=n: record(n, i, o)) for n, m in modules.items()]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(example_input[:1])
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
