"""One transfer setting (model, dataset, checkpoint, prune target, fine-tune budget) and its pipeline.

A session loads the data and the base model once, finds the channel groups, measures the base model,
and then prunes it with any number of criteria and seeds under identical settings:
calibration statistics -> group scores -> keep-masks meeting the target -> physical removal
(checked against the masked network) -> BatchNorm recalibration -> fine-tuning -> measurement.
"""
from __future__ import annotations

import copy
import logging
import time
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from prunevo.errors import ModelError, PrunevoError
from prunevo.primitives.formula import Formula
from prunevo.pruning.cost import MacsEstimator, measure_cost
from prunevo.pruning.criteria import FormulaCriterion, InvalidScores, RandomCriterion, as_criterion, rank_problem
from prunevo.pruning.groups import find_groups
from prunevo.pruning.latency import LatencySpec, measure_latency
from prunevo.pruning.masks import apply_masks
from prunevo.pruning.physical import prune_model
from prunevo.pruning.selection import PruneSpec, select
from prunevo.pruning.statistics import gather_stats, stratified_indices
from prunevo.pruning.target import meet_macs_target
from prunevo.transfer.setup import load_setup
from prunevo.transfer.training import Accelerator, FitConfig, evaluate, fit, recalibrate_bn, resolve_device
from prunevo.zoo.images import labels_of

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TransferConfig:
    """Everything that defines a transfer experiment except the criterion and the seed."""

    model: str
    dataset: str = "digits"
    data_root: str | None = None
    download: bool = False
    checkpoint: str | None = None
    image_size: int | None = None
    stem: str = "auto"
    target_macs: float | None = 0.5  # share of the original MACs that remains
    channel_ratio: float | None = None  # or: share of channels removed (layer-wise or globally)
    selection: str = "layerwise"
    max_layer_ratio: float = 0.9
    group_reduction: str = "mean"
    domino: str = "o"
    calibration_samples: int = 256
    finetune: FitConfig = field(default_factory=lambda: FitConfig(epochs=1.0, lr=0.01, lr_schedule="clr"))
    device: str = "cpu"
    amp: bool | None = None
    channels_last: bool | None = None
    latency: LatencySpec | None = field(default_factory=LatencySpec)
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        if (self.target_macs is None) == (self.channel_ratio is None):
            raise PrunevoError("give exactly one of target_macs (--target-macs) and channel_ratio (--channel-ratio)")
        if self.calibration_samples < 2:
            raise PrunevoError("calibration_samples must be at least 2")
        self.prune_spec()  # validates selection, reduction, Domino variant and caps

    def prune_spec(self) -> PruneSpec:
        return PruneSpec(ratio=self.channel_ratio or 0.0, selection=self.selection,
                         max_layer_ratio=self.max_layer_ratio, group_reduction=self.group_reduction,
                         domino=self.domino)


@dataclass
class Measurement:
    params: int
    macs: int
    top1: float
    top5: float | None = None
    latency_ms: dict[str, dict[int, float]] = field(default_factory=dict)  # device -> batch -> median ms


@dataclass
class ApplyResult:
    criterion: str
    formula: str | None
    seed: int
    channel_ratio: float
    macs_fraction: float
    before: Measurement
    after: Measurement
    pruned_top1: float  # after BatchNorm recalibration, before fine-tuning
    kept: dict[str, list[int]]  # group root -> [kept channels, original channels]
    wall_s: dict[str, float]

    def to_dict(self) -> dict:
        return asdict(self)


def criterion_label(criterion) -> tuple[str, str | None]:
    if isinstance(criterion, RandomCriterion):
        return "random", None
    formula: Formula = criterion.formula
    return (formula.name or formula.text), formula.text


