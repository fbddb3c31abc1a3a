"""The fitness-over-generations plot of a run."""
from __future__ import annotations

from pathlib import Path

from prunevo.pruning.criteria import BASELINE_NAMES
from prunevo.utils import save_png


def plot_fitness(rows: list[dict], baselines: dict[str, float], path: Path, title: str = "") -> None:
    """Best and median fitness per generation against the baselines that apply to every task (``baselines``:
    by name, ``name (allocation)`` under another allocation than the tasks'): the best (classic or Torch-Pruning
    criterion, allocation) pair and random stand out, the others are thin grey lines."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.5, 4.2))
    gens = [r["generation"] for r in rows]
    ax.plot(gens, [r["best"] for r in rows], marker="o", label="best")
    ax.plot(gens, [r["median"] for r in rows], marker=".", alpha=0.7, label="median")
    classics = {n: v for n, v in baselines.items() if n.split(" (")[0] in BASELINE_NAMES}
    best = max(classics, key=classics.get, default=None)
    others = [v for n, v in classics.items() if n != best]
    for i, value in enumerate(others):
        ax.axhline(value, linewidth=0.8, color="0.75", zorder=0,
                   label="other classic and Torch-Pruning criteria" if i == 0 else None)
    if best is not None:
        ax.axhline(classics[best], linestyle="--", linewidth=1.6, color="C3", label=f"best classic: {best}")
    if "random" in baselines:
        ax.axhline(baselines["random"], linestyle=":", linewidth=1.4, color="C2", label="random")
    ax.set_xlabel("generation")
    ax.set_ylabel("fitness (geometric mean of relative accuracy)")
    ax.set_title(title or "prunevo evolution")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_png(fig, path)
    plt.close(fig)
