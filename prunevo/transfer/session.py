"""One transfer setting (model, dataset, checkpoint, strategy, prune target, fine-tune budget) and its pipeline.

A session loads the data and the base model once, finds the channel groups, measures the base model,
and then prunes it with any number of criteria and seeds under identical settings.  The channel
strategy runs calibration statistics -> group scores -> keep-masks meeting the target -> physical
removal (checked against the masked network) -> BatchNorm recalibration -> fine-tuning -> measurement;
layer, iterative and unstructured pruning (``strategies``) reuse the same steps.
"""
from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from torch import nn

from prunevo.errors import ModelError, NotApplicableError, PrunevoError, RunError
from prunevo.primitives.formula import Formula
from prunevo.pruning.cost import MacsEstimator, measure_cost, naming_failures
from prunevo.pruning.calibration import Calibration
from prunevo.pruning.criteria import (BASELINE_NAMES, FormulaCriterion, InvalidScores, NotApplicable, as_criterion,
                                      rank_problem, score_groups)
from prunevo.pruning.allocation import RANKING_OF, SearchSpec, check_allocation, masks_along
from prunevo.pruning.groups import ChannelGroup, group_ties
from prunevo.pruning.latency import LatencySpec, measure_latency
from prunevo.pruning.layers import UNIT_REDUCTIONS
from prunevo.pruning.masks import apply_masks
from prunevo.pruning.physical import prune_model
from prunevo.pruning.prunable import functional_dropout_off, prunable_groups, same_output, training_copy
from prunevo.pruning.reparam import fold_reparametrizations
from prunevo.pruning.ranking import PruneSpec
from prunevo.zoo.stratify import stratified_indices
from prunevo.pruning.target import DEFAULT_TARGET_MACS, KeepMasks, check_macs_target, meet_macs_target
from prunevo.transfer.results import ApplyResult, Measurement, PruneRecord, criterion_label
from prunevo.transfer.search import search_configuration
from prunevo.transfer.setup import Setup, load_setup
from prunevo.transfer.strategies import RUNNERS
from prunevo.transfer.variants import STRATEGIES, variant_name
from prunevo.training import Accelerator, FitConfig, evaluate, fit, recalibrate_bn
from prunevo.training.regimes import regime_of
from prunevo.zoo.images import labels_of

log = logging.getLogger(__name__)


# round_to=None: tensor-core kernels want multiples of 8 on CUDA; the CPU gains nothing from rounding
ROUND_TO = {"cpu": 1, "cuda": 8}
# calibration_batch=None: ResNet-50 at 224 px stays near 3 GB with 8 on the CPU, no slower than larger chunks
CALIBRATION_BATCH = {"cpu": 8, "cuda": 32}

# what a session loads or measures once: a variant of it cannot change them
SESSION_FIELDS = ("setup", "accelerator", "domino", "calibration_samples", "calibration_batch", "latency",
                  "ignore_layers")


