"""Random channel-configuration search (Li et al., 2022) inside a transfer session.

Every candidate is a sampled vector of per-group keep ratios rescaled to the MACs target; the
criterion chooses the channels inside each group.  Each candidate's pruned network is scored on a
class-stratified held-out subset of the validation split after BatchNorm recalibration (and a short
fine-tune when ``SearchSpec.finetune_epochs`` > 0); the best one is kept.  The configurations come
from the run's seed, so every criterion is searched over the same candidates.
"""
from __future__ import annotations

import copy
import logging
from dataclasses import replace

import torch
from torch.utils.data import Subset

from prunevo.errors import TargetUnreachable
from prunevo.pruning.allocation import masks_along, sample_configurations
from prunevo.pruning.groups import group_ties
from prunevo.pruning.target import KeepMasks, meet_macs_target
from prunevo.training import evaluate, fit, recalibrate_bn
from prunevo.utils import derive_seed
from prunevo.zoo.images import labels_of
from prunevo.zoo.stratify import stratified_indices

log = logging.getLogger(__name__)


def heldout_subset(session, seed: int) -> Subset:
    """``search.samples`` class-stratified validation images (never the test split)."""
    val = session.data.val
    per_class = max(1, session.config.search.samples // session.data.num_classes)
    return Subset(val, stratified_indices(labels_of(val), per_class, seed).tolist())


def search_configuration(session, stage, scores: list[torch.Tensor], seed: int, target_macs: float) -> KeepMasks:
    """The best of ``search.candidates`` sampled configurations at ``target_macs``, as a ``KeepMasks``
    (TransferConfig refuses random search with a channel ratio, so there is always a MACs target)."""
    from prunevo.progress import track

    config = session.config
    spec = config.prune_spec()
    heldout = heldout_subset(session, seed)
    sizes = [len(s) for s in scores]
    candidates = sample_configurations(sizes, config.search.candidates, derive_seed(seed, "configurations"), spec)
    best, best_top1, tried = None, -1.0, []
    for candidate in track(candidates, "random search", "candidate", session.progress, leave=False):
        try:
            hit = meet_macs_target(stage.model, stage.groups, masks_along(scores, spec, candidate, config.rounding,
                                                                   group_ties(stage.groups)),
                                   target_macs, session.example, estimator=stage.estimator, full_macs=stage.macs,
                                   allocation="random-search", max_layer_ratio=spec.max_layer_ratio)
        except TargetUnreachable:  # this sample's per-layer floors cannot reach the target
            tried.append(float("nan"))
            continue
        model = copy.deepcopy(hit.pruned)  # the session verifies hit.pruned against the masked base later
        recalibrate_bn(model, session.data.train_plain, session.accel, seed=seed)
        if config.search.finetune_epochs > 0:
            fit(model, session.data.train, replace(config.finetune, epochs=config.search.finetune_epochs), seed,
                session.accel)
        top1 = evaluate(model, heldout, session.accel)["top1"]
        tried.append(round(top1, 6))
        if top1 > best_top1:  # strictly better: ties keep the earlier sample, the same in every run
            best, best_top1 = hit, top1
    if best is None:
        raise TargetUnreachable(f"none of {len(candidates)} sampled configurations reaches {target_macs:.0%} of the "
                                f"MACs; allowed: a larger {{param:target_macs}} or {{param:max_layer_ratio}}")
    log.info("random search: best held-out top-1 %.4f of %d candidates", best_top1, len(candidates))
    return replace(best, search_top1=tried)
