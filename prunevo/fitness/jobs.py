"""Fitness jobs: many candidate selections of one task, scored in one worker call.

A job carries its task's data and base weights once, however many candidates it scores, so that workers
(local processes, Dask or Ray) receive each task's data once per batch of candidates instead of once per
candidate.  Scoring modes:

- ``off``: prune each candidate physically with Torch-Pruning (a dependency graph per candidate);
- ``loop``: prune one skeleton per pruned shape and gather every candidate's weights into it
  (``pruning.gather``), then score them one after another: the same numbers as ``off``, bit for bit;
- ``fused``: score ``stack`` candidates in one vmapped pass (``training.stacked``), padded to that fixed
  size; candidates of different widths (global allocation, and the sampled configurations of a random
  search) run masked on the unpruned shape.

With reconstruction (``reconstruct=1``) every candidate has weights of its own (the layers that read its removed
channels are refitted, ``pruning.reconstruct``), so each is pruned and scored one by one, whatever the mode.

A job is a pure function of its inputs and runs on a fixed number of threads, so fitness does not depend
on the worker count, the backend or, in ``loop`` and ``off``, the other candidates of the job.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import numpy as np
import torch

from prunevo.fitness.pretrain import build_for
from prunevo.pruning.gather import SkeletonCache, signature
from prunevo.pruning.groups import ChannelGroup
from prunevo.pruning.masks import masked_states
from prunevo.pruning.physical import prune_model
from prunevo.pruning.reconstruct import Reconstruction, reconstruct
from prunevo.training import Accelerator, FitConfig, fit, recalibrate_bn, top1
from prunevo.training.stacked import Recalibration, score_states
from prunevo.utils import load_state, torch_threads
from prunevo.zoo.images import TensorImages
from prunevo.zoo.stratify import stratified_batch

MODES = ("off", "loop", "fused")


@dataclass
class TaskPayload:
    """What a worker needs of one task, whatever it scores."""

    model: str
    input_shape: tuple
    num_classes: int
    state: dict
    groups: list[ChannelGroup]
    train_x: np.ndarray
    train_y: np.ndarray
    search_samples: int  # random configuration search: images of the held subset that picks a configuration
    stem: str = "auto"  # torchvision models' stem

    def factory(self) -> torch.nn.Module:
        return build_for(self.model, self.input_shape, self.num_classes, self.stem)


@dataclass
class TaskJob:
    """Candidates of one task to score at one budget; the task's data and weights (``TaskPayload``) travel
    beside it, so that a backend can send them to a worker once for many jobs."""

    keys: list[str]
    candidates: list[list[list[torch.Tensor]]]  # per key: one selection, or a random search's configurations
    val_x: np.ndarray
    val_y: np.ndarray
    budget: FitConfig
    seed: int
    threads: int = 1
    mode: str = "loop"
    stack: int = 16
    device: str = "cpu"
    masked: bool = False  # fused mode: run candidates masked on the unpruned shape (widths differ)
    recal: Recalibration = Recalibration(batches=8, batch_size=256)
    reconstruct: Reconstruction | None = None  # refit the layers that read removed channels (None: no)
    calibration_x: np.ndarray | None = None  # the images reconstruction fits on (the task's calibration batch)
    calibration_batch: int | None = None  # images per reconstruction pass (None: reconstruct.ROWS_MEMORY decides)


def _tensor(array: np.ndarray) -> torch.Tensor:
    """A tensor sharing ``array``'s memory.  joblib hands large arrays to workers as read-only memory maps
    (one copy of the data for all workers); jobs only read and index them (indexing copies), so torch's
    warning about non-writable arrays does not apply."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(array)


def _pruned(task: TaskPayload, job: TaskJob, keep: list[torch.Tensor], train: TensorImages,
            accel: Accelerator) -> torch.nn.Module:
    model = task.factory()
    load_state(model, task.state)
    if job.reconstruct is not None:
        reference = task.factory()
        load_state(reference, task.state)
        reconstruct(reference.eval(), model, task.groups, keep, _tensor(job.calibration_x), spec=job.reconstruct,
                    batch_size=job.calibration_batch, device=accel.device)
    prune_model(model, task.groups, keep, train.x[:1])
    # Running BatchNorm statistics are stale after pruning and far from converged after a few
    # fine-tuning steps; re-estimating them is cheap and removes most of the noise in the fitness.
    return recalibrate_bn(model, train, accel, job.recal.batches, job.recal.batch_size, job.seed)