@dataclass(frozen=True, kw_only=True)
class TransferConfig:
    """Everything that defines a transfer experiment except the criterion and the seed: the model and data
    (``setup``), where it runs (``accelerator``), the target, the strategy and the fine-tune.

    At most one target (none given: ``target_macs`` = DEFAULT_TARGET_MACS): ``target_macs`` (share of the MACs
    kept), ``channel_ratio`` (share of the channels removed) or ``target_latency`` (share of the unpruned
    model's measured latency; channel and layer strategies).  ``strategy``: ``channel`` (one shot),
    ``layer`` (remove whole blocks/layers), ``iterative`` (``cycles`` prune/retrain cycles; ``finetune.epochs``
    is the total retraining budget, split evenly) or ``unstructured`` (the IMP baseline: global weight
    magnitude, ``cycles`` cycles, to a sparsity of ``channel_ratio`` or ``1 - target_macs``).
    """

    setup: Setup
    target_macs: float | None = None  # share of the original MACs that remains (DEFAULT_TARGET_MACS when no target)
    channel_ratio: float | None = None  # or: share of channels removed (layer-wise or globally)
    target_latency: float | None = None  # or: share of the original latency (device and batch: latency_key)
    strategy: str = "channel"
    allocation: str = "uniform"  # uniform | global | random-search (channel and iterative strategies)
    search: SearchSpec = field(default_factory=SearchSpec)
    cycles: int = 3
    layer_reduction: str = "mean"
    max_layer_ratio: float = PruneSpec.max_layer_ratio  # PruneSpec's defaults: one place for each
    # layers whose output channels are never pruned besides the output layer (Torch-Pruning's ignored_layers)
    ignore_layers: tuple[str, ...] = ()
    # every pruned group keeps a multiple of round_to channels (Torch-Pruning's round_to); None: 8 on CUDA,
    # whose tensor-core kernels want multiples of 8, and 1 on the CPU
    round_to: int | None = None
    group_reduction: str = PruneSpec.group_reduction
    domino: str = PruneSpec.domino
    calibration_samples: int = 256
    # images per calibration pass: feature maps and gradients are reduced chunk by chunk, so memory holds
    # one chunk's activations whatever calibration_samples is; None: 8 on the CPU (ResNet-50 at 224 px
    # stays near 3 GB and runs no slower than larger chunks), 32 on CUDA
    calibration_batch: int | None = None
    finetune: FitConfig = field(default_factory=FitConfig)  # FitConfig's defaults are the fine-tune's
    accelerator: Accelerator = field(default_factory=Accelerator)
    latency: LatencySpec | None = field(default_factory=LatencySpec)

    def __post_init__(self) -> None:
        targets = [t for t in (self.target_macs, self.channel_ratio, self.target_latency) if t is not None]
        if not targets:  # no target given: the default one (frozen: set once, here)
            object.__setattr__(self, "target_macs", DEFAULT_TARGET_MACS)
            targets = [DEFAULT_TARGET_MACS]
        if len(targets) != 1:
            raise PrunevoError("give exactly one of {param:target_macs}, {param:channel_ratio} and "
                               "{param:target_latency}")
        if self.strategy not in STRATEGIES:
            raise PrunevoError(f"unknown strategy {self.strategy!r}; allowed: {', '.join(STRATEGIES)}")
        if self.target_macs is not None:
            check_macs_target(self.target_macs)  # before any data or weights are loaded
        if self.channel_ratio is not None and not 0.0 <= self.channel_ratio < 1.0:
            raise PrunevoError(f"{{param:channel_ratio}} {self.channel_ratio} is out of range; allowed: 0 <= ratio < 1 "
                               f"(the share of the channels removed)")
        check_allocation(self.allocation)
        if self.calibration_samples < 2:
            raise PrunevoError("calibration_samples must be at least 2")
        if self.calibration_batch is not None and self.calibration_batch < 1:
            raise PrunevoError(f"{{param:calibration_batch}} must be at least 1, got {self.calibration_batch}")
        if self.cycles < 1:
            raise PrunevoError(f"cycles must be >= 1, got {self.cycles}")
        if self.layer_reduction not in UNIT_REDUCTIONS:
            raise PrunevoError(f"unknown layer-score reduction {self.layer_reduction!r}; "
                               f"allowed: {', '.join(UNIT_REDUCTIONS)}")
        if self.target_latency is not None:
            if not 0.0 < self.target_latency <= 1.0:
                raise PrunevoError(f"latency target {self.target_latency} is out of range; allowed: 0 < target <= 1 "
                                   f"(the share of the original latency that remains)")
            if self.latency is None:
                raise PrunevoError("a latency target needs latency measurement, which is off (latency is None)")
            if self.strategy not in ("channel", "layer"):
                raise PrunevoError(f"{{param:target_latency}} works with the channel and layer strategies, not "
                                   f"{self.strategy}")
        if self.allocation == "random-search" and self.channel_ratio is not None:
            raise PrunevoError("random search samples configurations under a MACs budget: give {param:target_macs} or "
                               "{param:target_latency}, not {param:channel_ratio}")
        if self.strategy == "layer" and self.channel_ratio is not None:
            raise PrunevoError("layer pruning removes whole blocks: give {param:target_macs} or "
                               "{param:target_latency}, not {param:channel_ratio}")
        self.prune_spec()  # validates the reduction, Domino variant and caps
        if self.round_to is not None and not 1 <= self.round_to <= 1024:
            raise PrunevoError(f"round_to must be in [1, 1024], got {self.round_to}")

    @classmethod
    def from_run(cls, run_dir: str | Path, **changes) -> "TransferConfig":
        """The setting a search on the user's network ran in (``prunevo evolve --model``): its model, checkpoint,
        data, target, allocation and fine-tune epochs (``run_settings``), with ``changes`` (config paths, as
        ``configs.build`` takes them: ``{"finetune.epochs": 1}``).  ``apply_formula(run_dir,
        TransferConfig.from_run(run_dir))`` prunes that network with the run's winner.  Raises RunError."""
        from prunevo.configs import build

        settings = run_settings(run_dir)
        if any(k in changes for k in ("target_macs", "channel_ratio", "target_latency")):
            settings = {k: v for k, v in settings.items() if k not in ("target_macs", "channel_ratio")}
        return build(cls, {**settings, **changes})

    def to_dict(self) -> dict:
        """The config as reports store it, with ``round_to`` and ``calibration_batch`` resolved for the device,
        and the regime."""
        return {**asdict(self), "round_to": self.rounding, "calibration_batch": self.calibration_chunk,
                "regime": self.regime}

    @property
    def regime(self) -> str:
        """one-shot, short fine-tune or full fine-tune (``training.regimes``), from the fine-tune epochs."""
        return regime_of(self.finetune.epochs)

    @property
    def on_cuda(self) -> bool:
        return self.accelerator.on_cuda

    @property
    def rounding(self) -> int:
        """The channel multiple every pruned group keeps (``round_to``, or its default for the device)."""
        if self.round_to is not None:
            return self.round_to
        return ROUND_TO["cuda" if self.on_cuda else "cpu"]

    @property
    def calibration_chunk(self) -> int:
        """Images per calibration pass (``calibration_batch``, or its default for the device)."""
        if self.calibration_batch is not None:
            return self.calibration_batch
        return CALIBRATION_BATCH["cuda" if self.on_cuda else "cpu"]

    def prune_spec(self) -> PruneSpec:
        return PruneSpec(ratio=self.channel_ratio or 0.0, ranking=RANKING_OF.get(self.allocation, "layerwise"),
                         max_layer_ratio=self.max_layer_ratio, group_reduction=self.group_reduction,
                         domino=self.domino)

    @property
    def variant(self) -> str:
        """The strategy as a table column (a *variant*: strategy plus allocation, see ``transfer.variants``):
        uniform, global, random-search, layer, iterative..."""
        return variant_name(self.strategy, self.allocation)


