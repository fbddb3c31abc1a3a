"""The fitness-over-generations plot of a run."""
from __future__ import annotations

from pathlib import Path

from prunevo.utils import save_png


def plot_fitness(rows: list[dict], baselines: dict[str, float], path: Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    gens = [r["generation"] for r in rows]
    ax.plot(gens, [r["best"] for r in rows], marker="o", label="best")
    ax.plot(gens, [r["median"] for r in rows], marker=".", alpha=0.7, label="median")
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (name, value) in enumerate(sorted(baselines.items(), key=lambda kv: -kv[1])):
        style = ":" if name == "random" else "--"
        ax.axhline(value, linestyle=style, linewidth=1, color=colors[(i + 2) % len(colors)], label=name)
    ax.set_xlabel("generation")
    ax.set_ylabel("fitness (geometric mean of relative accuracy)")
    ax.set_title(title or "prunevo evolution")
    ax.legend(fontsize=7, ncol=2, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_png(fig, path)
    plt.close(fig)
