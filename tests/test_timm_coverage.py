"""The smallest member of each timm CNN family, by name (``timm:NAME``, no weights downloaded): it prunes
(MACs target met within 3%, masked == pruned in eval and training mode, the saved weights reload and compute
the same) with a weight criterion and a feature-map/gradient one, or it is refused in one line that says why.
Random weights: only the mechanics are tested.  `python -m tests.test_timm_coverage` prints the README's table."""
from __future__ import annotations

import sys
import time

import pytest

from tests.test_model_zoo_coverage import cover

pytest.importorskip("timm")

# family: (smallest member, image size)
FAMILIES = {
    "resnet": ("resnet10t", 32), "resnet-d": ("resnet18d", 32), "efficientnet": ("efficientnet_b0", 32),
    "mobilenetv3": ("mobilenetv3_small_050", 32), "regnet": ("regnetx_002", 32), "ghostnet": ("ghostnet_050", 32),
    "rexnet": ("rexnet_100", 32), "cspnet": ("cs3darknet_s", 32), "dla": ("dla34", 32),
    "hrnet": ("hrnet_w18_small", 64), "sknet": ("skresnet18", 32), "resnest": ("resnest14d", 32),
    "convnext": ("convnext_atto", 32), "vit": ("vit_tiny_patch16_224", 224),
}
# pruned, with the groups whose channels pass through a construct the pruner cannot follow left whole: GhostNet's
# cat(primary, cheap)[:, :oup], ReXNet's partial residuals (their analysis cycles, bounded), ResNeSt's split attention
LEFT_WHOLE = ("ghostnet", "rexnet", "resnest")
# refused, and why: the constructs named (see README "What is pruned")
REFUSED = {
    "sknet": "left whole",  # split attention views the residual streams' channels as (radix, C): 50% is out of reach
    "cspnet": "at a concatenation of a tensor whose channels it cannot count",
    "convnext": "normalizes across channels", "vit": "attention",
}


@pytest.mark.slow
@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_timm_family_prunes_or_is_refused_in_one_line(family, tmp_path):
    model, size = FAMILIES[family]
    outcome = cover(f"timm:{model}", size, tmp_path)
    if family in REFUSED:
        assert outcome.startswith("refused: ") and REFUSED[family] in outcome, outcome
    else:
        assert outcome.startswith("prunes") and ("left whole" in outcome) == (family in LEFT_WHOLE), outcome


if __name__ == "__main__":  # the README table: family, model, size, outcome, seconds
    import tempfile
    from pathlib import Path

    for family, (model, size) in FAMILIES.items():
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            outcome = cover(f"timm:{model}", size, Path(tmp))
        print(f"| {family} | `timm:{model}` | {size} | {outcome} | {time.perf_counter() - start:.0f} s |", flush=True)
    sys.exit(0)
