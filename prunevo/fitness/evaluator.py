"""The parallel fitness evaluator.

For each candidate criterion and task: score the channel groups (in this process, cheap), select the
keep-masks, and look the masks up in the cache.  Only unseen (task, masks) pairs are pruned and
fine-tuned, in parallel with joblib.  Each job is a pure function of its inputs and runs on a fixed
number of threads, so fitness does not depend on ``n_jobs``.
"""
from __future__ import annotations

import math
import statistics
import time
import warnings
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np
import torch
from joblib import Parallel, delayed

from prunevo.fitness.pretrain import build_for
from prunevo.fitness.tasks import PreparedTask
from prunevo.pruning.criteria import Criterion, FormulaCriterion, InvalidScores, NotApplicable
from prunevo.pruning.groups import ChannelGroup
from prunevo.pruning.physical import prune_model
from prunevo.pruning.allocation import masks_along, sample_configurations
from prunevo.pruning.cost import MacsEstimator
from prunevo.pruning.selection import masks_key, select
from prunevo.pruning.statistics import stratified_batch
from prunevo.pruning.target import bisect_amount
from prunevo.training import FitConfig, fit, recalibrate_bn, top1
from prunevo.utils import derive_seed, stable_hash, torch_threads
from prunevo.zoo.images import TensorImages

WORST = 0.0
PLAN_MEMO = 4096  # remembered mask plans; the memo is emptied when full


@dataclass
class FitnessResult:
    """``fitness`` is what evolution selects on: the worst value when the criterion's scores are invalid
    (``reason``) or when it does not apply to some task (``not_applicable``: task -> why).
    ``applicable_fitness`` is what reports show: the weighted geometric mean over the tasks where the
    criterion applies (None when it applies nowhere or is invalid)."""

    fitness: float
    accuracy: dict[str, float] = field(default_factory=dict)  # validation accuracy after fine-tuning
    relative: dict[str, float] = field(default_factory=dict)  # ... divided by the unpruned net's
    reason: str | None = None  # why the criterion got the worst fitness
    not_applicable: dict[str, str] = field(default_factory=dict)
    applicable_fitness: float | None = None
    selection: str | None = None  # a hash of the masks selected on every task: equal masks, equal hash
    seed_accuracy: dict[str, list[float]] = field(default_factory=dict)  # per task, one per fine-tune seed

    @property
    def valid(self) -> bool:
        return self.reason is None and not self.not_applicable


@dataclass
class MaskPlan:
    """What one criterion selects, per task: the fitness-cache key and the candidate keep-masks where it
    applies; ``reason`` when its scores are invalid; ``not_applicable``: task -> why it does not apply."""

    keys: dict[str, str] = field(default_factory=dict)
    keeps: dict[str, list[list[torch.Tensor]]] = field(default_factory=dict)
    reason: str | None = None
    not_applicable: dict[str, str] = field(default_factory=dict)

    @cached_property  # plans are remembered and asked again (redraw checks, logs, results)
    def selection(self) -> str | None:
        """What the criterion selects everywhere, hashed: two criteria with equal masks on every task (and the
        same tasks where they do not apply) have equal selections."""
        if self.reason is not None:
            return None
        return stable_hash([sorted(self.keys.items()), sorted(self.not_applicable)])


@dataclass
class _Job:
    model: str
    input_shape: tuple
    num_classes: int
    state: dict
    groups: list[ChannelGroup]
    candidates: list[list[torch.Tensor]]  # one selection, or the sampled configurations of a random search
    search_samples: int
    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    budget: FitConfig
    seed: int
    threads: int


def _pruned(job: _Job, keep: list[torch.Tensor], train: TensorImages) -> torch.nn.Module:
    model = build_for(job.model, job.input_shape, job.num_classes)
    model.load_state_dict(job.state)
    prune_model(model, job.groups, keep, train.x[:1])
    # Running BatchNorm statistics are stale after pruning and far from converged after a few
    # fine-tuning steps; re-estimating them is cheap and removes most of the noise in the fitness.
    return recalibrate_bn(model, train, batches=8, batch_size=256, seed=job.seed)


def weighted_geometric_mean(relative: list[float], weights: list[float]) -> float:
    """Fitness over tasks: the weighted geometric mean of relative accuracy (the worst value when any is 0)."""
    if min(relative) <= 0:
        return WORST
    return math.exp(sum(w * math.log(r) for w, r in zip(weights, relative)) / sum(weights))


