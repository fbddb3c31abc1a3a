"""The smallest member of every torchvision classification family, at the smallest image size it takes: it
prunes (MACs target met within 3%, masked == pruned in eval and training mode, the saved weights reload and
compute the same) with a weight criterion and with a feature-map/gradient one, or it is refused in one line
that says why.  Random weights: only the mechanics are tested.  `python tests/test_model_zoo_coverage.py`
prints the table the README's list comes from."""
from __future__ import annotations

import sys
import time

import pytest
import torch

from prunevo.transfer.setup import Setup
from prunevo.errors import PrunevoError

# family: (smallest member, smallest image size it takes; at most 64 px gets the CIFAR-style stem)
FAMILIES = {
    "alexnet": ("alexnet", 32), "vgg": ("vgg11", 32), "resnet": ("resnet18", 32),
    "resnext": ("resnext50_32x4d", 32), "wide_resnet": ("wide_resnet50_2", 32),
    "regnet_x": ("regnet_x_400mf", 32), "regnet_y": ("regnet_y_400mf", 32), "densenet": ("densenet121", 32),
    "squeezenet": ("squeezenet1_1", 32), "shufflenet_v2": ("shufflenet_v2_x0_5", 32),
    "mobilenet_v2": ("mobilenet_v2", 32), "mobilenet_v3": ("mobilenet_v3_small", 32),
    "mnasnet": ("mnasnet0_5", 32), "efficientnet": ("efficientnet_b0", 32),
    "efficientnet_v2": ("efficientnet_v2_s", 32), "googlenet": ("googlenet", 32),
    "inception_v3": ("inception_v3", 75), "convnext": ("convnext_tiny", 32), "vit": ("vit_b_16", 224),
    "swin": ("swin_t", 32), "maxvit": ("maxvit_t", 64),
}
FORMULAS = ("l1", "taylor")  # a weight criterion, and one that reads F and G (a forward and a backward pass)


def tiny_image_folder(root):
    """3 classes of 32-px PNGs, 6 to train on and 2 to test per class: the mechanics need no more, and
    measuring a 70M-parameter net on a large test split would take most of the test's time."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", 6), ("val", 2)):
        for k in range(3):
            (root / split / f"c{k}").mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / f"c{k}" / f"{i}.png")
    return root


def cover(model: str, size: int, tmp_dir) -> str:
    """'prunes' or 'refused: <the one-line reason>'; asserts every property of a pruned model."""
    from prunevo.pruning.criteria import as_criterion
    from prunevo.transfer import TransferConfig, TransferSession, load_pruned
    from prunevo.transfer.apply import save_pruned
    from prunevo.transfer.results import PruneRecord
    from prunevo.transfer.strategies import _kept

    data = tiny_image_folder(tmp_dir / "images")
    config = TransferConfig(setup=Setup(model=model, dataset=f"imagefolder:{data}", image_size=size), target_macs=0.5,
                            latency=None, calibration_samples=6, calibration_batch=3)
    try:
        session = TransferSession(config)
        x = session.calibration(0).x[:4]
        for formula in FORMULAS:
            chosen = session.select(as_criterion(formula), 0)
            assert abs(chosen.macs_fraction - 0.5) <= 0.015, (model, formula, chosen.macs_fraction)
        # the groups, not the channels chosen, decide whether pruning is exact: one check, on the F/G selection
        pruned = session.prune(chosen.keep, x, chosen.pruned)  # raises unless masked == pruned, eval and train
        save_pruned(tmp_dir, pruned, session, PruneRecord([_kept(session.base_stage, chosen.keep)]), export=False)
    except PrunevoError as exc:
        message = str(exc)
        assert "\n" not in message and message, model
        return f"refused: {message}"
    reloaded = load_pruned(tmp_dir / "pruned_weights.pt")
    with torch.no_grad():
        torch.testing.assert_close(reloaded(x), pruned.eval()(x), rtol=1e-4, atol=1e-4)
    left = f" ({len(session.left_whole)} groups left whole)" if session.left_whole else ""
    return f"prunes{left}"


# refused, and why: attention models by design; ConvNeXt's LayerNorm renormalizes what pruning leaves;
# ShuffleNet's channel shuffle is a reshape Torch-Pruning cannot map
REFUSED = {"vit": "attention", "swin": "attention", "maxvit": "attention",
           "convnext": "normalizes across channels", "shufflenet_v2": "channel shuffle"}


@pytest.mark.slow
@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_torchvision_family_prunes_or_is_refused_in_one_line(family, tmp_path):
    model, size = FAMILIES[family]
    outcome = cover(model, size, tmp_path)
    if family in REFUSED:
        assert outcome.startswith("refused: ") and REFUSED[family] in outcome, outcome
    else:
        assert outcome.startswith("prunes"), outcome


if __name__ == "__main__":  # the README table: family, model, size, outcome, seconds
    import tempfile
    from pathlib import Path

    for family, (model, size) in FAMILIES.items():
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            outcome = cover(model, size, Path(tmp))
        print(f"| {family} | `{model}` | {size} | {outcome} | {time.perf_counter() - start:.0f} s |", flush=True)
    sys.exit(0)
