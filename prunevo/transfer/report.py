"""Reports of transfer runs: ``report.json`` / ``report.md`` for apply, tables and plots for compare."""
from __future__ import annotations

import statistics
from dataclasses import dataclass

from prunevo.pruning.allocation import ALLOCATIONS
from prunevo.pruning.criteria import BASELINE_NAMES, RANDOM
from prunevo.transfer.results import ApplyResult, Measurement
from prunevo.utils import save_png


def _ms(m: Measurement, device: str, batch: int) -> str:
    value = m.latency_ms.get(device, {}).get(batch)
    return f"{value:.2f}" if value is not None else "-"


def _acc(m: Measurement) -> str:
    return f"{m.top1:.4f}" + (f" / {m.top5:.4f}" if m.top5 is not None else "")


def target_text(config: dict) -> str:
    rounding = config.get("round_to") or 1
    rounded = f", widths rounded to multiples of {rounding}" if rounding > 1 else ""
    if config.get("target_latency") is not None:
        return f"{config['target_latency']:.0%} of the measured latency{rounded}"
    if config.get("target_macs") is not None:
        return f"{config['target_macs']:.0%} of the MACs{rounded}"
    return f"{config['channel_ratio']:.0%} of the channels removed{rounded}"


def apply_markdown(result: ApplyResult, config: dict, augmentation: str = "", note: str | None = None,
                   left_whole: list[str] | tuple[str, ...] = ()) -> str:
    b, a = result.before, result.after
    devices = sorted(set(b.latency_ms) | set(a.latency_ms))
    batches = sorted({k for m in (b, a) for d in m.latency_ms.values() for k in d})
    lines = [
        f"# prunevo apply: {config['setup']['model']} on {config['setup']['dataset']}",
        "",
        f"- criterion: `{result.criterion}`"
        + (f" = `{result.formula}`" if result.formula and result.formula != result.criterion else ""),
        "- target: " + target_text(config) + f"; strategy {result.strategy}"
        + (f" ({config['cycles']} cycles)" if config["strategy"] in ("iterative", "unstructured") else "")
        + f", group reduction {config['group_reduction']}, Domino-{config['domino']}",
        f"- regime: {config.get('regime', '')}; fine-tuning: {config['finetune']['epochs']} epochs, lr "
        f"{config['finetune']['lr']}, schedule {config['finetune']['lr_schedule']}; seed {result.seed}"
        + (f"; augmentation: {augmentation}" if augmentation else ""),
        *([f"- {note}"] if note else []),
        "",
        "| | params | MACs | top-1" + (" / top-5" if a.top5 is not None else "") + " |"
        + "".join(f" {d} b{k} ms |" for d in devices for k in batches),
        "|---|---:|---:|---:|" + "---:|" * (len(devices) * len(batches)),
    ]
    for label, m in (("before", b), ("after", a)):
        lat = "".join(f" {_ms(m, d, k)} |" for d in devices for k in batches)
        lines.append(f"| {label} | {m.params:,} | {m.macs:,} | {_acc(m)} |{lat}")
    lines += [
        "",
        f"MACs kept: {a.macs / max(1, b.macs):.1%}; params kept: {a.params / max(1, b.params):.1%}; "
        f"top-1 right after pruning ({'reconstructed, ' if result.reconstruction else ''}BatchNorm recalibrated): "
        f"{result.pruned_top1:.4f}.",
        "",
        *([_reconstruction_line(result.reconstruction), ""] if result.reconstruction else []),
        "Channels kept per group: " + ", ".join(f"{k} {v[0]}/{v[1]}" for k, v in result.kept.items()),
        "",
        *(["Left whole (not pruned: pruning them does not compute what masking them does, see README \"What is "
           "pruned\"): " + "; ".join(left_whole), ""] if left_whole else []),
        *([f"Removed blocks/layers ({len(result.removed)} modules): " + ", ".join(result.removed), ""]
          if result.removed else []),
        *([f"Zero weights: {result.sparsity:.1%} of all conv/linear weights (unstructured: the shapes, MACs and "
           f"latency of the dense model are unchanged).", ""] if result.sparsity is not None else []),
        *([f"Random search: held-out top-1 of the {len(result.search_top1)} candidate configurations: "
           + ", ".join(f"{v:.4f}" for v in result.search_top1), ""] if result.search_top1 else []),
        "Wall time (s): " + ", ".join(f"{k} {v}" for k, v in result.wall_s.items()),
        "",
    ]
    return "\n".join(lines)


