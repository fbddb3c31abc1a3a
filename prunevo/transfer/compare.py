"""``prunevo compare`` and ``prunevo benchmark``: criteria x strategies through one pipeline, same seeds.

Writes ``<name>.json`` (every run), ``<name>.md`` (mean ± std per criterion and strategy with a "vs
random" column, and a criteria x strategies grid when there are several strategies) and ``<name>.png``
(accuracy vs MACs and vs measured latency).

Strategies are named like table columns: ``uniform``, ``global``, ``random-search`` (channel pruning
with that allocation), ``layer``, ``iterative`` (uniform), ``iterative-global``, ``unstructured``.
When layer pruning is compared with channel strategies under a MACs target and ``match_latency`` is
on, the layer runs go first and the channel strategies then target their median measured latency.
"""
from __future__ import annotations

import logging
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from prunevo.errors import ModelError, NotApplicableError, PrunevoError, TargetUnreachable
from prunevo.pruning.criteria import BASELINE_NAMES, as_baseline
from prunevo.transfer.config import TransferConfig
from prunevo.transfer.report import (
    CompareRow,
    compare_markdown,
    grid_markdown,
    plot_compare,
    summarize,
    target_text,
    verdict_lines,
)
from prunevo.transfer.results import ApplyResult, Measurement
from prunevo.transfer.run_dirs import criteria_from, regime_note
from prunevo.transfer.session import TransferSession
from prunevo.transfer.variants import BASELINES_WORD, strategy_changes
from prunevo.utils import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)


@dataclass
class CompareResult:
    """What ``compare_criteria`` measured.

    Attributes:
        base: the unpruned model's ``Measurement``.
        runs: every pruning, one per (strategy, criterion, seed).
        rows: one per (criterion, strategy): mean ± std of top-1 over the seeds, its gap to random and to the best
            classic, MACs share, parameters, latency.
        markdown: the report (``report.md``).
        wall_s: seconds in all.
        matched_latency: the share of the unpruned latency the channel strategies targeted, when matched.
        verdicts: each criterion against the best classic, paired by seed with a 95% interval.
        failed: "strategy / criterion / seed N: why" of the runs that failed.

    Example:
        >>> from prunevo import FitConfig, Setup, TransferConfig, compare_criteria
        >>> config = TransferConfig(setup=Setup(model="small-vgg", dataset="digits"), target_macs=0.5,
        ...                         finetune=FitConfig(epochs=0), latency=None)
        >>> result = compare_criteria(["l1", "l2"], config, seeds=(0,))  # random is always among them
        >>> [row.criterion for row in result.rows], result.failed, result.markdown.startswith("#")
        (['l1', 'l2', 'random'], [], True)
    """

    base: Measurement
    runs: list[ApplyResult]
    rows: list[CompareRow]
    markdown: str
    wall_s: float
    matched_latency: float | None = None  # share of the unpruned latency the channel strategies targeted
    verdicts: list[str] = field(default_factory=list)  # each criterion vs the best classic, paired by seed
    failed: list[str] = field(default_factory=list)  # "strategy / criterion / seed N: why" of runs that failed


def _latency_share(session: TransferSession, runs: list[ApplyResult]) -> float:
    device, batch = session.latency_key
    return statistics.median(r.after.latency_ms[device][batch] / r.before.latency_ms[device][batch] for r in runs)


def _title(config: TransferConfig, seeds, matched: float | None, strategies: list[str]) -> str:
    title = (f"{config.setup.model} on {config.setup.dataset}: {target_text(config.to_dict())}, {config.regime} "
             f"({config.finetune.epochs:g} fine-tune epochs, {config.finetune.lr_schedule}), seeds {list(seeds)}")
    if len(strategies) > 1 or strategies[0] != "uniform":
        title += f"; strategies {', '.join(strategies)}"
    if matched is not None:
        title += f"; channel strategies matched to layer pruning's measured latency ({matched:.0%} of unpruned)"
    return title


def expand_baselines(criteria: list) -> list:
    """``criteria`` with the word ``baselines`` replaced by every classic and Torch-Pruning criterion."""
    out = []
    for c in criteria:
        out.extend(BASELINE_NAMES if isinstance(c, str) and c == BASELINES_WORD else [c])
    return out


def _distinct(criteria: list) -> list:
    """``criteria`` without repeats, in order (a user's criterion object need not be hashable)."""
    out: list = []
    for c in criteria:
        if all(c is not o and not (isinstance(c, str) and c == o) for o in out):
            out.append(c)
    return out


def _shown(spec) -> str:
    """How a criterion given to ``compare_criteria`` is named where it did not run (n/a rows)."""
    if isinstance(spec, (str, Path)):
        return str(spec)
    return getattr(spec, "name", None) or getattr(spec, "text", None) or repr(spec)


COMPARE_SEEDS = 3  # seeds 0..N-1 per criterion when none are given


