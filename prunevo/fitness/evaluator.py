"""The parallel fitness evaluator.

For each candidate criterion and task: score the channel groups (in this process, cheap), select the
keep-masks, and look the masks up in the cache.  Only unseen (task, masks, rung) triples are pruned and
fine-tuned: batched per task into jobs (``fitness.jobs``) that run on a backend (``fitness.backends``).
With a fidelity ladder (``fitness.ladder``) every new selection gets rung 0 and only the best climb.
Each job is a pure function of its inputs and runs on a fixed number of threads, so fitness does not
depend on ``n_jobs``, the backend or how candidates are batched.
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field, replace
from functools import cached_property

import torch

from prunevo.fitness.backends import Backend
from prunevo.fitness.execution import SERIAL, Execution
from prunevo.fitness.jobs import TaskJob, TaskPayload, run_task_job
from prunevo.fitness.ladder import Ladder
from prunevo.fitness.tasks import PreparedTask
from prunevo.pruning.allocation import masks_along, sample_configurations
from prunevo.pruning.cost import MacsEstimator
from prunevo.pruning.criteria import Criterion, InvalidScores, NotApplicable, score_groups
from prunevo.pruning.groups import group_ties
from prunevo.pruning.ranking import masks_key, select
from prunevo.pruning.target import bisect_amount
from prunevo.training.config import resolve_device
from prunevo.training.stacked import Recalibration
from prunevo.utils import derive_seed, stable_hash, torch_threads
from prunevo.zoo.stratify import stratified_indices

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
    rung: int = 0  # the highest fidelity rung measured (see ``fitness.ladder``)
    complete: bool = True  # measured at the top rung: only complete results enter the hall of fame

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


def weighted_geometric_mean(relative: list[float], weights: list[float]) -> float:
    """Fitness over tasks: the weighted geometric mean of relative accuracy (the worst value when any is 0)."""
    if min(relative) <= 0:
        return WORST
    return math.exp(sum(w * math.log(r) for w, r in zip(weights, relative)) / sum(weights))


@dataclass
class EvaluatorStats:
    lookups: int = 0
    hits: int = 0
    jobs: int = 0  # measurements run: one per (task, selection, fine-tune seed, rung)
    seconds: float = 0.0
    rung_counts: list[int] = field(default_factory=list)  # distinct selections measured at each rung
    batches: int = 0  # worker calls (each scores many candidates of one task)

    @property
    def hit_rate(self) -> float:
        return self.hits / self.lookups if self.lookups else 0.0


class Evaluator:
    """Scores criteria on prepared tasks; fitness = weighted geometric mean of relative accuracy.

    ``execution`` says where jobs run and how a job scores its candidates (``fitness.execution``; default
    one local worker), ``ladder`` the fidelity ladder (None: every selection gets the full measurement);
    ``backend`` may be a started ``Backend`` to share (the caller then closes it).  Call ``close`` (or use
    ``with``) to release a cluster the evaluator started.
    """

    def __init__(self, tasks: list[PreparedTask], *, execution: Execution = SERIAL, seed: int = 0,
                 threads_per_job: int = 1, cache: dict[str, float] | None = None, ladder: Ladder | None = None,
                 backend: Backend | None = None):
        resolve_device(execution.device)  # an unknown or absent device fails here, before any job
        self.tasks = tasks
        self.execution = execution
        self.n_jobs = execution.n_jobs
        self.seed = seed
        self.threads_per_job = threads_per_job
        self.cache: dict[str, float] = dict(cache or {})
        self.stats = EvaluatorStats()
        self.ladder = ladder
        self.device = execution.device
        self.mode = execution.mode
        self.stack = execution.stack
        self._owns_backend = backend is None
        self.backend = Backend(execution.backend, execution.n_jobs, execution.address) if backend is None else backend
        self._task_ids = {t.task.name: t.identity for t in tasks}
        self._by_name = {t.task.name: t for t in tasks}
        self._estimators: dict[str, MacsEstimator] = {}
        self._searches: dict[str, tuple] = {}
        self._plans: dict[str, MaskPlan] = {}  # formula text -> its plan (scoring is deterministic)
        self._payloads: dict[str, TaskPayload] = {}
        self._subsets: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def __enter__(self) -> "Evaluator":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_backend:
            self.backend.close()

    @property
    def rungs(self) -> int:
        return self.ladder.rungs if self.ladder else 1

    def finetune_seed(self, prepared: PreparedTask, index: int = 0) -> int:
        """The fine-tune seed of one of the task's ``seeds`` repeats: from the run's seed and what the task
        is (not what it is called), so that a cache key always means one seed."""
        extra = (index,) if index else ()
        return derive_seed(self.seed, prepared.task.identity(), "finetune", *extra)

    def _payload(self, prepared: PreparedTask) -> TaskPayload:
        name = prepared.task.name
        if name not in self._payloads:
            d, search = prepared.data, prepared.task.search
            self._payloads[name] = TaskPayload(
                prepared.task.model, d.input_shape, d.num_classes, prepared.base_state, prepared.groups,
                d.train.x.numpy(), d.train.targets.numpy(), search.samples if search else 0, prepared.task.stem)
        return self._payloads[name]

    def _rung_val(self, prepared: PreparedTask, rung: int):
        """The validation images a rung scores: a fixed stratified subset at rung 0, else the whole split."""
        val = prepared.data.val
        if rung == self.rungs - 1 or len(val) <= self.ladder.subset:
            return val.x, val.targets
        name = prepared.task.name
        if name not in self._subsets:  # drawn and copied once per task, not once per generation
            per_class = math.ceil(self.ladder.subset / prepared.data.num_classes)
            idx = stratified_indices(val.targets, per_class, 0)
            self._subsets[name] = (val.x[idx], val.targets[idx])
        return self._subsets[name]

    def rung_keys(self, prepared: PreparedTask, key: str, rung: int) -> list[str]:
        """Cache keys of one selection's measurements at a rung: the top rung's are the task's own (one per
        fine-tune seed), a lower rung's name what it measures (one seed)."""
        if rung == self.rungs - 1:
            return self.seed_keys(prepared, key)
        return [f"{key}@{self.ladder.tag(rung, prepared.task.finetune)}"]

    def _estimator(self, prepared: PreparedTask) -> MacsEstimator:
        name = prepared.task.name
        if name not in self._estimators:
            model = prepared.build()
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
                                                   replace(spec, ranking="layerwise")))
            configs = sample_configurations(sizes, prepared.task.search.candidates,
                                            derive_seed(self.seed, prepared.task.identity(), "configurations"), spec)
            self._searches[name] = (configs, budget)
        return self._searches[name]

    def candidates(self, prepared: PreparedTask, scores: list[torch.Tensor]) -> list[list[torch.Tensor]]:
        """The keep-masks to try on a task: the task's selection, or one per sampled configuration."""
        spec, task = prepared.task.prune, prepared.task
        ties = group_ties(prepared.groups)
        if task.search is None:
            if task.target_macs is None:
                return [masks_along(scores, spec, ties=ties)(spec.ratio)]
            masks_at = masks_along(scores, spec, ties=ties)
            return [masks_at(bisect_amount(masks_at, self._estimator(prepared), task.target_macs))]
        configs, budget = self._configurations(prepared)
        estimator = self._estimator(prepared)
        out = []
        for config in configs:
            masks_at = masks_along(scores, spec, config, ties=ties)
            out.append(masks_at(bisect_amount(masks_at, estimator, budget)))
        return out

    def mask_plan(self, criterion: Criterion) -> MaskPlan:
        """The criterion's cache keys and candidate keep-masks on every task where it applies (formulas'
        plans are remembered by the formula's text: evolution asks again for elites, duplicates and redraw checks)."""
        formula = getattr(criterion, "formula", None)
        memo = formula.text if formula is not None else None
        if memo is not None and memo in self._plans:
            return self._plans[memo]
        with torch_threads(self.threads_per_job):  # scores, like fine-tunes, must not depend on the thread count
            plan = self._mask_plan(criterion)
        if memo is not None:
            if len(self._plans) >= PLAN_MEMO:
                self._plans.clear()
            self._plans[memo] = plan
        return plan

    def is_new(self, plan: MaskPlan) -> bool:
        """Whether the plan's selection still needs measuring."""
        return plan.selection is not None and not self.is_evaluated(plan)

    def is_evaluated(self, plan: MaskPlan) -> bool:
        """Whether every fine-tune this plan needs is already in the cache."""
        return all(k in self.cache for name, key in plan.keys.items() for k in self.seed_keys(self._by_name[name], key))

    def _mask_plan(self, criterion: Criterion) -> MaskPlan:
        out = MaskPlan()
        for prepared in self.tasks:
            task = prepared.task
            try:
                scores = score_groups(criterion, prepared.calibration, task.prune.group_reduction)
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

    def evaluate(self, criteria: list[Criterion], full: bool = False) -> list[FitnessResult]:
        """Fitness of each criterion.  New selections climb the ladder (when there is one) as one cohort:
        after each rung only the best share of them is measured at the next.  ``full`` measures every
        selection at the top rung (baselines and reports)."""
        start = time.perf_counter()
        plans = [self.mask_plan(c) for c in criteria]
        seen: set[str] = set()
        cohort: dict[str, MaskPlan] = {}  # new selections, in order of first appearance
        for plan in plans:
            if plan.reason is not None:
                continue
            for task_name, key in plan.keys.items():
                for seed_key in self.seed_keys(self._by_name[task_name], key):
                    self.stats.lookups += 1
                    if seed_key in self.cache or seed_key in seen:
                        self.stats.hits += 1
                    seen.add(seed_key)
            if plan.keys and self.is_new(plan):
                cohort.setdefault(plan.selection, plan)
        alive = list(cohort.values())
        counts = self.stats.rung_counts
        counts.extend([0] * (self.rungs - len(counts)))
        for rung in range(self.rungs - 1 if full else 0, self.rungs):
            self._measure(alive, rung)
            counts[rung] += len(alive)
            if rung == self.rungs - 1 or not alive:
                break
            fitness = [self._result(plan, rung).fitness for plan in alive]
            ranked = sorted(range(len(alive)), key=lambda i: -fitness[i])  # stable: ties keep the earlier
            alive = [alive[i] for i in sorted(ranked[:self.ladder.promoted(rung, len(alive))])]
        self.stats.seconds += time.perf_counter() - start
        return [self._best_result(plan) for plan in plans]

    def _measure(self, plans: list[MaskPlan], rung: int) -> None:
        """Run, in batched jobs, every measurement at ``rung`` that the plans need and the cache lacks."""
        pending: dict[tuple[str, int], dict[str, list]] = {}  # (task, seed index) -> key -> candidates
        for plan in plans:
            for task_name, key in plan.keys.items():
                prepared = self._by_name[task_name]
                for index, k in enumerate(self.rung_keys(prepared, key, rung)):
                    if k not in self.cache:
                        pending.setdefault((task_name, index), {})[k] = plan.keeps[task_name]
        jobs = []
        for (task_name, index), work in pending.items():
            prepared = self._by_name[task_name]
            keys = sorted(work)
            # two chunks per worker and task: joblib hands them out as workers free up, which evens out tasks of
            # different cost; each chunk carries its task's data once
            chunks = 1 if self.n_jobs == 1 else 2 * self.n_jobs
            per_job = self.stack if self.mode == "fused" else math.ceil(len(keys) / chunks)
            finetune = prepared.task.finetune
            budget = finetune if rung == self.rungs - 1 else self.ladder.budget(rung, finetune)
            val_x, val_y = self._rung_val(prepared, rung)
            rung0 = rung == 0 and rung < self.rungs - 1
            recal = Recalibration(self.ladder.recal_batches if rung0 else prepared.task.recal_batches)
            for first in range(0, len(keys), per_job):
                chunk = keys[first:first + per_job]
                jobs.append((self._payload(prepared), TaskJob(
                    chunk, [work[k] for k in chunk], val_x.numpy(), val_y.numpy(), budget,
                    self.finetune_seed(prepared, index), self.threads_per_job, self.mode, self.stack, self.device,
                    masked=prepared.task.allocation == "global", recal=recal,
                    **self._reconstruction(prepared))))
        shared = list({id(p): p for p, _ in jobs}.values())
        for (_, job), accuracies in zip(jobs, self.backend.map(run_task_job, jobs, shared)):
            self.cache.update(zip(job.keys, accuracies))
            self.stats.jobs += len(job.keys)
        self.stats.batches += len(jobs)

    @staticmethod
    def _reconstruction(prepared: PreparedTask) -> dict:
        """The job fields of a task that reconstructs: its settings and calibration batch (none otherwise)."""
        if not prepared.task.reconstruct:
            return {}
        return {"reconstruct": prepared.task.reconstruction, "calibration_x": prepared.calibration.x.numpy(),
                "calibration_batch": prepared.calibration.batch_size}

    def _best_result(self, plan: MaskPlan) -> FitnessResult:
        """The result at the highest rung measured for every task."""
        for rung in range(self.rungs - 1, -1, -1):
            if plan.reason is not None or all(
                    k in self.cache for name, key in plan.keys.items()
                    for k in self.rung_keys(self._by_name[name], key, rung)):
                return self._result(plan, rung)
        raise RuntimeError("a selection was left unmeasured")  # evaluate() measures rung 0 for every plan

    def _result(self, chosen: MaskPlan, rung: int) -> FitnessResult:
        not_applicable = chosen.not_applicable
        if chosen.reason is not None:  # nothing to measure: final at every rung
            return FitnessResult(WORST, reason=chosen.reason, not_applicable=not_applicable, rung=self.rungs - 1)
        complete = rung == self.rungs - 1
        scored = [t for t in self.tasks if t.task.name in chosen.keys]
        seed_acc = {t.task.name: [self.cache[k] for k in self.rung_keys(t, chosen.keys[t.task.name], rung)]
                    for t in scored}
        acc = {name: statistics.fmean(values) for name, values in seed_acc.items()}
        rel = {t.task.name: acc[t.task.name] / max(t.base_val_accuracy, 1e-12) for t in scored}
        if not scored:
            return FitnessResult(WORST, not_applicable=not_applicable, selection=chosen.selection)
        value = weighted_geometric_mean([rel[t.task.name] for t in scored], [t.task.weight for t in scored])
        return FitnessResult(WORST if not_applicable else value, acc, rel, not_applicable=not_applicable,
                             applicable_fitness=value, selection=chosen.selection, seed_accuracy=seed_acc,
                             rung=rung, complete=complete)
