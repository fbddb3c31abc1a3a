"""The operator and operand registries (primitives.registry): every registered entry has every back-end, and one
registration makes a new operator or operand usable everywhere (the README's "Adding an operator" block, run as
written).  Parametrized over the registry, as timm's tests are over its models: a new entry is tested as soon as
it is registered."""
from __future__ import annotations

import re
import string
from pathlib import Path

import pytest
import sympy
import torch

from prunevo.errors import FormulaError
from prunevo.evolve.individuals import build_pset
from prunevo.primitives import Formula, grammar
from prunevo.primitives.accumulators import Accumulator, streamed
from prunevo.primitives.export_latex import node_latex
from prunevo.primitives.export_python import signature
from prunevo.primitives.export_sympy import from_sympy, to_sympy
from prunevo.primitives.operands import LayerStats
from prunevo.primitives.registry import (NEEDS, TYPES, ByClass, Maps, MeanMaps, Scores, Streaming, Weights,
                                         register_operand, register_operator, registered, unregister)
from prunevo.primitives.tree import to_text
from prunevo.pruning.calibration import Calibration
from prunevo.pruning.criteria import as_criterion
from prunevo.pruning.groups import find_groups
from prunevo.zoo.models import build_model

README = Path(__file__).resolve().parent.parent / "README.md"
C, N, S, K = 5, 12, 6, 3
# one leaf per type, and a second, different one for binary overloads
LEAVES = {Weights: ("W", "W"), Maps: ("F", "G"), MeanMaps: ("nmean(F)", "nmean(G)"), ByClass: ("cmean(F)", "rvar(G)"),
          Scores: ("gamma", "beta")}


def _stats(seed: int = 0) -> LayerStats:
    gen = torch.Generator().manual_seed(seed)
    return LayerStats(W=torch.randn(C, 9, generator=gen), Wn=torch.randn(C, 4, generator=gen),
                      F=torch.randn(C, N, S, generator=gen).relu(), G=torch.randn(C, N, S, generator=gen),
                      gamma=torch.randn(C, generator=gen), beta=torch.randn(C, generator=gen),
                      labels=torch.arange(N) % K, num_classes=K, macs=torch.full((C,), 0.5, dtype=torch.float32))


def _call_text(op: grammar.Op) -> str:
    """A formula that applies ``op`` to leaves of its argument types, reduced to scores if it returns tensors."""
    args = [LEAVES[t][i] for i, t in enumerate(op.args)]
    text = f"{op.name}({', '.join(args)})"
    return text if op.ret is Scores else f"mean({text})"


