"""The pruning strategies of a transfer session; each returns the pruned, fine-tuned model.

- ``channel``: one shot -- keep-masks meeting the target (uniform, global or searched allocation),
  (with ``reconstruct``: the layers that read removed channels refitted), physical removal, BatchNorm
  recalibration, fine-tuning; a latency target is met by bisecting the MACs
  target on measured latency;
- ``layer``: whole blocks/layers, least important first (``pruning.layers``), as few as meet the target;
- ``iterative``: ``cycles`` channel prune/retrain cycles, each removing ``1 - (1 - s) ** (1 / k)`` of
  what is left; the fine-tuning budget is split evenly over the cycles;
- ``unstructured``: the classic IMP baseline, global weight magnitude with ``torch.nn.utils.prune``.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import torch
from torch import nn

from prunevo.errors import ModelError, NotApplicableError, PrunevoError, TargetUnreachable
from prunevo.pruning.cost import measure_cost
from prunevo.pruning.criteria import InvalidScores, NotApplicable, score_layers
from prunevo.pruning.iterative import cycle_fractions, cycle_ratio, magnitude_step, make_permanent, sparsity
from prunevo.pruning.layers import removable_units, removal_order, remove_units, unit_scores
from prunevo.pruning.target import KeepMasks
from prunevo.transfer.results import PruneRecord, criterion_label


class Session(Protocol):
    """What a runner needs from the session that calls it (``transfer.session.TransferSession``): the base model
    and its measurement, calibration batches, selection of keep-masks, physical removal and recovery.  A
    protocol, so that the session imports its runners and not the other way round."""

    config: Any  # transfer.config.TransferConfig
    model: nn.Module
    example: torch.Tensor  # [1, channels, height, width] zeros: the input the MACs are counted on
    groups: list
    base: Any  # results.Measurement of the unpruned model
    base_stage: Any  # session.Stage of the unpruned model

    @property
    def latency_key(self) -> tuple[str, int]: ...

    def key_latency(self, model: nn.Module) -> float: ...

    def calibration(self, seed: int, stage: Any = None) -> Any: ...

    def stage(self, model: nn.Module) -> Any: ...

    def select(self, criterion, seed: int, stage: Any = None, target_macs: float | None = None,
               ratio: float | None = None) -> Any: ...

    def prune(self, keep: list[torch.Tensor], check_input: torch.Tensor, pruned: nn.Module | None = None,
              stage: Any = None, masked: nn.Module | None = None) -> nn.Module: ...

    def reconstructed(self, keep: list[torch.Tensor], seed: int, stage: Any = None) -> tuple[nn.Module, Any]: ...

    def recalibrated_top1(self, model: nn.Module, seed: int) -> float: ...

    def finetune(self, model: nn.Module, seed: int, desc: str, epochs: float | None = None) -> nn.Module: ...

LATENCY_STEPS = 7  # bisection steps on the MACs target when meeting a latency target


@dataclass
class Outcome:
    model: nn.Module
    record: PruneRecord
    ratio: float
    macs_fraction: float
    pruned_top1: float
    sparsity: float | None = None
    search_top1: list[float] = field(default_factory=list)
    reconstruction: dict | None = None  # ReconstructionReport.summary of the kept pruning


def _kept(stage, keep) -> dict[str, list[int]]:
    return {g.root: k.nonzero().flatten().tolist() for g, k in zip(stage.groups, keep)}


def _recover(session: Session, pruned: nn.Module, seed: int, name: str, times: dict) -> float:
    """BatchNorm recalibration and fine-tuning in place; returns the top-1 in between."""
    start = time.perf_counter()
    top1 = session.recalibrated_top1(pruned, seed)
    session.finetune(pruned, seed, f"fine-tune {name} (seed {seed})")
    times["finetune"] = time.perf_counter() - start
    return top1


def _at_latency(session: Session, build: Callable[[float], tuple], lo: float, hi: float,
                steps: int = LATENCY_STEPS):
    """Bisect a knob in [lo, hi] (more = slower) for the largest value whose measured latency meets the
    session's latency target; returns what ``build`` made there."""
    device, batch = session.latency_key
    wanted = session.config.target_latency * session.base.latency_ms[device][batch]
    best = None
    for _ in range(steps):
        mid = (lo + hi) / 2
        try:
            made = build(mid)
        except TargetUnreachable:  # this MACs target cannot be reached: prune less
            lo = mid
            continue
        if session.key_latency(made[-1]) <= wanted:
            best, lo = made, mid
        else:
            hi = mid
    if best is None:
        raise TargetUnreachable(f"cannot reach {session.config.target_latency:.0%} of the latency ({wanted:.2f} ms "
                                f"on {device}, batch {batch}) with {session.config.variant} pruning; allowed: a "
                                f"larger {{param:target_latency}}")
    return best