@dataclass
class Stage:
    """A model being pruned, with what selection needs: its groups, a MACs estimator and its MACs."""

    model: nn.Module
    groups: list[ChannelGroup]
    estimator: MacsEstimator
    macs: int


def _check_same(masked: nn.Module, pruned: nn.Module, x: torch.Tensor, mode: str) -> None:
    """Raises ModelError when the physically pruned model does not compute what the masked one does."""
    with torch.no_grad():
        expected = masked(x)
        with naming_failures(pruned, f"in {mode} mode, running the pruned version of"):
            got = pruned(x)
    if not same_output(expected, got):
        raise ModelError(f"the physically pruned model does not compute what the masked model computes in {mode} "
                         f"mode; a layer reorders or reshapes channels in a way the pruner does not track")


class TransferSession:
    def __init__(self, config: TransferConfig, progress: bool = False):
        self.config = config
        self.progress = progress
        self.accel = config.accelerator.resolved()
        self.data, self.model, self.meta = load_setup(config.setup)
        fold_reparametrizations(self.model)  # weight/spectral normalization: after the checkpoint is loaded
        self.input_shape = self.data.input_shape
        self.example = torch.zeros(1, *self.input_shape)
        # groups whose removal breaks the model are left whole and said so (pruning.prunable)
        self.groups, self.left_whole = prunable_groups(self.model, self.example, keep_layers=config.ignore_layers)
        self._calibration: dict[int, Calibration] = {}
        self.base = self.measure(self.model)
        self.base_stage = Stage(self.model, self.groups, MacsEstimator(self.model, self.groups, self.example),
                                self.base.macs)

    def with_settings(self, **changes) -> "TransferSession":
        """The same data, base model, statistics and base measurement under other pruning settings
        (``changes``: TransferConfig fields; data and model fields cannot change)."""
        config = replace(self.config, **changes)
        changed = [f for f in SESSION_FIELDS if getattr(config, f) != getattr(self.config, f)]
        if changed:
            raise PrunevoError(f"a session's settings cannot change {', '.join(changed)}; start a new session")
        other = copy.copy(self)
        other.config = config
        return other

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

    @property
    def latency_key(self) -> tuple[str, int]:
        """Where latency targets are measured: the session's device, the largest latency batch."""
        return ("cuda" if self.accel.device.startswith("cuda") else "cpu", max(self.config.latency.batch_sizes))

    def key_latency(self, model: nn.Module) -> float:
        """Milliseconds at ``latency_key`` only (cheaper than ``latency`` when searching a target)."""
        device, batch = self.latency_key
        spec = replace(self.config.latency, batch_sizes=(batch,))
        where = self.accel.device if device == "cuda" else "cpu"
        return measure_latency(model, self.input_shape, where, spec,
                               channels_last=device == "cuda" and self.accel.use_channels_last).median_ms[batch]

    def measure(self, model: nn.Module) -> Measurement:
        model.cpu()
        cost = measure_cost(model, self.example)
        acc = evaluate(model, self.data.test, self.accel)
        model.cpu()
        return Measurement(cost.params, cost.macs, acc["top1"], acc.get("top5"), self.latency(model))

    # -- pruning ----------------------------------------------------------------------------------
    def calibration(self, seed: int, stage: Stage | None = None) -> Calibration:
        """What criteria score: ``stage``'s model (the base model by default) on a class-stratified batch of
        un-augmented training images drawn from ``seed``.  The batch is read once per seed and the base
        model's calibration is kept, so every criterion shares its statistics."""
        if seed not in self._calibration:
            per_class = max(1, self.config.calibration_samples // self.data.num_classes)
            order = stratified_indices(labels_of(self.data.train_plain), per_class, seed)
            items = [self.data.train_plain[int(i)] for i in order]
            x, y = torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items])
            self._calibration[seed] = self._calibration_of(self.base_stage, x, y)
        base = self._calibration[seed]
        if stage is None or stage is self.base_stage:
            return base
        return self._calibration_of(stage, base.x, base.y)

    def _calibration_of(self, stage: Stage, x: torch.Tensor, y: torch.Tensor) -> Calibration:
        return Calibration(stage.model, stage.groups, x, y, self.data.num_classes,
                           consumers=self.config.domino == "io", device=self.accel.device,
                           batch_size=self.config.calibration_chunk, progress=self.progress)

    def stage(self, model: nn.Module) -> Stage:
        groups, _ = prunable_groups(model, self.example, keep_layers=self.config.ignore_layers)
        return Stage(model, groups, MacsEstimator(model, groups, self.example), measure_cost(model, self.example).macs)

    def scores(self, criterion, calibration: Calibration) -> list[torch.Tensor]:
        name = criterion_label(criterion)[0]
        try:
            scores = [s.detach().cpu().double()
                      for s in score_groups(criterion, calibration, self.config.group_reduction, strict=False)]
        except NotApplicable as exc:
            raise NotApplicableError(name, f"does not apply to {self.config.setup.model}: {exc}") from None
        except InvalidScores as exc:
            raise PrunevoError(f"criterion {name!r} cannot rank channels: {exc}") from None
        problems = [p for p in (rank_problem(s, g) for g, s in enumerate(scores)) if p]
        if problems:  # unlike fitness, transfer goes on: ties are broken by channel index, said loudly
            log.warning("criterion %r: %d of %d groups have constant or tied scores (first: %s); ties are broken "
                        "by channel index", name, len(problems), len(scores), problems[0])
        return scores

    def select(self, criterion, seed: int, stage: Stage | None = None, target_macs: float | None = None,
               ratio: float | None = None) -> KeepMasks:
        """Keep-masks for ``stage`` (the base model by default) under a MACs target (a share of the stage's
        MACs) or a channel ratio; both default to the session's."""
        stage = stage or self.base_stage
        scores = self.scores(criterion, self.calibration(seed, None if stage is self.base_stage else stage))
        spec = self.config.prune_spec()
        if target_macs is None and ratio is None:
            target_macs, ratio = self.config.target_macs, self.config.channel_ratio
        if self.config.allocation == "random-search":
            return search_configuration(self, stage, scores, seed, target_macs)
        masks_at = masks_along(scores, spec, round_to=self.config.rounding, ties=group_ties(stage.groups))
        if target_macs is not None:
            return meet_macs_target(stage.model, stage.groups, masks_at, target_macs, self.example,
                                    estimator=stage.estimator, full_macs=stage.macs,
                                    allocation=self.config.allocation, max_layer_ratio=spec.max_layer_ratio,
                                    left_whole=tuple(w.root for w in self.left_whole))
        return KeepMasks(masks_at(ratio), ratio)

    def prune(self, keep: list[torch.Tensor], check_input: torch.Tensor, pruned: nn.Module | None = None,
              stage: Stage | None = None) -> nn.Module:
        """A physically pruned copy of the stage's model, verified against the masked network."""
        stage = stage or self.base_stage
        masked = copy.deepcopy(stage.model).eval()
        apply_masks(masked, stage.groups, keep)
        if pruned is None:
            pruned = prune_model(copy.deepcopy(stage.model).eval(), stage.groups, keep, self.example)
        pruned.eval()
        _check_same(masked, pruned, check_input, "eval")
        # training mode too (BatchNorm on batch statistics, branches that run only in training), on copies so
        # that the returned model's running statistics stay; dropout is off in both: it draws per width
        with functional_dropout_off():
            _check_same(training_copy(masked), training_copy(pruned), check_input, "train")
        return pruned

    def recalibrated_top1(self, model: nn.Module, seed: int) -> float:
        """Test top-1 right after pruning, with BatchNorm statistics re-estimated (in place)."""
        recalibrate_bn(model, self.data.train_plain, self.accel, seed=seed)
        return evaluate(model, self.data.test, self.accel)["top1"]

    def finetune(self, model: nn.Module, seed: int, desc: str, epochs: float | None = None) -> nn.Module:
        config = self.config.finetune if epochs is None else replace(self.config.finetune, epochs=epochs)
        return fit(model, self.data.train, config, seed, self.accel, progress=self.progress, desc=desc)

    def run(self, criterion, seed: int = 0) -> tuple[nn.Module, ApplyResult, PruneRecord]:
        """(pruned and fine-tuned model, its result, how to rebuild its architecture)."""
        criterion = as_criterion(criterion, seed)
        if hasattr(criterion, "with_seed"):  # a stochastic criterion draws from the run's seed
            criterion = criterion.with_seed(seed)
        name, text = criterion_label(criterion)
        if self.config.strategy == "unstructured":
            name, text = "magnitude", None  # the classic IMP baseline has its own criterion
        times: dict[str, float] = {}
        outcome = RUNNERS[self.config.strategy](self, criterion, seed, times)
        start = time.perf_counter()
        after = self.measure(outcome.model)
        times["measure"] = time.perf_counter() - start
        fraction = outcome.macs_fraction
        if self.config.target_macs is None or math.isnan(fraction):  # no MACs target was met
            fraction = after.macs / max(1, self.base.macs)
        final = outcome.record.cycles[-1] if outcome.record.cycles else {}
        kept = {g.root: [len(final.get(g.root, range(g.size))), g.size] for g in self.groups}
        result = ApplyResult(name, text, seed, round(outcome.ratio, 6), round(fraction, 6), self.base, after,
                             outcome.pruned_top1, kept, {k: round(v, 2) for k, v in times.items()},
                             self.config.variant, list(outcome.record.removed), outcome.sparsity,
                             outcome.search_top1)
        return outcome.model, result, outcome.record

