"""Pruning regimes: how much training follows the pruning, which decides how much the criterion matters.

* **one-shot**: no fine-tuning, BatchNorm statistics re-estimated on a few training batches (EagleEye);
* **short fine-tune**: at most ``SHORT_MAX_EPOCHS`` epoch of fine-tuning;
* **full fine-tune**: more than that.

Reconstruction (``pruning.reconstruct``: the layers that read removed channels refitted by least squares before
BatchNorm is re-estimated) makes a regime of its own: ``one-shot + reconstruction`` and so on.  A criterion that
is good given reconstruction is another criterion (a channel the others predict is cheap to remove).

After a long fine-tune at about 2x fewer FLOPs, published comparisons put the spread between criteria at
0.2-1 pp, the size of seed noise; with no or short fine-tuning and at high pruning ratios the best criterion
leads random by several points (PruningBench; DESIGN.md section 1).  A criterion evolved in one regime is
evidence about that regime only.
"""
from __future__ import annotations

ONE_SHOT, SHORT, FULL = "one-shot", "short fine-tune", "full fine-tune"
REGIMES = (ONE_SHOT, SHORT, FULL)
RECONSTRUCTION = " + reconstruction"  # what reconstruction adds to a regime's name
SHORT_MAX_EPOCHS = 1.0
REGIME_HELP = {
    ONE_SHOT: "0 epochs: prune, re-estimate BatchNorm statistics, done (where criteria differ most)",
    SHORT: f"more than 0 and at most {SHORT_MAX_EPOCHS:g} epoch of fine-tuning",
    FULL: f"more than {SHORT_MAX_EPOCHS:g} epoch of fine-tuning (criteria differ least)",
    ONE_SHOT + RECONSTRUCTION: "0 epochs: prune, refit the layers that read removed channels by least squares on "
                               "calibration images (reconstruct=1, --reconstruct), re-estimate BatchNorm statistics",
}


def regime_of(epochs: float, reconstruct: bool = False) -> str:
    """The regime of a fine-tune budget of ``epochs`` (fractions allowed), with ``reconstruct``: after reconstruction
    (``one-shot + reconstruction``)."""
    base = ONE_SHOT if epochs <= 0 else SHORT if epochs <= SHORT_MAX_EPOCHS else FULL
    return base + RECONSTRUCTION if reconstruct else base


def regimes_text(regimes: list[str]) -> str:
    """One regime, or ``mixed (one-shot, short fine-tune)`` when ``regimes`` (``regime_of``'s) differ."""
    found = list(dict.fromkeys(regimes))
    return found[0] if len(found) == 1 else f"mixed ({', '.join(found)})"