def run_channel(session: Session, criterion, seed: int, times: dict) -> Outcome:
    name = criterion_label(criterion)[0]
    start = time.perf_counter()
    x = session.calibration(seed).x

    def at_macs(target: float | None) -> tuple[KeepMasks, dict | None, nn.Module]:
        chosen = session.select(criterion, seed, target_macs=target)  # None: the session's own target
        masked, report = _reconstructed(session, chosen.keep, seed, None, times)
        return chosen, report, session.prune(chosen.keep, x[:8], chosen.pruned, masked=masked)

    if session.config.target_latency is not None:
        chosen, report, pruned = _at_latency(session, at_macs, 0.0, 1.0)
    else:
        chosen, report, pruned = at_macs(session.config.target_macs)
    times["prune"] = time.perf_counter() - start - times.get("reconstruct", 0.0)
    top1 = _recover(session, pruned, seed, name, times)
    record = PruneRecord([_kept(session.base_stage, chosen.keep)])
    return Outcome(pruned, record, chosen.ratio, chosen.macs_fraction, top1, search_top1=chosen.search_top1,
                   reconstruction=report)


def _reconstructed(session: Session, keep: list[torch.Tensor], seed: int, stage, times: dict
                   ) -> tuple[nn.Module | None, dict | None]:
    """With ``reconstruct``: the stage's masked model with its readers of removed channels refitted, and the
    refit's summary (its seconds added to ``times["reconstruct"]``); without: (None, None)."""
    if not session.config.reconstruct:
        return None, None
    masked, report = session.reconstructed(keep, seed, stage)
    times["reconstruct"] = times.get("reconstruct", 0.0) + report.seconds
    return masked, report.summary()


def run_layer(session: Session, criterion, seed: int, times: dict) -> Outcome:
    name = criterion_label(criterion)[0]
    start = time.perf_counter()
    units = removable_units(session.model, session.example)
    if not units:
        raise ModelError(f"{session.config.setup.model} has no block or layer that can be removed: layer pruning needs "
                         f"residual blocks with identity shortcuts or convolutions whose output has their input's "
                         f"shape; use {{param:strategy=channel}}")
    try:
        filter_scores = score_layers(criterion, session.calibration(seed))
    except NotApplicable as exc:
        raise NotApplicableError(name, f"does not apply to {session.config.setup.model}: {exc}") from None
    except InvalidScores as exc:
        raise PrunevoError(f"criterion {name!r} cannot rank layers: {exc}") from None
    order = removal_order(units, unit_scores(units, filter_scores, session.config.layer_reduction))

    def without(count: float) -> tuple[list[str], nn.Module]:
        names = [m for unit in order[:round(count)] for m in unit.modules]
        return names, remove_units(copy.deepcopy(session.model), names).eval()

    if session.config.target_latency is not None:  # the knob is the number of units kept: more = slower
        names, pruned = _at_latency(session, lambda kept: without(len(order) - kept), 0, len(order),
                                    steps=max(1, len(order).bit_length() + 1))
    else:
        wanted = session.config.target_macs
        fraction = lambda n: measure_cost(without(n)[1], session.example).macs / session.base.macs  # noqa: E731
        least = fraction(len(order))
        if least > wanted:
            raise PrunevoError(f"layer pruning can remove at most {len(order)} blocks/layers of "
                               f"{session.config.setup.model}, which leaves {least:.1%} of the MACs; "
                               f"allowed: {{param:target_macs}} >= {least:.2f}, or {{param:strategy=channel}}")
        lo, hi = 0, len(order)  # fewest removals whose MACs meet the target (MACs fall with every removal)
        while lo < hi:
            mid = (lo + hi) // 2
            lo, hi = (mid + 1, hi) if fraction(mid) > wanted else (lo, mid)
        names, pruned = without(lo)
    times["prune"] = time.perf_counter() - start
    top1 = _recover(session, pruned, seed, name, times)
    macs = measure_cost(pruned, session.example).macs / session.base.macs
    removed_units = sum(1 for u in units if u.modules[0] in names)
    return Outcome(pruned, PruneRecord(removed=names), removed_units / len(units), macs, top1)