def _exported(formula: Formula, stats: LayerStats) -> torch.Tensor:
    namespace: dict = {}
    exec(formula.python(), namespace)  # noqa: S102 - our own generated source
    values = {name: stats.operand(name) for name in grammar.OPERANDS if name != "macs"}
    return namespace["criterion"](**values, onehot=stats.labels_onehot, macs=stats.macs)


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.allclose(a.double(), b.double(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("op", grammar.OPS, ids=lambda op: op.key)
def test_every_overload_has_every_back_end(op):
    stats = _stats()
    formula = Formula.parse(_call_text(op))
    scores = formula.score(stats)
    assert scores.shape == (C,)
    assert _close(_exported(formula, stats), scores)  # Python export == evaluator
    assert node_latex(formula.tree)  # LaTeX
    expr = to_sympy(formula.tree)  # SymPy: algebra on scores, one symbol per reduction of tensors
    if all(t is Scores for t in op.args):
        back = from_sympy(expr)
        assert torch.allclose(Formula(back).score(stats), scores, rtol=1e-5, atol=1e-6), to_text(back)
    if Maps in op.args and op.ret is not Maps:  # streamed over batches == whole batch
        accumulator = Accumulator(op.name, K)
        onehot = stats.labels_onehot
        for start in range(0, N, 5):
            batch = [stats.F[:, start:start + 5] if t is Maps else None for t in op.args]
            accumulator.update(batch[0], onehot[start:start + 5])
        assert _close(accumulator.result(), op.fn(stats.F, onehot) if op.needs_labels else op.fn(stats.F))


@pytest.mark.parametrize("name", list(grammar.OPERATORS))
def test_every_operator_is_complete(name):
    operator = grammar.OPERATORS[name]
    assert operator.overloads, name
    arities = {len(op.args) for op in operator.overloads}
    fields = {f[1] for f in string.Formatter().parse(operator.python) if f[1]}
    assert fields == {str(i) for i in range(max(arities))}, operator.python
    if operator.latex is not None:
        assert {f[1] for f in string.Formatter().parse(operator.latex) if f[1]} == fields
    if any(all(t is Scores for t in op.args) for op in operator.overloads):  # it acts on scores: algebra or opaque
        assert operator.sympy is not None or (arities == {1} and operator.layer_norm), name
    reduces_maps = any(Maps in op.args and op.ret is not Maps for op in operator.overloads)
    assert (operator.streaming is not None) == reduces_maps == (name in streamed()), name
    assert not operator.sign_blind or all(op.ret is Scores for op in operator.overloads)


@pytest.mark.parametrize("name", list(grammar.OPERAND_SPECS))
def test_every_operand_is_complete(name):
    spec = grammar.OPERAND_SPECS[name]
    stats = _stats()
    assert spec.type in TYPES and spec.needs in NEEDS and spec.latex
    assert spec.statistic is not None or hasattr(stats, name)
    assert stats.operand(name).shape[0] == C
    assert re.search(rf"\b{name}(=None)?\b", signature())
    assert spec.missing is None or name in spec.missing  # a "not applicable" reason names it
    assert node_latex(Formula.parse(name).tree) == spec.latex if spec.type is Scores else True


def test_the_tables_derive_from_the_registries():
    assert list(grammar.OPERANDS) == list(grammar.OPERAND_SPECS)
    assert set(grammar.FUNCTION_NAMES) == set(grammar.OPERATORS)
    assert grammar.OPS_BY_KEY == {op.key: op for op in grammar.OPS}
    assert grammar.LAYER_NORMS == ["lnorm", "lminmax", "lzscore", "lamp"]
    assert signature() == "W, Wn, F, G, gamma, beta, onehot, macs=None"  # exported criteria keep their signature
    pset = build_pset()
    assert {p.name for ps in pset.primitives.values() for p in ps} == set(grammar.OPS_BY_KEY)


def _rms(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1).square().mean(1).sqrt()


def _rms_streaming() -> Streaming:
    def update(state, values, onehot, count):
        state["sum"] = state.get("sum", 0) + values.square().sum((1, 2), dtype=torch.float64)

    return Streaming(update, lambda state, count: (state["sum"] / count).sqrt())


def test_one_registration_adds_an_operator_everywhere():
    overloads = [((t,), Scores, _rms) for t in (Weights, Maps, MeanMaps, ByClass)]
    with registered(register_operator, "rms", overloads, python="_rows({0}).square().mean(1).sqrt()",
                    streaming=_rms_streaming(), sign_blind=True):
        stats = _stats(1)
        formula = Formula.parse("rms(abs(F)) * gamma + rms(Wn)")
        expected = _rms(stats.F) * stats.gamma + _rms(stats.Wn)
        assert _close(formula.score(stats), expected)
        assert _close(_exported(formula, stats), expected)
        assert formula.simplified.text == "rms(Wn) + gamma * rms(F)"  # sign-blind: the abs went
        assert r"\operatorname{rms}" in formula.latex()
        assert "rms__Maps" in {p.name for ps in build_pset().primitives.values() for p in ps}  # evolution draws it
        # streamed calibration on a network == whole batch
        model = build_model("small-vgg", 10, (1, 8, 8)).eval()
        x, y = torch.randn(17, 1, 8, 8), torch.arange(17) % 10
        groups = find_groups(model, x[:1])
        criterion = as_criterion("rms(F) / (rms(cmean(F)) + 0.1)")
        whole = criterion.group_scores(Calibration(model, groups, x, y, 10), "mean", strict=False)
        chunks = criterion.group_scores(Calibration(model, groups, x, y, 10, batch_size=4), "mean", strict=False)
        assert all(_close(a, b) for a, b in zip(chunks, whole))
    with pytest.raises(FormulaError, match="unknown function 'rms'"):  # gone with the block
        Formula.parse("rms(F)").score(_stats())


def test_one_registration_adds_an_operand():
    with registered(register_operand, "Wabs", Weights, latex=r"|W|", statistic=lambda s: s.W.abs()):
        stats = _stats(2)
        formula = Formula.parse("l1(Wabs) - max(Wabs)")
        expected = stats.W.abs().sum(1) - stats.W.abs().amax(1)
        assert _close(formula.score(stats), expected)
        assert "Wabs" in signature() and r"|W|" in formula.latex()
        namespace: dict = {}
        exec(formula.python(), namespace)  # noqa: S102
        assert _close(namespace["criterion"](stats.W, stats.Wn, stats.F, stats.G, stats.gamma, stats.beta,
                                             stats.W.abs(), stats.labels_onehot), expected)
    assert "Wabs" not in grammar.OPERANDS


def test_registration_is_checked():
    with pytest.raises(ValueError, match="already"):
        register_operator("l1", python="{0}")
    with pytest.raises(ValueError, match="already"):
        register_operand("gamma", Scores, latex="g")
    with pytest.raises(ValueError, match="streaming"):
        register_operator("peak", [((Maps,), Scores, lambda x: x.amax((1, 2)))], python="{0}.amax((1, 2))")
    assert "peak" not in grammar.OPERATORS and "peak" not in grammar.FUNCTION_NAMES  # refused whole
    with pytest.raises(ValueError, match="return type"):
        register_operator("odd", [((int,), Scores, abs)], python="{0}")
    with pytest.raises(ValueError, match="identifier"):
        register_operand("not a name", Scores, latex="x")
    with pytest.raises(ValueError, match="gathered by calibration"):
        register_operand("F2", Maps, latex="F_2", statistic=lambda s: s.F)
    with pytest.raises(ValueError, match="needs"):
        register_operand("H", Scores, latex="H", needs="sideways")


def test_opaque_score_operators_round_trip_through_sympy():
    with registered(register_operator, "lmax", [((Scores,), Scores, lambda x: x / x.abs().amax())],
                    python="({0} / {0}.abs().amax())", layer_norm=True):
        formula = Formula.parse("lmax(l1(W)) + lmax(l1(W))")
        assert isinstance(to_sympy(formula.tree), sympy.Mul)  # 2*lmax(l1(W)): one opaque function
        assert formula.simplified.text == "2.0 * lmax(l1(W))"
        assert "lmax" in grammar.LAYER_NORMS
    assert "lmax" not in grammar.LAYER_NORMS


def test_readme_adds_an_operator_as_written():
    block = re.search(r"## Adding an operator.*?```python\n(.*?)```", README.read_text(), re.S).group(1)
    try:
        exec(compile(block, "README.md", "exec"), {})  # noqa: S102 - the README's own example
        assert "rms" in grammar.OPERATORS
    finally:
        unregister("rms")


def _score_text(text: str, seed: int) -> list[float]:
    return Formula.parse(text).score(_stats(seed)).tolist()


def test_registrations_travel_to_worker_processes():
    from prunevo.fitness.backends import Backend

    overloads = [((t,), Scores, _rms) for t in (Weights, Maps, MeanMaps, ByClass)]
    with registered(register_operator, "rms", overloads, python="_rows({0}).square().mean(1).sqrt()",
                    streaming=_rms_streaming(), sign_blind=True), \
            registered(register_operand, "Wabs", Weights, latex=r"|W|", statistic=lambda s: s.W.abs()):
        calls = [("rms(F) * l1(Wabs)", seed) for seed in range(3)]
        backend = Backend("loky", 2)
        try:
            assert backend.map(_score_text, calls) == [_score_text(*call) for call in calls]
        finally:
            backend.close()