def _tensor(array: np.ndarray) -> torch.Tensor:
    """A tensor sharing ``array``'s memory.  joblib hands large arrays to workers as read-only memory maps
    (one copy of the data for all workers); the job only reads and indexes them (indexing copies), so
    torch's warning about non-writable arrays does not apply."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(array)


def run_finetune_job(job: _Job) -> float:
    """Prune a copy of the base net physically, fine-tune it briefly, return validation accuracy.

    With several candidate selections (random configuration search), the one whose recalibrated net
    scores best on a stratified subset of the training split is fine-tuned.
    """
    with torch_threads(job.threads):
        torch.manual_seed(job.seed)
        train = TensorImages(_tensor(job.train_x), _tensor(job.train_y))
        if len(job.candidates) == 1:
            model = _pruned(job, job.candidates[0], train)
        else:
            held = TensorImages(*stratified_batch(train.x, train.targets,
                                                  max(1, job.search_samples // job.num_classes), job.seed))
            best = -1.0
            for keep in job.candidates:
                candidate = _pruned(job, keep, train)
                acc = top1(candidate, held)
                if acc > best:  # ties keep the earlier candidate
                    model, best = candidate, acc
        if job.budget.epochs > 0:
            fit(model, train, job.budget, job.seed)
            recalibrate_bn(model, train, batches=8, batch_size=256, seed=job.seed)
        return top1(model, TensorImages(_tensor(job.val_x), _tensor(job.val_y)))


@dataclass
class EvaluatorStats:
    lookups: int = 0
    hits: int = 0
    jobs: int = 0
    seconds: float = 0.0

    @property
    def hit_rate(self) -> float:
        return self.hits / self.lookups if self.lookups else 0.0


class Evaluator:
    """Scores criteria on prepared tasks; fitness = weighted geometric mean of relative accuracy."""

    def __init__(self, tasks: list[PreparedTask], n_jobs: int = 1, seed: int = 0, threads_per_job: int = 1,
                 cache: dict[str, float] | None = None):
        self.tasks = tasks
        self.n_jobs = n_jobs
        self.seed = seed
        self.threads_per_job = threads_per_job
        self.cache: dict[str, float] = dict(cache or {})
        self.stats = EvaluatorStats()
        self._task_ids = {t.task.name: t.identity for t in tasks}
        self._by_name = {t.task.name: t for t in tasks}
        self._estimators: dict[str, MacsEstimator] = {}
        self._searches: dict[str, tuple] = {}
        self._plans: dict[str, MaskPlan] = {}  # formula text -> its plan (scoring is deterministic)

    def finetune_seed(self, prepared: PreparedTask, index: int = 0) -> int:
        """The fine-tune seed of one of the task's ``seeds`` repeats: from the run's seed and what the task
        is (not what it is called), so that a cache key always means one seed."""
        extra = (index,) if index else ()
        return derive_seed(self.seed, prepared.task.identity(), "finetune", *extra)

    def _job(self, prepared: PreparedTask, candidates: list[list[torch.Tensor]], index: int = 0) -> _Job:
        d = prepared.data
        search = prepared.task.search
        return _Job(
            prepared.task.model, d.input_shape, d.num_classes, prepared.base_state, prepared.groups, candidates,
            search.samples if search else 0, d.train.x.numpy(), d.train.targets.numpy(), d.val.x.numpy(),
            d.val.targets.numpy(), prepared.task.finetune, self.finetune_seed(prepared, index), self.threads_per_job,
        )

    def _estimator(self, prepared: PreparedTask) -> MacsEstimator:
        name = prepared.task.name
        if name not in self._estimators:
            model = build_for(prepared.task.model, prepared.data.input_shape, prepared.data.num_classes)
            self._estimators[name] = MacsEstimator(model, prepared.groups, prepared.example_input)
        return self._estimators[name]

    def _configurations(self, prepared: PreparedTask) -> tuple[list[torch.Tensor], float]:
        """The task's sampled configurations (the same for every criterion) and their MACs budget: the
        task's MACs target, or what the uniform selection at the task's ratio leaves."""
        name = prepared.task.name
        if name not in self._searches:
            estimator = self._estimator(prepared)
            sizes = [g.size for g in prepared.groups]
            spec = prepared.task.prune
            budget = prepared.task.target_macs
            if budget is None:
                budget = estimator.fraction(select([torch.arange(n, dtype=torch.float64) for n in sizes],
                                                   replace(spec, selection="layerwise")))
            configs = sample_configurations(sizes, prepared.task.search.candidates,
                                            derive_seed(self.seed, prepared.task.identity(), "configurations"), spec)
            self._searches[name] = (configs, budget)
        return self._searches[name]

    def candidates(self, prepared: PreparedTask, scores: list[torch.Tensor]) -> list[list[torch.Tensor]]:
        """The keep-masks to try on a task: the task's selection, or one per sampled configuration."""
        spec, task = prepared.task.prune, prepared.task
        if task.search is None:
            if task.target_macs is None:
                return [select(scores, spec)]
            masks_at = masks_along(scores, spec)
            return [masks_at(bisect_amount(masks_at, self._estimator(prepared), task.target_macs))]
        configs, budget = self._configurations(prepared)
        estimator = self._estimator(prepared)
        out = []
        for config in configs:
            masks_at = masks_along(scores, spec, config)
            out.append(masks_at(bisect_amount(masks_at, estimator, budget)))
        return out

    def mask_plan(self, criterion: Criterion) -> MaskPlan:
        """The criterion's cache keys and candidate keep-masks on every task where it applies (formulas'
        plans are remembered: evolution asks again for elites, duplicates and redraw checks)."""
        memo = criterion.formula.text if isinstance(criterion, FormulaCriterion) else None
        if memo is not None and memo in self._plans:
            return self._plans[memo]
        with torch_threads(self.threads_per_job):  # scores, like fine-tunes, must not depend on the thread count
            plan = self._mask_plan(criterion)
        if memo is not None:
            if len(self._plans) >= PLAN_MEMO:
                self._plans.clear()
            self._plans[memo] = plan
        return plan

    def is_evaluated(self, plan: MaskPlan) -> bool:
        """Whether every fine-tune this plan needs is already in the cache."""
        return all(k in self.cache for name, key in plan.keys.items() for k in self.seed_keys(self._by_name[name], key))

    def _mask_plan(self, criterion: Criterion) -> MaskPlan:
        out = MaskPlan()
        for prepared in self.tasks:
            task = prepared.task
            try:
                scores = criterion.group_scores(prepared.calibration, task.prune.group_reduction)
            except NotApplicable as exc:
                out.not_applicable[task.name] = str(exc)
                continue
            except InvalidScores as exc:
                out.reason = f"{task.name}: {exc}"
                return out
            except (RuntimeError, ValueError) as exc:  # e.g. an operand that does not fit this layer
                out.reason = f"{task.name}: scoring failed: {exc}"
                return out
            candidates = self.candidates(prepared, scores)
            out.keeps[task.name] = candidates
            out.keys[task.name] = f"{self._task_ids[task.name]}|" + "+".join(masks_key(k) for k in candidates)
        return out

    @staticmethod
    def seed_keys(prepared: PreparedTask, key: str) -> list[str]:
        """The cache keys of a selection's fine-tunes, one per fine-tune seed of the task."""
        return [key] + [f"{key}#seed{i}" for i in range(1, prepared.task.seeds)]

    def evaluate(self, criteria: list[Criterion]) -> list[FitnessResult]:
        start = time.perf_counter()
        plans = []
        pending: dict[str, _Job] = {}
        for criterion in criteria:
            chosen = self.mask_plan(criterion)
            plans.append(chosen)
            if chosen.reason is not None:
                continue
            for task_name, key in chosen.keys.items():
                prepared = self._by_name[task_name]
                for index, seed_key in enumerate(self.seed_keys(prepared, key)):
                    self.stats.lookups += 1
                    if seed_key in self.cache or seed_key in pending:
                        self.stats.hits += 1
                    else:
                        pending[seed_key] = self._job(prepared, chosen.keeps[task_name], index)
        if pending:
            order = sorted(pending)
            if self.n_jobs == 1:
                accs = [run_finetune_job(pending[k]) for k in order]
            else:
                accs = Parallel(n_jobs=self.n_jobs)(delayed(run_finetune_job)(pending[k]) for k in order)
            self.cache.update(zip(order, accs))
            self.stats.jobs += len(order)
        self.stats.seconds += time.perf_counter() - start
        return [self._result(plan) for plan in plans]

    def _result(self, chosen: MaskPlan) -> FitnessResult:
        not_applicable = chosen.not_applicable
        if chosen.reason is not None:
            return FitnessResult(WORST, reason=chosen.reason, not_applicable=not_applicable)
        scored = [t for t in self.tasks if t.task.name in chosen.keys]
        seed_acc = {t.task.name: [self.cache[k] for k in self.seed_keys(t, chosen.keys[t.task.name])] for t in scored}
        acc = {name: statistics.fmean(values) for name, values in seed_acc.items()}
        rel = {t.task.name: acc[t.task.name] / max(t.base_val_accuracy, 1e-12) for t in scored}
        if not scored:
            return FitnessResult(WORST, not_applicable=not_applicable, selection=chosen.selection)
        value = weighted_geometric_mean([rel[t.task.name] for t in scored], [t.task.weight for t in scored])
        return FitnessResult(WORST if not_applicable else value, acc, rel, not_applicable=not_applicable,
                             applicable_fitness=value, selection=chosen.selection, seed_accuracy=seed_acc)
