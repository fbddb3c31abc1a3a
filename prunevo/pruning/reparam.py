"""Weight reparametrizations folded into plain weights, so that channels can be removed from them.

Weight normalization (Salimans & Kingma, 2016) and spectral normalization (Miyato et al., 2018) compute a
layer's ``weight`` from other tensors on every forward pass -- ``weight_g``/``weight_v`` with the old
hooks (``torch.nn.utils.weight_norm``), ``parametrizations.weight.original*`` with
``torch.nn.utils.parametrizations``.  Torch-Pruning slices ``weight`` itself, which such a layer does not
hold.  Folding replaces each by the weight it computes now: the network computes exactly what it did
(in eval mode: spectral normalization's power iteration no longer updates), and the pruned network has
plain layers.  Fine-tuning then trains the plain weight.
"""
from __future__ import annotations

import logging

from torch import nn
from torch.nn.utils import parametrize

log = logging.getLogger(__name__)

# the old hook classes, by name: torch.nn.utils.weight_norm.WeightNorm, spectral_norm.SpectralNorm
_HOOKS = {"WeightNorm": ("weight normalization", nn.utils.remove_weight_norm),
          "SpectralNorm": ("spectral normalization", nn.utils.remove_spectral_norm)}


def fold_reparametrizations(model: nn.Module) -> list[str]:
    """Replace every reparametrized tensor of ``model`` by the plain tensor it computes now (in place).

    Args:
        model: any network; its mode (train/eval) is what spectral normalization's weight is computed in.

    Returns:
        One description per folded tensor ("'conv.weight': weight normalization"), logged as notes.
    """
    folded = []
    for name, module in model.named_modules():
        for hook in list(module._forward_pre_hooks.values()):
            kind = type(hook).__name__
            if kind in _HOOKS and hasattr(hook, "name"):
                what, remove = _HOOKS[kind]
                remove(module, hook.name)
                folded.append(f"{name + '.' if name else ''}{hook.name}: {what}")
        if parametrize.is_parametrized(module):
            for tensor in list(module.parametrizations.keys()):
                kinds = {type(p).__name__ for p in module.parametrizations[tensor]}
                what = ("weight normalization" if "_WeightNorm" in kinds else
                        "spectral normalization" if "_SpectralNorm" in kinds else
                        f"a parametrization ({', '.join(sorted(kinds))})")
                parametrize.remove_parametrizations(module, tensor, leave_parametrized=True)
                folded.append(f"{name + '.' if name else ''}{tensor}: {what}")
    for module in model.modules():
        _drop_state_dict_hooks(module)
    for item in folded:
        log.warning("prunevo: note: %s is folded into a plain tensor before pruning (the same values; the pruned "
                    "model has plain layers)", item)
    return folded


_HOOK_TABLES = ("_state_dict_hooks", "_state_dict_pre_hooks", "_load_state_dict_pre_hooks",
                "_load_state_dict_post_hooks")


def _drop_state_dict_hooks(module: nn.Module) -> None:
    """The state-dict hooks the normalizations leave behind after removal: the old spectral norm's rename
    ``weight`` to ``weight_orig`` on loading (a folded model would then miss its keys), weight norm's
    compatibility hook is a local function (a model holding it cannot be pickled)."""
    for table in _HOOK_TABLES:
        hooks = getattr(module, table, None)
        if not hooks:
            continue
        for key, hook in list(hooks.items()):
            hook = getattr(hook, "hook", hook)  # torch wraps some hooks
            label = f"{type(hook).__name__} {getattr(hook, '__qualname__', '')}"
            if any(k in label for k in ("SpectralNorm", "weight_norm", "WeightNorm")):
                del hooks[key]