def criteria_from(specs: list, seed: int = 0) -> list:
    """Criteria from classic names, Torch-Pruning names (``tp-l2``...), ``random``, formula text, .json/.txt
    exports, run directories (their best formula), Formula objects or criteria."""
    from prunevo.evolve.run import load_run

    out = []
    for spec in specs:
        if isinstance(spec, (str, Path)) and spec not in BASELINE_NAMES and Path(spec).is_dir():
            best = load_run(spec).best.formula  # the winner: the best on validation
            out.append(FormulaCriterion(Formula(best.tree, name=f"best of {Path(spec).name}")))
        else:
            out.append(as_criterion(str(spec) if isinstance(spec, Path) else spec, seed))
    return out


def run_settings(run_dir: str | Path) -> dict:
    """TransferConfig values (by path, for ``configs.build``) that prune the network a search ran on the way its
    fitness did (``prunevo apply RUN_DIR``): its model, checkpoint, data, target, allocation, group reduction
    and fine-tune epochs.  Raises RunError for a run that is not a search on one user's network."""
    from prunevo.evolve.run import load_run

    run = load_run(run_dir)
    tasks = run.config.task_list()
    if len(tasks) != 1:
        raise RunError(f"{run_dir} searched on {len(tasks)} tasks; 'prunevo apply RUN_DIR' takes a run on one network "
                       f"('prunevo evolve --model ...'); allowed: --formula {run_dir} with --model and the other "
                       f"options")
    (task,) = tasks
    if task.checkpoint is None:
        raise RunError(f"{run_dir}'s task {task.name} trains its own base net, which is not a file to prune; allowed: "
                       f"--formula {run_dir} with --model and --checkpoint (a model from 'prunevo train')")
    values = {"setup.model": task.model, "setup.dataset": task.dataset, "setup.checkpoint": task.checkpoint,
              "setup.stem": task.stem, "setup.image_size": task.image_size, "setup.data_root": run.config.data_root,
              "allocation": task.allocation, "finetune.epochs": task.finetune.epochs,
              "group_reduction": task.prune.group_reduction, "domino": task.prune.domino,
              "max_layer_ratio": task.prune.max_layer_ratio}
    if task.target_macs is not None:
        values["target_macs"] = task.target_macs
    else:
        values["channel_ratio"] = task.prune.ratio
    if task.search is not None:
        values.update({"search.candidates": task.search.candidates, "search.samples": task.search.samples,
                       "search.finetune_epochs": task.search.finetune_epochs})
    return {k: v for k, v in values.items() if v is not None}


def regime_note(spec, config: TransferConfig) -> str | None:
    """For a run directory: which regime its formula was evolved for, and a warning when ``config`` applies it in
    another (a formula evolved one-shot is no evidence about fine-tuning, and vice versa); else None."""
    from prunevo.evolve.run import load_run

    if not isinstance(spec, (str, Path)) or spec in BASELINE_NAMES or not Path(spec).is_dir():
        return None
    evolved = load_run(spec).config.regime
    note = f"the formula of {spec} was evolved for the {evolved} regime"
    if evolved != config.regime:
        return (f"warning: {note}, and is applied here in the {config.regime} regime "
                f"({config.finetune.epochs:g} fine-tune epochs): its fitness says little about this one")
    return note
