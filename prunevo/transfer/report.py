"""Reports of transfer runs: ``report.json`` / ``report.md`` for apply, tables and plots for compare."""
from __future__ import annotations

import statistics
from dataclasses import dataclass

from prunevo.transfer.session import ApplyResult, Measurement
from prunevo.utils import save_png


def _ms(m: Measurement, device: str, batch: int) -> str:
    value = m.latency_ms.get(device, {}).get(batch)
    return f"{value:.2f}" if value is not None else "-"


def _acc(m: Measurement) -> str:
    return f"{m.top1:.4f}" + (f" / {m.top5:.4f}" if m.top5 is not None else "")


def apply_markdown(result: ApplyResult, config: dict) -> str:
    b, a = result.before, result.after
    devices = sorted(set(b.latency_ms) | set(a.latency_ms))
    batches = sorted({k for m in (b, a) for d in m.latency_ms.values() for k in d})
    lines = [
        f"# prunevo apply: {config['model']} on {config['dataset']}",
        "",
        f"- criterion: `{result.criterion}`" + (f" = `{result.formula}`" if result.formula and result.formula != result.criterion else ""),
        "- target: " + (f"{config['target_macs']:.0%} of the MACs" if config.get("target_macs") is not None
                         else f"{config['channel_ratio']:.0%} of the channels removed")
        + f" ({config['selection']} selection, group reduction {config['group_reduction']}, Domino-{config['domino']})",
        f"- fine-tuning: {config['finetune']['epochs']} epochs, lr {config['finetune']['lr']}, "
        f"schedule {config['finetune']['lr_schedule']}; seed {result.seed}",
        "",
        "| | params | MACs | top-1" + (" / top-5" if a.top5 is not None else "") + " | "
        + " | ".join(f"{d} b{k} ms" for d in devices for k in batches) + " |",
        "|---|---:|---:|---:|" + "---:|" * (len(devices) * len(batches)),
    ]
    for label, m in (("before", b), ("after", a)):
        lat = " | ".join(_ms(m, d, k) for d in devices for k in batches)
        lines.append(f"| {label} | {m.params:,} | {m.macs:,} | {_acc(m)} | {lat} |")
    lines += [
        "",
        f"MACs kept: {a.macs / max(1, b.macs):.1%}; params kept: {a.params / max(1, b.params):.1%}; "
        f"top-1 right after pruning (BatchNorm recalibrated): {result.pruned_top1:.4f}.",
        "",
        "Channels kept per group: " + ", ".join(f"{k} {v[0]}/{v[1]}" for k, v in result.kept.items()),
        "",
        "Wall time (s): " + ", ".join(f"{k} {v}" for k, v in result.wall_s.items()),
        "",
    ]
    return "\n".join(lines)


@dataclass
class CompareRow:
    criterion: str
    formula: str | None
    runs: int
    top1_mean: float
    top1_std: float
    vs_random: float | None
    macs_fraction: float
    params: int
    latency_ms: dict[str, dict[int, float]]  # mean over seeds


def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def summarize(results: list[ApplyResult]) -> list[CompareRow]:
    by_name: dict[str, list[ApplyResult]] = {}
    for r in results:
        by_name.setdefault(r.criterion, []).append(r)
    random_mean = _mean([r.after.top1 for r in by_name.get("random", [])]) if "random" in by_name else None
    rows = []
    for name, runs in by_name.items():
        accs = [r.after.top1 for r in runs]
        latency: dict[str, dict[int, float]] = {}
        for device in runs[0].after.latency_ms:
            latency[device] = {b: round(_mean([r.after.latency_ms[device][b] for r in runs]), 4)
                               for b in runs[0].after.latency_ms[device]}
        mean = _mean(accs)
        rows.append(CompareRow(name, runs[0].formula, len(runs), mean, statistics.stdev(accs) if len(accs) > 1 else 0.0,
                               None if random_mean is None else mean - random_mean,
                               _mean([r.macs_fraction for r in runs]), round(_mean([r.after.params for r in runs])),
                               latency))
    return sorted(rows, key=lambda r: -r.top1_mean)


def compare_markdown(rows: list[CompareRow], base: Measurement, title: str) -> str:
    devices = sorted({d for r in rows for d in r.latency_ms} | set(base.latency_ms))
    batches = sorted({k for d in base.latency_ms.values() for k in d})
    lat_cols = [f"{d} b{k} ms" for d in devices for k in batches]
    def cells(values: list[str]) -> str:
        return "".join(f" {v} |" for v in values)

    lines = [f"# {title}", "",
             "| criterion | top-1 (mean ± std) | vs random | MACs kept | params |" + cells(lat_cols),
             "|---|---:|---:|---:|---:|" + "---:|" * len(lat_cols)]
    lines.append(f"| unpruned | {base.top1:.4f} | | 100% | {base.params:,} |"
                 + cells([_ms(base, d, k) for d in devices for k in batches]))
    for r in rows:
        lat = [f"{r.latency_ms.get(d, {}).get(k, float('nan')):.2f}" for d in devices for k in batches]
        vs = "" if r.vs_random is None else f"{r.vs_random:+.4f}"
        lines.append(f"| {r.criterion} | {r.top1_mean:.4f} ± {r.top1_std:.4f} | {vs} | {r.macs_fraction:.1%} | "
                     f"{r.params:,} |" + cells(lat))
    formulas = [r for r in rows if r.formula and r.formula != r.criterion]
    if formulas:
        lines += ["", "Formulas: " + "; ".join(f"`{r.criterion}` = `{r.formula}`" for r in formulas)]
    return "\n".join(lines) + "\n"


def plot_compare(results: list[ApplyResult], base: Measurement, path) -> None:
    """Accuracy vs MACs and vs measured latency (batch 1, the first device), one marker per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    device = "cuda" if any("cuda" in r.after.latency_ms for r in results) else "cpu"
    has_latency = all(device in r.after.latency_ms for r in results)
    fig, axes = plt.subplots(1, 2 if has_latency else 1, figsize=(11 if has_latency else 6, 4.2), squeeze=False)
    names = list(dict.fromkeys(r.criterion for r in results))
    for i, name in enumerate(names):
        runs = [r for r in results if r.criterion == name]
        color = f"C{i % 10}"
        axes[0][0].scatter([r.after.macs / 1e6 for r in runs], [r.after.top1 for r in runs], color=color, label=name)
        if has_latency:
            batch = min(runs[0].after.latency_ms[device])
            axes[0][1].scatter([r.after.latency_ms[device][batch] for r in runs], [r.after.top1 for r in runs],
                               color=color, label=name)
    axes[0][0].axhline(base.top1, color="grey", linestyle="--", label="unpruned")
    axes[0][0].set(xlabel="MACs (M)", ylabel="top-1", title="accuracy vs MACs")
    if has_latency:
        batch = min(base.latency_ms.get(device, {1: 0}))
        axes[0][1].axhline(base.top1, color="grey", linestyle="--")
        axes[0][1].set(xlabel=f"{device} latency, batch {batch} (ms)", ylabel="top-1", title="accuracy vs latency")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    save_png(fig, path)
    plt.close(fig)
