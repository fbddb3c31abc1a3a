"""Baselines under every allocation: "best classic" is the best (criterion, allocation) pair, in fitness, in the
re-scoring and in the verdicts, and a formula can be re-scored under another allocation than its own, paired by
seed with every baseline."""
from __future__ import annotations

from dataclasses import replace

import pytest

from prunevo.fitness.rescore import best_rescored, rescore, verdicts
from prunevo.fitness.scoring import allocation_variants, best_classic, score_criteria
from prunevo.fitness.task_spec import with_allocation
from prunevo.pruning.criteria import BASELINE_NAMES, RANDOM

pytestmark = pytest.mark.slow  # the prepared_tasks fixture trains two digits nets (~15 s once)
BOTH = ("uniform", "global")


@pytest.fixture(scope="module")
def one_shot(prepared_tasks):
    """The digits tasks pruned one-shot (no fine-tune): what a search on the user's network measures."""
    return [replace(p, task=replace(p.task, finetune=replace(p.task.finetune, epochs=0.0))) for p in prepared_tasks]


def test_every_baseline_is_scored_under_each_allocation_and_the_best_classic_is_the_best_pair(one_shot):
    rows = score_criteria(["lamp(l1(W))"], one_shot, allocations=BOTH, random_seeds=1)
    by = {(r.name, r.allocation): r for r in rows}
    for name in (*BASELINE_NAMES, RANDOM):
        assert (name, "uniform") in by and by[name, "global"].variant
    assert not by["lamp(l1(W))", "uniform"].variant
    (global_tasks,) = [tasks for allocation, tasks in allocation_variants(one_shot, BOTH)]
    assert all(t.task.allocation == "global" for t in global_tasks)
    # the variant row is the criterion under global allocation, as Torch-Pruning's global pruning runs it: each
    # layer's scores divided by their mean
    (alone,) = score_criteria(["lnorm(l1(W))"], global_tasks, baselines=False)
    assert by["l1", "global"].fitness == alone.fitness
    best = best_classic(rows)
    pairs = [r for r in rows if r.name in BASELINE_NAMES and r.comparable]
    assert best.fitness == max(r.fitness for r in pairs) and best.label == f"{best.name} ({best.allocation})"
    # an allocation the tasks already use adds nothing
    assert allocation_variants(one_shot, ("uniform",)) == []
    mixed = [one_shot[0], replace(one_shot[1], task=with_allocation(one_shot[1].task, "global"))]
    assert [a for a, _ in allocation_variants(mixed, BOTH)] == ["uniform", "global"]


def test_rescoring_pairs_every_criterion_and_allocation_by_seed(one_shot):
    rows = rescore(["lnorm(l1(W))"], one_shot, seeds=2, allocations=BOTH)
    assert {(r.kind, r.allocation) for r in rows if r.name == "lnorm(l1(W))"} == {("formula", "uniform")}
    assert {r.allocation for r in rows if r.name == "tp-l2"} == set(BOTH)
    variant = rescore(["lnorm(l1(W))"], one_shot, seeds=2, allocations=BOTH, variants_only=True)
    assert [(r.name, r.kind, r.allocation) for r in variant] == [("lnorm(l1(W))", "variant", "global")]
    # the same replicates in both calls: the formula under global allocation measures what the l1 baseline does
    (l1_global,) = [r for r in rows if r.name == "l1" and r.allocation == "global"]
    assert variant[0].fitness.values == l1_global.fitness.values
    classic = best_rescored(rows, "baseline")
    lines = verdicts(rows + variant, "lnorm(l1(W))")
    assert lines[0].startswith("winner") and classic.label in lines[0]
    assert lines[1].startswith("winner (global)") and len(lines) == 2


def test_the_macs_operand_is_what_removing_one_channel_of_the_layer_saves():
    """macs: per group, the conv/linear MACs one channel costs (its own filter's and the consumers' input slice)
    over the mean of the groups; constant within a layer, and read only by formulas that use it."""
    import torch
    from torch import nn

    from prunevo.pruning.calibration import Calibration
    from prunevo.pruning.criteria import as_criterion
    from prunevo.pruning.groups import find_groups

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.Conv2d(4, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 10)).eval()
    x, y = torch.randn(10, 1, 8, 8), torch.arange(10)
    calibration = Calibration(model, find_groups(model, x[:1]), x, y, 10)
    first = 1 * 9 * 64 + 6 * 9 * 64  # conv 0's filter over 8x8 positions, and conv 3's input slice
    second = 4 * 9 * 64 + 10  # conv 3's filter, and the linear layer's input column
    expected = {"0": first / ((first + second) / 2), "3": second / ((first + second) / 2)}
    scores = as_criterion("macs + 0 * l1(W)").group_scores(calibration, "mean", strict=False)
    for group, score in zip(calibration.groups, scores):
        assert torch.allclose(score, torch.full_like(score, expected[group.root]))