def _one_by_one(task: TaskPayload, job: TaskJob, candidates: list[list[torch.Tensor]], train: TensorImages,
                val: TensorImages, accel: Accelerator) -> float:
    """Prune physically, fine-tune, score.  With several candidate selections (random configuration search),
    the one whose recalibrated net scores best on a stratified subset of the training split is fine-tuned."""
    if len(candidates) == 1:
        model = _pruned(task, job, candidates[0], train, accel)
    else:
        per_class = max(1, task.search_samples // task.num_classes)
        held = TensorImages(*stratified_batch(train.x, train.targets, per_class, job.seed))
        best = -1.0
        for keep in candidates:
            candidate = _pruned(task, job, keep, train, accel)
            acc = top1(candidate, held, accel)
            if acc > best:  # ties keep the earlier candidate
                model, best = candidate, acc
    if job.budget.epochs > 0:
        fit(model, train, job.budget, job.seed, accel)
        recalibrate_bn(model, train, accel, job.recal.batches, job.recal.batch_size, job.seed)
    return top1(model, val, accel)


def run_task_job(task: TaskPayload, job: TaskJob) -> list[float]:
    """Validation accuracy of every candidate of the job, in the order of ``job.keys``."""
    if job.mode not in MODES:
        raise ValueError(f"unknown scoring mode {job.mode!r}; allowed: {', '.join(MODES)}")
    with torch_threads(job.threads):
        torch.manual_seed(job.seed)
        accel = Accelerator(job.device)
        train = TensorImages(_tensor(task.train_x), _tensor(task.train_y))
        val = TensorImages(_tensor(job.val_x), _tensor(job.val_y))
        out: list[float | None] = [None] * len(job.keys)
        singles = [i for i, c in enumerate(job.candidates) if len(c) == 1]
        searches = [i for i, c in enumerate(job.candidates) if len(c) > 1]
        if job.mode == "fused" and searches and job.reconstruct is None:
            _score_searched(task, job, searches, train, val, accel, out)
        one_by_one = job.mode == "off" or job.reconstruct is not None
        for i, candidates in enumerate(job.candidates):
            if out[i] is None and (one_by_one or len(candidates) > 1):
                out[i] = _one_by_one(task, job, candidates, train, val, accel)
        if job.mode == "fused" and job.masked:
            singles = [i for i in singles if out[i] is None]
            _score_masked(task, job, singles, train, val, accel, out)
        elif job.mode != "off":
            _score_gathered(task, job, [i for i in singles if out[i] is None], train, val, accel, out)
        return [float(v) for v in out]


def _score_gathered(task: TaskPayload, job: TaskJob, todo: list[int], train: TensorImages, val: TensorImages,
                    accel: Accelerator, out: list) -> None:
    """Candidates grouped by pruned shape, each group scored on one skeleton."""
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i in todo:
        by_shape.setdefault(signature(job.candidates[i][0]), []).append(i)
    skeletons = SkeletonCache(task.factory, task.state, task.groups, train.x[:1])
    for members in by_shape.values():
        if job.mode == "loop" and len(members) == 1:  # a skeleton saves nothing for one candidate
            out[members[0]] = _one_by_one(task, job, job.candidates[members[0]], train, val, accel)
            continue
        skeleton = skeletons.get(job.candidates[members[0]][0])
        if skeleton is None:  # a layer the gathering cannot reproduce: prune each candidate
            for i in members:
                out[i] = _one_by_one(task, job, job.candidates[i], train, val, accel)
            continue
        step = job.stack if job.mode == "fused" else len(members)
        for start in range(0, len(members), step):
            chunk = members[start:start + step]
            states = [skeleton.state_for(job.candidates[i][0], task.state) for i in chunk]
            scores = score_states(skeleton.model, states, train, val, job.budget, job.seed, job.recal,
                                  fused=job.mode == "fused", pad_to=job.stack, accel=accel)
            for i, score in zip(chunk, scores):
                out[i] = score


def _score_masked(task: TaskPayload, job: TaskJob, todo: list[int], train: TensorImages, val: TensorImages,
                  accel: Accelerator, out: list, keeps: dict[int, list[torch.Tensor]] | None = None) -> None:
    """Fused passes on the unpruned shape, candidates masked (``keeps``: the keep-masks to use per index,
    by default each candidate's only selection)."""
    model = task.factory()
    for start in range(0, len(todo), job.stack):
        chunk = todo[start:start + job.stack]
        chosen = [keeps[i] if keeps else job.candidates[i][0] for i in chunk]
        states, masks = masked_states(model, task.state, task.groups, chosen)
        scores = score_states(model, states, train, val, job.budget, job.seed, job.recal, fused=True,
                              pad_to=job.stack, masks=masks, accel=accel)
        for i, score in zip(chunk, scores):
            out[i] = score


def _score_searched(task: TaskPayload, job: TaskJob, todo: list[int], train: TensorImages, val: TensorImages,
                    accel: Accelerator, out: list) -> None:
    """Random configuration search, fused: every sampled configuration of every candidate is recalibrated and
    scored on the held subset in masked passes (configurations differ in width); each candidate's best one
    (ties keep the earlier, as ``_one_by_one``) is then fine-tuned and scored, masked too."""
    per_class = max(1, task.search_samples // task.num_classes)
    held = TensorImages(*stratified_batch(train.x, train.targets, per_class, job.seed))
    model = task.factory()
    configs = [(i, keep) for i in todo for keep in job.candidates[i]]
    accuracy: list[float] = []
    screen = replace(job.budget, epochs=0.0)
    for start in range(0, len(configs), job.stack):
        chunk = [keep for _, keep in configs[start:start + job.stack]]
        states, masks = masked_states(model, task.state, task.groups, chunk)
        accuracy += score_states(model, states, train, held, screen, job.seed, job.recal, fused=True,
                                 pad_to=job.stack, masks=masks, accel=accel)
    best: dict[int, tuple[float, list[torch.Tensor]]] = {}
    for (i, keep), acc in zip(configs, accuracy):
        if i not in best or acc > best[i][0]:
            best[i] = (acc, keep)
    _score_masked(task, job, todo, train, val, accel, out, {i: keep for i, (_, keep) in best.items()})
