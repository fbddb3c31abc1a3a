"""``prunevo compare``: every criterion through the same pipeline, same seeds, same budgets.

Writes ``compare.json`` (every run), ``compare.md`` (mean ± std per criterion, with a "vs random"
column) and ``compare.png`` (accuracy vs MACs and vs measured latency).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from prunevo.transfer.report import CompareRow, compare_markdown, plot_compare, summarize
from prunevo.transfer.session import ApplyResult, Measurement, TransferConfig, TransferSession, criteria_from
from prunevo.utils import atomic_write_json, atomic_write_text

DEFAULT_CRITERIA = ("l1", "l2", "bn", "taylor", "random")


@dataclass
class CompareResult:
    base: Measurement
    runs: list[ApplyResult]
    rows: list[CompareRow]
    markdown: str
    wall_s: float


def compare_criteria(criteria: list, config: TransferConfig, seeds: tuple[int, ...] = (0, 1, 2),
                     out_dir: str | Path | None = None, progress: bool = False,
                     session: TransferSession | None = None) -> CompareResult:
    """Run ``apply`` for every criterion and seed; summarize with mean ± std and the gap to random."""
    from tqdm.auto import tqdm

    start = time.perf_counter()
    session = session or TransferSession(config, progress=progress)
    names = list(dict.fromkeys(criteria))
    if "random" not in names:
        names.append("random")  # every comparison is against random under the same budget
    runs: list[ApplyResult] = []
    jobs = [(name, seed) for name in names for seed in seeds]
    for name, seed in tqdm(jobs, desc="compare", disable=not progress):
        (criterion,) = criteria_from([name], seed)
        _, result, _ = session.run(criterion, seed)
        runs.append(result)
    rows = summarize(runs)
    title = (f"{config.model} on {config.dataset}: "
             + (f"{config.target_macs:.0%} MACs" if config.target_macs is not None else f"{config.channel_ratio:.0%} channels removed")
             + f", {config.finetune.epochs} fine-tune epochs ({config.finetune.lr_schedule}), seeds {list(seeds)}")
    markdown = compare_markdown(rows, session.base, title)
    wall = round(time.perf_counter() - start, 1)
    if out_dir is not None:
        out = Path(out_dir)
        atomic_write_json(out / "compare.json", {"config": asdict(config), "seeds": list(seeds),
                                                 "base": asdict(session.base), "runs": [r.to_dict() for r in runs],
                                                 "summary": [asdict(r) for r in rows], "wall_s": wall})
        atomic_write_text(out / "compare.md", markdown)
        plot_compare(runs, session.base, out / "compare.png")
    return CompareResult(session.base, runs, rows, markdown, wall)