def _reconstruction_line(summary: dict) -> str:
    return (f"Reconstruction: {summary['layers']} layers that read removed channels refitted in "
            f"{summary['seconds']:.1f} s; their output error relative to the unpruned layers' (mean over layers, on "
            f"the calibration images): {summary['error_before']:.3f} masked, {summary['error_after']:.3f} refitted.")


@dataclass
class CompareRow:
    criterion: str
    formula: str | None
    strategy: str
    runs: int
    top1_mean: float
    top1_std: float
    vs_random: float | None
    macs_fraction: float
    params: int
    latency_ms: dict[str, dict[int, float]]  # mean over seeds
    sparsity: float | None = None  # unstructured pruning
    vs_best_classic: float | None = None  # gap to the best classic or Torch-Pruning criterion of the strategy
    not_applicable: str | None = None  # why the criterion does not apply (then nothing was run)
    # the one-shot numbers: top-1 after pruning and BatchNorm re-estimation, before any fine-tuning
    pruned_mean: float = float("nan")
    pruned_std: float = float("nan")
    pruned_vs_best_classic: float | None = None  # gap to the best classic of the strategy in this number


def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def _std(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def verdict_lines(results: list[ApplyResult], rows: list[CompareRow], finetuned: bool) -> list[str]:
    """Every criterion against the best classic of its strategy, paired by seed, with 95% intervals: on the
    top-1 right after pruning (one-shot) and, when there was fine-tuning, on the top-1 after it."""
    from prunevo.verdict import paired_difference, verdict

    def per_seed(strategy: str, name: str, one_shot: bool) -> dict[int, float]:
        return {r.seed: (r.pruned_top1 if one_shot else r.after.top1) for r in results
                if (r.strategy, r.criterion) == (strategy, name)}

    lines = []
    strategies = [s for s in dict.fromkeys(r.strategy for r in rows) if s != "unstructured"]
    for strategy in strategies:
        for one_shot in ([True, False] if finetuned else [True]):
            best = best_classic(rows, strategy, one_shot)
            if best is None:
                continue
            where = "one-shot top-1" if one_shot else "top-1 after fine-tuning"
            where += f" ({strategy})" if len(strategies) > 1 else ""
            theirs = per_seed(strategy, best.criterion, one_shot)
            for row in rows:
                if row.strategy != strategy or row.not_applicable or row.criterion == best.criterion:
                    continue
                mine = per_seed(strategy, row.criterion, one_shot)
                seeds = sorted(set(mine) & set(theirs))
                if seeds:
                    diff = paired_difference([mine[k] for k in seeds], [theirs[k] for k in seeds])
                    lines.append(verdict(row.criterion, best.criterion, diff, where))
    allocations = [s for s in strategies if s in ALLOCATIONS]
    if len(allocations) < 2:
        return lines
    # several allocations side by side: each criterion that is not a baseline, under each allocation, against the
    # best (classic, allocation) pair, so that a win is the criterion's and not uniform widths losing
    for one_shot in ([True, False] if finetuned else [True]):
        best = best_pair(rows, allocations, one_shot)
        if best is None:
            continue
        theirs = per_seed(best.strategy, best.criterion, one_shot)
        where = ("one-shot top-1" if one_shot else "top-1 after fine-tuning") + " (best (criterion, allocation) pair)"
        for row in rows:
            if row.strategy not in allocations or row.not_applicable or row.criterion in (*BASELINE_NAMES, RANDOM):
                continue
            mine = per_seed(row.strategy, row.criterion, one_shot)
            seeds = sorted(set(mine) & set(theirs))
            if seeds:
                diff = paired_difference([mine[k] for k in seeds], [theirs[k] for k in seeds])
                lines.append(verdict(f"{row.criterion} ({row.strategy})", f"{best.criterion} ({best.strategy})",
                                     diff, where))
    return lines


def best_pair(rows: list[CompareRow], allocations: list[str], one_shot: bool = False) -> CompareRow | None:
    """The best (classic or Torch-Pruning criterion, allocation) pair among ``allocations``' columns."""
    bests = [b for b in (best_classic(rows, a, one_shot) for a in allocations) if b is not None]
    return max(bests, key=lambda r: r.pruned_mean if one_shot else r.top1_mean, default=None)


def best_classic(rows: list[CompareRow], strategy: str, one_shot: bool = False) -> CompareRow | None:
    """The best classic or Torch-Pruning criterion run under ``strategy`` (n/a ones excluded), by top-1 after
    fine-tuning, or (``one_shot``) right after pruning and BatchNorm re-estimation."""
    candidates = [r for r in rows if r.strategy == strategy and r.criterion in BASELINE_NAMES and not r.not_applicable]
    return max(candidates, key=lambda r: r.pruned_mean if one_shot else r.top1_mean, default=None)


def summarize(results: list[ApplyResult], not_applicable: dict[tuple[str, str], str] | None = None) -> list[CompareRow]:
    """One row per (strategy, criterion), sorted by strategy then accuracy (n/a last); "vs random" and "vs
    best classic" within a strategy."""
    by_key: dict[tuple[str, str], list[ApplyResult]] = {}
    for r in results:
        by_key.setdefault((r.strategy, r.criterion), []).append(r)
    rows = []
    for (strategy, name), runs in by_key.items():
        randoms = by_key.get((strategy, "random"))
        random_mean = _mean([r.after.top1 for r in randoms]) if randoms else None
        accs = [r.after.top1 for r in runs]
        latency: dict[str, dict[int, float]] = {}
        for device in runs[0].after.latency_ms:
            latency[device] = {b: round(_mean([r.after.latency_ms[device][b] for r in runs]), 4)
                               for b in runs[0].after.latency_ms[device]}
        mean = _mean(accs)
        sparsities = [r.sparsity for r in runs if r.sparsity is not None]
        pruned = [r.pruned_top1 for r in runs]
        rows.append(CompareRow(name, runs[0].formula, strategy, len(runs), mean, _std(accs),
                               None if random_mean is None else mean - random_mean,
                               _mean([r.macs_fraction for r in runs]), round(_mean([r.after.params for r in runs])),
                               latency, _mean(sparsities) if sparsities else None,
                               pruned_mean=_mean(pruned), pruned_std=_std(pruned)))
    for (strategy, name), why in (not_applicable or {}).items():
        rows.append(CompareRow(name, None, strategy, 0, float("nan"), float("nan"), None, float("nan"), 0, {},
                               not_applicable=why))
    bests = {s: best_classic(rows, s) for s in {r.strategy for r in rows}}
    one_shot_bests = {s: best_classic(rows, s, one_shot=True) for s in {r.strategy for r in rows}}
    for row in rows:
        best, one_shot_best = bests[row.strategy], one_shot_bests[row.strategy]
        if best is not None and not row.not_applicable:
            row.vs_best_classic = row.top1_mean - best.top1_mean
            row.pruned_vs_best_classic = row.pruned_mean - one_shot_best.pruned_mean
    order = list(dict.fromkeys([r.strategy for r in results] + [s for s, _ in (not_applicable or {})]))
    return sorted(rows, key=lambda r: (order.index(r.strategy), bool(r.not_applicable),
                                       -r.top1_mean if not r.not_applicable else 0.0))


def compare_markdown(rows: list[CompareRow], base: Measurement, title: str, finetuned: bool = False,
                     verdicts: list[str] | None = None) -> str:
    """The comparison table: with ``finetuned``, the one-shot top-1 (right after pruning and BatchNorm
    re-estimation) and its gap to the best classic come before the fine-tuned top-1; then ``verdicts``."""
    devices = sorted({d for r in rows for d in r.latency_ms} | set(base.latency_ms))
    batches = sorted({k for d in base.latency_ms.values() for k in d})
    lat_cols = [f"{d} b{k} ms" for d in devices for k in batches]
    def cells(values: list[str]) -> str:
        return "".join(f" {v} |" for v in values)

    several = len({r.strategy for r in rows}) > 1
    strategy_head, strategy_rule = ("strategy | ", "---|") if several else ("", "")
    one_shot_head, one_shot_rule = ("one-shot top-1 | vs best classic | ", "---:|---:|") if finetuned else ("", "")
    top1_head = "top-1 after fine-tuning" if finetuned else "top-1"
    lines = [f"# {title}", "",
             f"| {strategy_head}criterion | {one_shot_head}{top1_head} (mean ± std) | vs random | vs best classic | "
             f"MACs kept | params |" + cells(lat_cols),
             f"|{strategy_rule}---|{one_shot_rule}---:|---:|---:|---:|---:|" + "---:|" * len(lat_cols)]
    lines.append(f"| {'| ' if several else ''}unpruned | {'| | ' if finetuned else ''}{base.top1:.4f} | | | 100% | "
                 f"{base.params:,} |" + cells([_ms(base, d, k) for d in devices for k in batches]))
    for r in rows:
        head = f"| {r.strategy + ' | ' if several else ''}{r.criterion} |"
        if r.not_applicable:
            lines.append(f"{head} n/a: {r.not_applicable} | {'| | ' if finetuned else ''}| | | |"
                         + cells([""] * len(lat_cols)))
            continue
        if finetuned:
            gap = "" if r.pruned_vs_best_classic is None else f"{r.pruned_vs_best_classic:+.4f}"
            head += f" {r.pruned_mean:.4f} ± {r.pruned_std:.4f} | {gap} |"
        lat = [f"{r.latency_ms.get(d, {}).get(k, float('nan')):.2f}" for d in devices for k in batches]
        vs = "" if r.vs_random is None else f"{r.vs_random:+.4f}"
        vs_best = "" if r.vs_best_classic is None else f"{r.vs_best_classic:+.4f}"
        kept = f"{r.macs_fraction:.1%}" + (f" (dense; {r.sparsity:.1%} zero weights)" if r.sparsity is not None else "")
        lines.append(f"{head} {r.top1_mean:.4f} ± {r.top1_std:.4f} | {vs} | {vs_best} | {kept} | {r.params:,} |"
                     + cells(lat))
    strategies = [s for s in dict.fromkeys(r.strategy for r in rows) if s != "unstructured"]  # no criterion there
    bests = [(s, best_classic(rows, s)) for s in strategies]
    lines += ["", "Best classic (the best of the classic and Torch-Pruning criteria in this table; n/a ones left "
                  "out): " + "; ".join(f"{s + ': ' if several else ''}"
                                       + (f"{b.criterion} {b.top1_mean:.4f}" if b else "none") for s, b in bests)]
    if finetuned:
        one_shot_bests = [(s, best_classic(rows, s, one_shot=True)) for s in strategies]
        lines[-1] += "; one-shot: " + "; ".join(f"{s + ': ' if several else ''}"
                                                + (f"{b.criterion} {b.pruned_mean:.4f}" if b else "none")
                                                for s, b in one_shot_bests)
    allocations = [s for s in strategies if s in ALLOCATIONS]
    if len(allocations) > 1:
        pairs = [(label, best_pair(rows, allocations, one_shot)) for label, one_shot in
                 ([("after fine-tuning", False), ("one-shot", True)] if finetuned else [("", False)])]
        lines += ["", "Best (criterion, allocation) pair over " + ", ".join(allocations) + ": " + "; ".join(
            f"{label + ': ' if label else ''}{b.criterion} ({b.strategy}) "
            f"{b.pruned_mean if label == 'one-shot' else b.top1_mean:.4f}" for label, b in pairs if b is not None)]
    if verdicts:
        lines += ["", "Verdicts (each criterion against the best classic, paired by seed; 95% intervals of the "
                      "mean difference):", "", *(f"- {v}" for v in verdicts)]
    formulas: dict[str, dict[str, list[str]]] = {}  # criterion -> formula -> the strategies that ran it
    for r in rows:
        if r.formula and r.formula != r.criterion:
            formulas.setdefault(r.criterion, {}).setdefault(r.formula, []).append(r.strategy)
    if formulas:  # a classic runs normalized under global allocation (pruning.criteria.as_baseline)
        lines += ["", "Formulas: " + "; ".join(
            f"`{name}` = " + ", ".join(f"`{text}`" + (f" ({', '.join(where)})" if len(texts) > 1 else "")
                                       for text, where in texts.items())
            for name, texts in formulas.items())]
    return "\n".join(lines) + "\n"


def grid_markdown(rows: list[CompareRow], base: Measurement, strategies: list[str],
                  latency_key: tuple[str, int] | None) -> str:
    """Criteria x strategies: each cell top-1 (gap to random in that strategy), MACs kept and latency."""
    by = {(r.criterion, r.strategy): r for r in rows}
    criteria = list(dict.fromkeys(r.criterion for r in rows if r.strategy != "unstructured"))
    device, batch = latency_key or ("", 0)
    base_ms = base.latency_ms.get(device, {}).get(batch)
    unit = f"{device} b{batch} ms" if latency_key else ""
    lines = ["Criteria x strategies: top-1 (vs random), MACs kept" + (f", {unit}" if unit else "")
             + f"; unpruned: {base.top1:.4f}, 100%" + (f", {base_ms:.2f} ms" if base_ms else ""), "",
             "| criterion | " + " | ".join(s for s in strategies if s != "unstructured") + " |",
             "|---|" + "---:|" * len([s for s in strategies if s != "unstructured"])]
    for name in criteria:
        cells = []
        for strategy in strategies:
            if strategy == "unstructured":
                continue
            r = by.get((name, strategy))
            if r is None or r.not_applicable:
                cells.append("-" if r is None else "n/a")
                continue
            vs = f" ({r.vs_random:+.4f})" if r.vs_random is not None and name != "random" else ""
            ms = r.latency_ms.get(device, {}).get(batch)
            latency = f", {ms:.2f} ms" if ms is not None else ""
            cells.append(f"{r.top1_mean:.4f}{vs}<br>{r.macs_fraction:.0%}{latency}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    columns = [s for s in strategies if s != "unstructured"]
    bests = [best_classic(rows, s) for s in columns]
    best_cells = (f"{b.criterion} {b.top1_mean:.4f}" if b else "-" for b in bests)
    lines.append("| best classic | " + " | ".join(best_cells) + " |")
    for r in rows:
        if r.strategy == "unstructured":
            lines += ["", "Unstructured IMP baseline (global weight magnitude, same cycles): "
                          f"top-1 {r.top1_mean:.4f} ± {r.top1_std:.4f} at {r.sparsity:.1%} zero weights; "
                          "dense shapes, so no MACs or latency gain."]
    return "\n".join(lines) + "\n"


ONE_TARGET = 0.05  # runs whose MACs shares differ by less than this (relative) were pruned to one target


def one_target(results: list[ApplyResult]) -> bool:
    """Whether every run kept about the same share of the MACs (a single target): then an accuracy-vs-MACs
    scatter puts every criterion at one x position, and a per-criterion chart says more."""
    fractions = [r.macs_fraction for r in results]
    return bool(fractions) and max(fractions) - min(fractions) <= ONE_TARGET * max(fractions)


def plot_compare(results: list[ApplyResult], base: Measurement, path) -> None:
    """One target: top-1 per criterion, mean ± std over seeds, sorted, random and the unpruned net as lines.
    Several targets: accuracy vs MACs and vs measured latency (batch 1, the first device), a marker per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if one_target(results):
        return _plot_one_target(results, base, path)
    device = "cuda" if any("cuda" in r.after.latency_ms for r in results) else "cpu"
    has_latency = all(device in r.after.latency_ms for r in results)
    strategies = list(dict.fromkeys(r.strategy for r in results))
    width = 11 if has_latency else 6
    fig, axes = plt.subplots(1, 2 if has_latency else 1, figsize=(width, 4.2), squeeze=False)
    names = list(dict.fromkeys(r.criterion for r in results))
    markers = "osD^v<>pP*X"
    # one strategy: a colour per criterion; several: a colour per strategy and a marker per criterion
    for key in dict.fromkeys((r.strategy, r.criterion) for r in results):
        runs = [r for r in results if (r.strategy, r.criterion) == key]
        strategy, name = key
        if len(strategies) > 1:
            color, marker, label = f"C{strategies.index(strategy) % 10}", markers[names.index(name) % len(markers)], \
                f"{strategy}: {name}"
        else:
            color, marker, label = f"C{names.index(name) % 10}", "o", name
        axes[0][0].scatter([r.after.macs / 1e6 for r in runs], [r.after.top1 for r in runs], color=color,
                           marker=marker, label=label)
        if has_latency:
            batch = min(runs[0].after.latency_ms[device])
            axes[0][1].scatter([r.after.latency_ms[device][batch] for r in runs], [r.after.top1 for r in runs],
                               color=color, marker=marker, label=label)
    axes[0][0].axhline(base.top1, color="grey", linestyle="--", label="unpruned")
    axes[0][0].set(xlabel="MACs (M)", ylabel="top-1", title="accuracy vs MACs")
    if has_latency:
        batch = min(base.latency_ms.get(device, {1: 0}))
        axes[0][1].axhline(base.top1, color="grey", linestyle="--")
        axes[0][1].set(xlabel=f"{device} latency, batch {batch} (ms)", ylabel="top-1", title="accuracy vs latency")
    if len(strategies) > 1:  # one entry per colour and one per marker, beside the plots, not over the points
        from matplotlib.lines import Line2D

        handles = [Line2D([], [], color=f"C{i % 10}", marker="s", linestyle="", label=s)
                   for i, s in enumerate(strategies)]
        handles += [Line2D([], [], color="0.3", marker=markers[i % len(markers)], linestyle="", label=n)
                    for i, n in enumerate(names)]
        handles.append(Line2D([], [], color="grey", linestyle="--", label="unpruned"))
        axes[0][-1].legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    else:
        axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    save_png(fig, path)
    plt.close(fig)


def _plot_one_target(results: list[ApplyResult], base: Measurement, path) -> None:
    import matplotlib.pyplot as plt

    strategies = list(dict.fromkeys(r.strategy for r in results))
    bars = []  # (label, mean, std, is random)
    for key in dict.fromkeys((r.strategy, r.criterion) for r in results):
        accs = [r.after.top1 for r in results if (r.strategy, r.criterion) == key]
        label = f"{key[0]}: {key[1]}" if len(strategies) > 1 else key[1]
        bars.append((label, statistics.fmean(accs), statistics.stdev(accs) if len(accs) > 1 else 0.0,
                     key[1] == "random"))
    bars.sort(key=lambda b: b[1])
    fig, ax = plt.subplots(figsize=(7.5, 0.9 + 0.32 * len(bars)))
    ys = range(len(bars))
    ax.barh(ys, [b[1] for b in bars], xerr=[b[2] for b in bars], capsize=3,
            color=["0.7" if b[3] else "C0" for b in bars])
    ax.set_yticks(list(ys), [b[0] for b in bars], fontsize=8)
    randoms = [b for b in bars if b[3]]
    if len(randoms) == 1:  # several strategies: each one's random is its own grey bar instead
        ax.axvline(randoms[0][1], color="0.4", linestyle=":", label=f"random {randoms[0][1]:.4f}")
    ax.axvline(base.top1, color="grey", linestyle="--", label=f"unpruned {base.top1:.4f}")
    low = min(b[1] - b[2] for b in bars)
    high = max(base.top1, *(b[1] + b[2] for b in bars))
    ax.set_xlim(max(0.0, low - 0.1 * (base.top1 - low + 1e-3)), min(1.0, high + 0.01))
    share = statistics.fmean(r.macs_fraction for r in results)
    ax.set(xlabel="top-1 (mean ± std over seeds)", title=f"top-1 at {share:.0%} of the MACs")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    save_png(fig, path)
    plt.close(fig)