def run_iterative(session: Session, criterion, seed: int, times: dict) -> Outcome:
    name = criterion_label(criterion)[0]
    config = session.config
    k = config.cycles
    per_cycle_epochs = config.finetune.epochs / k
    fractions = cycle_fractions(config.target_macs, k) if config.target_macs is not None else None
    ratio = cycle_ratio(config.channel_ratio, k) if config.channel_ratio is not None else None
    stage = session.base_stage
    record = PruneRecord()
    times["prune"] = times["finetune"] = 0.0
    x = session.calibration(seed).x
    for cycle in range(k):
        start = time.perf_counter()
        # the cumulative target, as a share of the current model's MACs: rounding errors do not pile up
        target = None if fractions is None else min(1.0, fractions[cycle] * session.base.macs / stage.macs)
        chosen = session.select(criterion, seed, stage, target_macs=target, ratio=ratio)
        masked, report = _reconstructed(session, chosen.keep, seed, stage, times)
        pruned = session.prune(chosen.keep, x[:8], chosen.pruned, stage, masked=masked)
        record.cycles.append(_kept(stage, chosen.keep))
        times["prune"] += time.perf_counter() - start - (report["seconds"] if report else 0.0)
        start = time.perf_counter()
        top1 = session.recalibrated_top1(pruned, seed)
        session.finetune(pruned, seed + cycle, f"cycle {cycle + 1}/{k} {name} (seed {seed})", per_cycle_epochs)
        times["finetune"] += time.perf_counter() - start
        if cycle < k - 1:
            stage = session.stage(pruned)
    macs = measure_cost(pruned, session.example).macs / session.base.macs
    kept = sum(len(record.cycles[-1].get(g.root, range(g.size))) for g in session.groups)
    removed_share = 1 - kept / sum(g.size for g in session.groups)
    return Outcome(pruned, record, removed_share, macs, top1, reconstruction=report)


def run_unstructured(session: Session, criterion, seed: int, times: dict) -> Outcome:
    """Global magnitude IMP; ``criterion`` is not used (the baseline has its own)."""
    config = session.config
    total = config.channel_ratio if config.channel_ratio is not None else 1.0 - config.target_macs
    k = config.cycles
    model = copy.deepcopy(session.model)
    start = time.perf_counter()
    for cycle in range(k):
        magnitude_step(model, cycle_ratio(total, k))
        top1 = session.recalibrated_top1(model, seed)
        session.finetune(model, seed + cycle, f"cycle {cycle + 1}/{k} magnitude (seed {seed})",
                         config.finetune.epochs / k)
    times["finetune"] = time.perf_counter() - start
    make_permanent(model)
    return Outcome(model, PruneRecord(), total, 1.0, top1, sparsity=round(sparsity(model), 6))


# the strategies: one entry each (--strategy's choices and TransferConfig's check derive from it, transfer.variants)
RUNNERS = {"channel": run_channel, "layer": run_layer, "iterative": run_iterative, "unstructured": run_unstructured}
USES_ALLOCATION = frozenset({"channel", "iterative"})  # the others remove blocks or weights, not ranked channels
