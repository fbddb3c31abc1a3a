"""Pruning regimes: how much training follows the pruning, which decides how much the criterion matters.

* **one-shot**: no fine-tuning, BatchNorm statistics re-estimated on a few training batches (EagleEye);
* **short fine-tune**: at most ``SHORT_MAX_EPOCHS`` epoch of fine-tuning;
* **full fine-tune**: more than that.

After a long fine-tune at about 2x fewer FLOPs, published comparisons put the spread between criteria at
0.2-1 pp, the size of seed noise; with no or short fine-tuning and at high pruning ratios the best criterion
leads random by several points (PruningBench; DESIGN.md section 1).  A criterion evolved in one regime is
evidence about that regime only.
"""
from __future__ import annotations

ONE_SHOT, SHORT, FULL = "one-shot", "short fine-tune", "full fine-tune"
REGIMES = (ONE_SHOT, SHORT, FULL)
SHORT_MAX_EPOCHS = 1.0
REGIME_HELP = {
    ONE_SHOT: "0 epochs: prune, re-estimate BatchNorm statistics, done (where criteria differ most)",
    SHORT: f"more than 0 and at most {SHORT_MAX_EPOCHS:g} epoch of fine-tuning",
    FULL: f"more than {SHORT_MAX_EPOCHS:g} epoch of fine-tuning (criteria differ least)",
}


def regime_of(epochs: float) -> str:
    """The regime of a fine-tune budget of ``epochs`` (fractions allowed)."""
    if epochs <= 0:
        return ONE_SHOT
    return SHORT if epochs <= SHORT_MAX_EPOCHS else FULL


def regimes_text(epochs: list[float]) -> str:
    """One regime, or ``mixed (one-shot, short fine-tune)`` for budgets of several regimes."""
    found = list(dict.fromkeys(regime_of(e) for e in epochs))
    return found[0] if len(found) == 1 else f"mixed ({', '.join(found)})"