class TransferSession:
    def __init__(self, config: TransferConfig, progress: bool = False):
        self.config = config
        self.progress = progress
        self.accel = Accelerator(resolve_device(config.device), config.amp, config.channels_last)
        self.data, self.model, self.meta = load_setup(config)
        self.input_shape = self.data.input_shape
        self.example = torch.zeros(1, *self.input_shape)
        self.groups = find_groups(self.model, self.example)
        self._stats: dict[int, tuple] = {}
        self.base = self.measure(self.model)
        self.estimator = MacsEstimator(self.model, self.groups, self.example)

    # -- measurement ------------------------------------------------------------------------------
    def latency(self, model: nn.Module) -> dict[str, dict[int, float]]:
        spec = self.config.latency
        if spec is None:
            return {}
        result = {"cpu": measure_latency(model, self.input_shape, "cpu", spec).median_ms}
        if self.accel.device.startswith("cuda"):
            result["cuda"] = measure_latency(model, self.input_shape, self.accel.device, spec,
                                             channels_last=self.accel.use_channels_last).median_ms
        return result

    def measure(self, model: nn.Module) -> Measurement:
        model.cpu()
        cost = measure_cost(model, self.example)
        acc = evaluate(model, self.data.test, self.accel)
        model.cpu()
        return Measurement(cost.params, cost.macs, acc["top1"], acc.get("top5"), self.latency(model))

    # -- pruning ----------------------------------------------------------------------------------
    def calibration(self, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A class-stratified batch of un-augmented training images, the same for every criterion."""
        per_class = max(1, self.config.calibration_samples // self.data.num_classes)
        order = stratified_indices(labels_of(self.data.train_plain), per_class, seed)
        items = [self.data.train_plain[int(i)] for i in order]
        return torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items])

    def stats(self, seed: int):
        if seed not in self._stats:
            x, y = self.calibration(seed)
            model = self.model.to(self.accel.device)
            stats = gather_stats(model, self.groups, x.to(self.accel.device), y.to(self.accel.device),
                                 self.data.num_classes, consumers=self.config.domino == "io")
            self.model.cpu()
            self._stats[seed] = (x, stats)
        return self._stats[seed]

    def select(self, criterion, seed: int) -> tuple[list[torch.Tensor], float, float, nn.Module | None]:
        """(keep-masks, channel ratio, MACs fraction, pruned copy if one was made) under the session's target."""
        _, stats = self.stats(seed)
        name = criterion_label(criterion)[0]
        try:
            scores = [s.detach().cpu().double()
                      for s in criterion.group_scores(stats, self.config.group_reduction, strict=False)]
        except InvalidScores as exc:
            raise PrunevoError(f"criterion {name!r} cannot rank channels: {exc}") from None
        problems = [p for p in (rank_problem(s, g) for g, s in enumerate(scores)) if p]
        if problems:  # unlike fitness, transfer goes on: ties are broken by channel index, said loudly
            log.warning("criterion %r: %d of %d groups have constant or tied scores (first: %s); ties are broken "
                        "by channel index", name, len(problems), len(scores), problems[0])
        spec = self.config.prune_spec()
        if self.config.target_macs is not None:
            hit = meet_macs_target(self.model, self.groups, scores, spec, self.config.target_macs, self.example,
                                   estimator=self.estimator, full_macs=self.base.macs)
            return hit.keep, hit.ratio, hit.macs_fraction, hit.pruned
        keep = select(scores, spec)
        return keep, spec.ratio, float("nan"), None

    def prune(self, keep: list[torch.Tensor], check_input: torch.Tensor, pruned: nn.Module | None = None) -> nn.Module:
        """A physically pruned copy of the base model, verified against the masked network."""
        masked = copy.deepcopy(self.model).eval()
        apply_masks(masked, self.groups, keep)
        if pruned is None:
            pruned = prune_model(copy.deepcopy(self.model).eval(), self.groups, keep, self.example)
        pruned.eval()
        with torch.no_grad():
            expected, got = masked(check_input), pruned(check_input)
        if got.shape != expected.shape or not torch.allclose(got, expected, rtol=1e-3, atol=1e-3 * (1 + expected.abs().max().item())):
            raise ModelError("the physically pruned model does not compute what the masked model computes; a layer "
                             "reorders or reshapes channels in a way the pruner does not track")
        return pruned

    def run(self, criterion, seed: int = 0) -> tuple[nn.Module, ApplyResult, list[torch.Tensor]]:
        """(pruned and fine-tuned model, its result, the keep-masks per group)."""
        criterion = as_criterion(criterion, seed)
        if isinstance(criterion, RandomCriterion) and criterion.seed != seed:
            criterion = RandomCriterion(seed)
        name, text = criterion_label(criterion)
        times = {}
        start = time.perf_counter()
        keep, ratio, fraction, pruned = self.select(criterion, seed)
        x, _ = self.stats(seed)
        pruned = self.prune(keep, x[:8], pruned)
        times["prune"] = time.perf_counter() - start
        start = time.perf_counter()
        recalibrate_bn(pruned, self.data.train_plain, self.accel, seed=seed)
        pruned_top1 = evaluate(pruned, self.data.test, self.accel)["top1"]
        fit(pruned, self.data.train, self.config.finetune, seed, self.accel, progress=self.progress,
            desc=f"fine-tune {name} (seed {seed})")
        times["finetune"] = time.perf_counter() - start
        start = time.perf_counter()
        after = self.measure(pruned)
        times["measure"] = time.perf_counter() - start
        if self.config.target_macs is None:
            fraction = after.macs / max(1, self.base.macs)
        kept = {g.root: [int(k.sum()), g.size] for g, k in zip(self.groups, keep)}
        result = ApplyResult(name, text, seed, round(ratio, 6), round(fraction, 6), self.base, after, pruned_top1,
                             kept, {k: round(v, 2) for k, v in times.items()})
        return pruned, result, keep


def criteria_from(specs: list, seed: int = 0) -> list:
    """Criteria from classic names, ``random``, formula text, .json/.txt exports, run directories (their
    best formula) or Formula objects."""
    from pathlib import Path

    from prunevo.evolve.run import load_run
    from prunevo.primitives.classic import CLASSIC_TEXT
    from prunevo.primitives.export import read_formula

    out = []
    for spec in specs:
        if isinstance(spec, (Formula, RandomCriterion, FormulaCriterion)) or spec in CLASSIC_TEXT or spec == "random":
            out.append(as_criterion(spec, seed))
        elif isinstance(spec, (str, Path)) and Path(spec).is_dir():
            best = load_run(spec).hall_of_fame[0].formula
            out.append(FormulaCriterion(Formula(best.tree, name=f"best of {Path(spec).name}")))
        else:
            out.append(FormulaCriterion(read_formula(spec)))
    return out
