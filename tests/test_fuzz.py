"""Fuzz: random grammar trees and adversarial formula texts go through parse -> score -> select -> prune on the
embedded tasks with no crash: each either scores, gets the worst fitness with a reason, or is refused with a
one-line error."""
from __future__ import annotations

import copy
import random

import pytest
import torch

from prunevo.errors import PrunevoError
from prunevo.evolve.individuals import build_pset, gen_half_and_half, to_node
from prunevo.fitness.evaluator import Evaluator
from prunevo.primitives import Formula
from prunevo.pruning.criteria import FormulaCriterion
from prunevo.pruning.physical import prune_model

pytestmark = pytest.mark.slow  # end to end throughout

ADVERSARIAL = [
    "", "   ", "W", "l1(W", "l1(W))", "((((", "l1(W) l2(W)", "l1(W) ** 2", "l1(W) ^ 2", "l1(W); import os",
    "__import__('os')", "eval('1')", "lambda: 0", "l1(W).real", "l1(W)[0]", "l1(W) if 1 else 0", "1/0", "0/0",
    "l1(W) / 0", "l1(W) / (mean(F) - mean(F))", "nan", "inf", "-inf", "NaN * l1(W)", "inf * l1(W)",
    "1e308 * l1(W) * 1e308", "1e400", "1e-400 * l1(W)", "-1e308 - l1(W) * 1e308", "0x10 + l1(W)", "1_000 * l1(W)",
    "sqrt(-l1(W))", "log1p(-l1(W))", "log1p(-1)", "lnorm(0 * l1(W))", "l1(W) - l1(W)", "0 * l1(W)", "std(W) * 0",
    "square(square(square(square(square(square(square(square(square(square(l1(W)))))))))))",
    "l1(Ｗ)", "l1(W)\u200b", "ℓ1(W)", "l1(W) ＋ l2(W)", "l1(W)\x00", "l1(W)\n+ l2(W)", "\t l1(W) \t", "😀",
    "l1(W) + gamma", "gamma / beta", "beta / gamma", "mean(G) / mean(F)", "var(cmean(F)) / mean(cvar(F))",
    "fpgm(W) / fpgm(W)", "min(W) / max(W)", "sparsity(F) / sparsity(G)", "W * F", "l1(F * G * W)", "l1(l1(W))",
    "mean(W) + W", "abs()", "abs(W, W)", "l1()", "unknown(W)", "l1(X)", "l1(w)", "L1(W)", "1", "-1", "0", "2 + 3",
]
ADVERSARIAL += ["abs(" * depth + "l1(W)" + ")" * depth for depth in (50, 200, 1000, 5000)]
ADVERSARIAL += [" + ".join(["l1(W)"] * n) for n in (100, 2000)]
ADVERSARIAL += ["l1(W) * " + "9" * n for n in (30, 400, 5000)]
ADVERSARIAL += ["(" * n + "l1(W)" + ")" * n for n in (100, 3000)]
ADVERSARIAL += ["l1(W)" + " " * 100_000, "x" * 1_000_000]
rng = random.Random(0)
while len(ADVERSARIAL) < 100:  # random printable and non-ASCII characters around valid pieces
    pieces = ["l1(W)", "mean(F)", "gamma", "(", ")", "+", "/", "*", "-", "0", "1e9", "é", "∑", "\\", "'", '"', ",", "."]
    ADVERSARIAL.append("".join(rng.choice(pieces) for _ in range(rng.randint(1, 12))))


def _check_one_line(exc: PrunevoError) -> None:
    message = str(exc)
    assert message and "\n" not in message and len(message) < 1000, message[:300]


@pytest.fixture(scope="module")
def pruning_setup(prepared_tasks):
    models = {}
    for t in prepared_tasks:
        model = t.build()
        model.load_state_dict(t.base_state)
        models[t.task.name] = model.eval()
    return Evaluator(prepared_tasks), models


def _through(formula: Formula, evaluator: Evaluator, models: dict, prepared_tasks) -> str:
    """parse is done; score and select (the mask plan), then prune every task's net and run it."""
    plan = evaluator.mask_plan(FormulaCriterion(formula))
    if plan.reason is not None:
        result = evaluator._result(plan, 0)
        assert result.fitness == 0.0 and result.reason
        return "worst"
    for t in prepared_tasks:
        name = t.task.name
        if name not in plan.keeps:
            assert plan.not_applicable[name]
            continue
        pruned = prune_model(copy.deepcopy(models[name]), t.groups, plan.keeps[name][0], t.example_input)
        with torch.no_grad():
            assert torch.isfinite(pruned(t.data.val.x[:8])).all()
    return "scored"


def test_random_trees_never_crash(pruning_setup, prepared_tasks):
    evaluator, models = pruning_setup
    pset = build_pset()
    random.seed(1)
    outcomes = {"worst": 0, "scored": 0}
    for _ in range(1000):
        tree = gen_half_and_half(pset, 1, 6)
        formula = Formula.parse(Formula(to_node(tree)).text)  # the text round-trips through the parser
        outcomes[_through(formula, evaluator, models, prepared_tasks)] += 1
    assert outcomes["scored"] > 300 and outcomes["worst"] > 10, outcomes


def test_adversarial_texts_are_scored_or_refused_in_one_line(pruning_setup, prepared_tasks):
    evaluator, models = pruning_setup
    assert len(ADVERSARIAL) == 100
    outcomes = {"refused": 0, "worst": 0, "scored": 0}
    for text in ADVERSARIAL:
        try:
            formula = Formula.parse(text)
        except PrunevoError as exc:
            _check_one_line(exc)
            outcomes["refused"] += 1
            continue
        outcomes[_through(formula, evaluator, models, prepared_tasks)] += 1
    assert outcomes["refused"] > 40 and outcomes["worst"] > 5 and outcomes["scored"] > 5, outcomes