def compare_criteria(criteria: list, config: TransferConfig, *, seeds: tuple[int, ...] = tuple(range(COMPARE_SEEDS)),
                     out_dir: str | Path | None = None, progress: bool = False,
                     session: TransferSession | None = None, strategies: list[str] | None = None,
                     match_latency: bool = True, name: str = "compare") -> CompareResult:
    """Prune with every criterion, strategy and seed; summarize with mean ± std, the gap to random and paired
    verdicts against the best classic (``prunevo compare``).

    Args:
        criteria: names, formula text or files, run directories, Formula objects, or any object that follows
            the ``Criterion`` protocol; the word ``baselines`` stands for every classic and Torch-Pruning
            criterion.
        config: as for ``apply_formula``.
        seeds: the seeds each criterion is run with (verdicts pair them).
        out_dir: where to write ``report.md``, ``report.json`` and the plots; None: nothing is written.
        progress: progress bars.
        session: a ``TransferSession`` already loaded for ``config``.
        strategies: the strategies to compare side by side (default: the config's own, ``config.variant``).
        match_latency: with a latency strategy among them, target the channel strategies at its latency.
        name: the report's title.

    Returns:
        Every run, the rows and the verdicts.

    Raises:
        PrunevoError: what ``apply_formula`` raises, for a setting that fails for every criterion (a criterion
            that does not apply to the model is a row marked n/a, not an error).

    Example:
        >>> from prunevo import FitConfig, Setup, TransferConfig, compare_criteria
        >>> config = TransferConfig(setup=Setup(model="small-vgg", dataset="digits"), target_macs=0.5,
        ...                         finetune=FitConfig(epochs=0), latency=None)
        >>> result = compare_criteria(["l1", "random"], config, seeds=(0, 1))
        >>> [(row.criterion, row.runs) for row in result.rows]
        [('l1', 2), ('random', 2)]
    """
    from prunevo.progress import track

    if not seeds:
        raise PrunevoError(f"{{param:seeds}} must give at least one seed, got {len(seeds)}")
    start = time.perf_counter()
    strategies = list(dict.fromkeys(strategies or [config.variant]))
    changes = {s: strategy_changes(s) for s in strategies}
    names = _distinct(expand_baselines(criteria))
    notes = [n for n in (regime_note(c, config.regime, config.finetune.epochs) for c in names) if n is not None]
    for note in notes:
        if note.startswith("warning"):
            log.warning(note)
    session = session or TransferSession(config, progress=progress)
    if "random" not in names:
        names.append("random")  # every comparison is against random under the same budget
    matched = None
    match = (match_latency and "layer" in strategies and config.target_macs is not None and config.latency is not None
             and any(c["strategy"] == "channel" for c in changes.values()))
    if match:
        strategies.sort(key=lambda s: s != "layer")  # layer pruning first: its latency is the one to match
    runs: list[ApplyResult] = []
    unreachable: list[str] = []
    failed: list[str] = []  # a run the model fails (its selection cannot be pruned): the other rows still count
    first_failure: ModelError | None = None
    not_applicable: dict[tuple[str, str], str] = {}  # (strategy, criterion) -> why: reported as n/a, not run
    jobs = [(s, n, seed) for s in strategies for n in (["random"] if s == "unstructured" else names) for seed in seeds]
    for strategy, crit_name, seed in track(jobs, name, "run", progress):
        if (strategy, _shown(crit_name)) in not_applicable:
            continue
        overrides = dict(changes[strategy])
        if match and overrides["strategy"] == "channel":
            if matched is None:
                matched = round(_latency_share(session, [r for r in runs if r.strategy == "layer"]), 4)
            overrides.update(target_macs=None, target_latency=matched)
        if isinstance(crit_name, str) and crit_name in BASELINE_NAMES:  # as the strategy's allocation runs it
            criterion = as_baseline(crit_name, overrides.get("allocation", config.allocation), seed)
        else:
            (criterion,) = criteria_from([crit_name], seed)
        try:
            _, result, _ = session.with_settings(**overrides).run(criterion, seed)
        except NotApplicableError as exc:
            not_applicable[(strategy, _shown(crit_name))] = exc.reason
            continue
        except TargetUnreachable as exc:
            if "target_latency" not in overrides or config.target_latency is not None:
                raise
            unreachable.append(f"{strategy} / {_shown(crit_name)} / seed {seed}: {exc}")  # itself a finding: keep going
            continue
        except ModelError as exc:
            log.warning("prunevo: %s / %s / seed %d failed, the comparison goes on: %s", strategy, _shown(crit_name),
                        seed, exc)
            failed.append(f"{strategy} / {_shown(crit_name)} / seed {seed}: {exc}")
            first_failure = first_failure or exc
            continue
        runs.append(result)
    if not runs and first_failure is not None:
        raise first_failure  # nothing to compare: the model itself fails, say why as apply would
    rows = summarize(runs, not_applicable)
    title = _title(config, seeds, matched, strategies)
    finetuned = config.finetune.epochs > 0
    verdicts = verdict_lines(runs, rows, finetuned)
    markdown = compare_markdown(rows, session.base, title, finetuned, verdicts)
    if notes:
        markdown += "\n" + "".join(f"- {n}\n" for n in notes)
    if unreachable:
        markdown += "\nNot run (the matched latency is out of reach):\n" + "".join(f"- {u}\n" for u in unreachable)
    if failed:
        markdown += "\nFailed (left out of the table):\n" + "".join(f"- {f}\n" for f in failed)
    if len(strategies) > 1:
        latency_key = session.latency_key if config.latency else None
        markdown += "\n" + grid_markdown(rows, session.base, strategies, latency_key)
    wall = round(time.perf_counter() - start, 1)
    if out_dir is not None:
        out = Path(out_dir)
        atomic_write_json(out / f"{name}.json", {"config": config.to_dict(), "seeds": list(seeds),
                                                 "strategies": strategies, "matched_latency": matched,
                                                 "base": asdict(session.base), "runs": [r.to_dict() for r in runs],
                                                 "not_applicable": [{"strategy": s, "criterion": c, "reason": why}
                                                                    for (s, c), why in not_applicable.items()],
                                                 "summary": [asdict(r) for r in rows], "verdicts": verdicts,
                                                 "failed": failed,
                                                 "wall_s": wall})
        atomic_write_text(out / f"{name}.md", markdown)
        plot_compare(runs, session.base, out / f"{name}.png")
    return CompareResult(session.base, runs, rows, markdown, wall, matched, verdicts, failed)
