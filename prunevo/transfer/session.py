"""A transfer session: one setting (``transfer.config.TransferConfig``) and its pruning pipeline.

A session loads the data and the base model once, finds the channel groups, measures the base model,
and then prunes it with any number of criteria and seeds under identical settings.  The channel
strategy runs calibration statistics -> group scores -> keep-masks meeting the target -> physical
removal (checked against the masked network; with ``reconstruct``, the masked network's layers that read
removed channels refitted first) -> BatchNorm recalibration -> fine-tuning -> measurement;
layer, iterative and unstructured pruning (``strategies``) reuse the same steps.
"""
from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass, replace

import torch
from torch import nn

from prunevo.errors import ModelError, NotApplicableError, PrunevoError
from prunevo.pruning.allocation import masks_along
from prunevo.pruning.calibration import Calibration
from prunevo.pruning.cost import MacsEstimator, measure_cost, naming_failures
from prunevo.pruning.criteria import InvalidScores, NotApplicable, as_criterion, rank_problem, score_groups
from prunevo.pruning.groups import ChannelGroup, group_ties
from prunevo.pruning.latency import measure_latency
from prunevo.pruning.masks import apply_masks
from prunevo.pruning.physical import prune_model
from prunevo.pruning.prunable import functional_dropout_off, prunable_groups, same_output, training_copy
from prunevo.pruning.reconstruct import ReconstructionReport, reconstruct
from prunevo.pruning.reparam import fold_reparametrizations
from prunevo.pruning.target import KeepMasks, meet_macs_target
from prunevo.training import evaluate, fit, recalibrate_bn
from prunevo.transfer.config import SESSION_FIELDS, TransferConfig
from prunevo.transfer.results import ApplyResult, Measurement, PruneRecord, criterion_label
from prunevo.transfer.search import search_configuration
from prunevo.transfer.setup import load_setup
from prunevo.transfer.strategies import RUNNERS
from prunevo.zoo.images import labels_of
from prunevo.zoo.stratify import stratified_indices

log = logging.getLogger(__name__)


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
    """One transfer setting loaded once, pruned with any number of criteria and seeds.

    Construction loads the data and the base model, folds weight reparametrizations, traces the channel
    groups (groups whose removal would break the model are left whole, ``left_whole``) and measures the base
    model (top-1, MACs, parameters, latency).  ``run`` then prunes a copy with one criterion and seed under
    ``config``'s strategy; every criterion sees the same calibration batch for the same seed, so results pair
    by seed (``verdict``).  ``with_settings`` shares all of this with other pruning settings.

    Args:
        config: the setting (``transfer.config.TransferConfig``).
        progress: progress bars for fine-tuning.

    Attributes:
        model: the unpruned model (``nn.Module``, eval mode), never changed by pruning.
        groups: its prunable channel groups (``pruning.groups.ChannelGroup``).
        base: the unpruned model's ``Measurement``.
        example: ``[1, channels, height, width]`` zeros, the input MACs are counted on.

    Raises:
        DataError: missing or unreadable data.  ModelError: a model that cannot be built, loaded or traced.
        PrunevoError: settings that do not fit the model.

    Example:
        >>> from prunevo import FitConfig, Setup, TransferConfig
        >>> from prunevo.transfer import TransferSession
        >>> session = TransferSession(TransferConfig(setup=Setup(model="small-vgg", dataset="digits"),
        ...                           target_macs=0.5, finetune=FitConfig(epochs=0), latency=None))
        >>> pruned, result, record = session.run("l1", seed=0)
        >>> round(result.macs_fraction, 2), result.strategy
        (0.5, 'uniform')
    """

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

    def reconstructed(self, keep: list[torch.Tensor], seed: int, stage: Stage | None = None
                      ) -> tuple[nn.Module, ReconstructionReport]:
        """A masked copy of the stage's model whose layers that read removed channels are refitted on the seed's
        calibration images (``pruning.reconstruct``), and what the refit did."""
        stage = stage or self.base_stage
        masked = copy.deepcopy(stage.model).eval()
        report = reconstruct(stage.model, masked, stage.groups, keep, self.calibration(seed).x,
                             spec=self.config.reconstruction, batch_size=self.config.calibration_batch,
                             device=self.accel.device, progress=self.progress)
        return masked, report

    def prune(self, keep: list[torch.Tensor], check_input: torch.Tensor, pruned: nn.Module | None = None,
              stage: Stage | None = None, masked: nn.Module | None = None) -> nn.Module:
        """A physically pruned copy of the stage's model, verified against the masked network (``masked``: that
        network when the caller made it, as reconstruction does; ``pruned`` is then ignored)."""
        stage = stage or self.base_stage
        if masked is not None:
            pruned = None
        else:
            masked = copy.deepcopy(stage.model).eval()
            apply_masks(masked, stage.groups, keep)
        if pruned is None:
            pruned = prune_model(copy.deepcopy(masked).eval(), stage.groups, keep, self.example)
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
        """Prune a copy of the base model with ``criterion`` under the session's strategy and target, recover it
        (BatchNorm re-estimation, then ``config.finetune``) and measure it.

        Args:
            criterion: anything ``pruning.criteria.as_criterion`` takes: a classic name (``l1``, ``tp-lamp``...),
                ``random``, formula text, a ``Formula`` or a ``Criterion``.
            seed: picks the calibration batch, BatchNorm re-estimation batches and fine-tune order (and the
                random criterion's draw), the same for every criterion.

        Returns:
            (the pruned, recovered model; its ``ApplyResult``; the ``PruneRecord`` that rebuilds its
            architecture from the unpruned one).

        Raises:
            FormulaError: formula text that does not parse.  NotApplicableError: a criterion that cannot rank
            the channels of some group.  TargetUnreachable: a target no allowed widths meet.
        """
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
                             outcome.search_top1, outcome.reconstruction)
        return outcome.model, result, outcome.record
