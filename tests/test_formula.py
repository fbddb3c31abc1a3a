"""Formula: parsing, printing, SymPy round trips, exports, random trees on real statistics."""
from __future__ import annotations

import json
import random

import pytest
import sympy
import torch

from prunevo.errors import FormulaError
from prunevo.evolve.individuals import build_pset, gen_half_and_half, to_deap, to_node
from prunevo.primitives import Formula, classic_formulas
from prunevo.primitives import grammar
from prunevo.primitives.export import export_formula, read_formula
from prunevo.primitives.export_sympy import from_sympy, to_sympy
from prunevo.primitives.tree import Node, to_text


def random_formulas(n: int, seed: int = 0, max_height: int = 6) -> list[Formula]:
    pset = build_pset()
    random.seed(seed)
    return [Formula(to_node(gen_half_and_half(pset, 1, max_height))) for _ in range(n)]


@pytest.mark.slow
def test_thousand_random_trees_are_valid_and_finite_on_real_statistics(resnet_stats):
    stats = [s for members in resnet_stats.stats for s in members]
    formulas = random_formulas(1000)
    for i, formula in enumerate(formulas):
        # valid: type-checks and re-parses to the same tree
        assert Formula.parse(formula.text).tree == formula.tree
        layer = stats[i % len(stats)]
        scores = formula.score(layer)
        assert scores.shape == (layer.channels,), formula.text
        assert torch.isfinite(scores).all(), formula.text


def test_generation_covers_every_type_even_without_terminals():
    # ByClass has no terminal: generation must still close such branches
    pset = build_pset()
    random.seed(1)
    names = set()
    for _ in range(300):
        tree = to_node(gen_half_and_half(pset, 2, 5))
        names.update(n.name for n in tree.walk())
    assert {"cmean", "cvar", "rmean", "rvar", "smean", "nmean", "W", "Wn", "F", "G", "gamma", "beta", "const"} <= names


def test_deap_round_trip_is_exact():
    pset = build_pset()
    for formula in random_formulas(200, seed=3):
        assert to_node(to_deap(formula.tree, pset)) == formula.tree


@pytest.mark.parametrize("text", [
    "l1(W) / (std(F) + 0.05)", "-(l1(W) - l2(W)) * 2.0", "l1(W) - (l2(W) - gamma)", "--gamma",
    "abs(mean(F * G))", "var(cmean(smean(F))) / (mean(cvar(F)) + 0.05)", "lnorm(sqrt(beta)) + 1e-05",
])
def test_text_round_trip(text):
    formula = Formula.parse(text)
    assert Formula.parse(formula.text).tree == formula.tree
    assert Formula.parse(formula.text).text == formula.text


_A, _B, _C = Node("gamma"), Node("beta"), Node.const(2.0)


@pytest.mark.parametrize("tree", [Node("sub", (_A, Node("sub", (_B, _C)))), Node("div", (_A, Node("mul", (_B, _C)))),
                                  Node("add", (Node("add", (_A, _B)), _C)), Node("neg", (Node("neg", (_A,)),))],
                         ids=["sub-sub", "div-mul", "add-add", "neg-neg"])
def test_printer_keeps_right_nested_trees(tree):
    assert Formula.parse(to_text(tree)).tree == tree


def test_infix_and_call_forms_are_the_same_tree():
    assert Formula.parse("mean(mul(F, G))") == Formula.parse("mean(F * G)")
    assert Formula.parse("div(l1(W), add(std(F), 0.05))") == Formula.parse("l1(W) / (std(F) + 0.05)")


@pytest.mark.slow
def test_sympy_round_trip_preserves_values(resnet_stats):
    layer = resnet_stats.stats[0][0]
    for formula in random_formulas(150, seed=5, max_height=5):
        simplified = formula.simplified
        assert simplified.complexity <= formula.complexity
        # the simplified tree has the same SymPy form
        assert sympy.simplify(to_sympy(simplified.tree) - formula.sympy) == 0 or simplified is formula
        a, b = formula.score(layer).double(), simplified.score(layer).double()
        finite = torch.isfinite(a) & torch.isfinite(b) & (a.abs() < 1e6)
        # protected division may differ where a denominator is ~0; everywhere else values agree
        assert torch.allclose(a[finite], b[finite], rtol=1e-3, atol=1e-4) or "/" in formula.text, formula.text


def test_canonical_key_identifies_algebraic_duplicates():
    assert Formula.parse("l1(W) + l1(W)").canonical_key == Formula.parse("2.0 * l1(W)").canonical_key
    assert Formula.parse("gamma * beta").canonical_key == Formula.parse("beta * gamma").canonical_key
    assert Formula.parse("l1(W)").canonical_key != Formula.parse("l2(W)").canonical_key


def test_from_sympy_rejects_what_the_grammar_cannot_express():
    with pytest.raises(FormulaError):
        from_sympy(sympy.exp(sympy.Symbol("gamma")))


@pytest.mark.parametrize("bad, fragment", [
    ("__import__('os').system('x')", "unexpected character"),
    ("__import__(os)", "unknown function '__import__'"),
    ("os.system", "unexpected character '.'"),
    ("l1(W", "expected ')'"),
    ("foo(W)", "unknown function 'foo'"),
    ("l1(X)", "unknown name 'X'"),
    ("mul(W, F)", "does not take (weights, feature maps)"),
    ("W", "not one score per channel"),
    ("l1(W) +", "unexpected end of formula"),
    ("l1", "it is a function"),
    ("", "empty formula"),
    ("l1(W) l2(W)", "after a complete formula"),
    ("lambda", "unknown name 'lambda'"), ("lambda: 1", "unexpected character ':'"),
    ("(" * 2000 + "gamma" + ")" * 2000, "nested too deeply"), ("gamma+" * 3000 + "beta", "at most 10000"),
])
def test_parser_rejections_name_the_problem(bad, fragment):
    with pytest.raises(FormulaError) as info:
        Formula.parse(bad)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message


def test_parser_never_evaluates(monkeypatch):
    import builtins

    def forbidden(*_a, **_k):
        raise AssertionError("eval called")

    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(sympy, "sympify", forbidden)
    Formula.parse("l1(W) / (std(F) + 0.05)").canonical_key


@pytest.mark.slow
def test_exports(tmp_path, resnet_stats):
    formula = Formula.parse("l1(W) / (std(F) + 0.05) + abs(gamma)", name="demo")
    data = json.loads(export_formula(formula, "json", {"fitness": 0.9}))
    assert data["text"] == formula.text and data["fitness"] == 0.9 and data["complexity"] == formula.complexity
    assert Formula.from_json(data) == formula
    assert "\\operatorname{l1}" in export_formula(formula, "latex")
    assert "l1(W)" in export_formula(formula, "sympy")
    # the Python export is standalone and computes the same scores (class statistics, mean maps and
    # class arithmetic with scores included; and on a thousand random trees)
    layer = resnet_stats.stats[0][0]
    for each in [formula, *classic_formulas().values(), *random_formulas(1000, seed=5)]:
        namespace: dict = {}
        exec(compile(export_formula(each, "python"), "<export>", "exec"), namespace)  # our own generated code
        expected = each.score(layer)
        got = namespace["criterion"](layer.W, layer.Wn, layer.F, layer.G, layer.gamma, layer.beta, layer.labels_onehot,
                                     macs=layer.macs)
        assert torch.allclose(expected, got, equal_nan=True), each.text
    # files: JSON export and plain text
    (tmp_path / "f.json").write_text(export_formula(formula, "json"))
    (tmp_path / "f.txt").write_text("l2(W)\n")
    assert read_formula(str(tmp_path / "f.json")) == formula
    assert read_formula(str(tmp_path / "f.txt")) == Formula.parse("l2(W)")
    with pytest.raises(Exception, match="not found"):
        read_formula(str(tmp_path / "missing.json"))
    with pytest.raises(FormulaError, match="malformed"):
        Formula.from_json("{not json")


def test_grammar_has_every_operand_and_operator_of_the_design():
    assert set(grammar.OPERANDS) == {"W", "Wn", "F", "G", "gamma", "beta", "macs"}
    design = {"abs", "square", "mul", "smean", "nmean", "cmean", "cvar", "rmean", "rvar", "mean", "std", "var",
              "l1", "l2", "max", "min", "sparsity", "fpgm", "add", "sub", "div", "neg", "sqrt", "log1p", "lnorm",
              "lminmax", "lzscore", "lamp", "loo"}
    assert not design - set(grammar.FUNCTION_NAMES), design - set(grammar.FUNCTION_NAMES)
    assert len(classic_formulas()) == 12


@pytest.mark.parametrize("name", [*grammar.LAYER_NORMS, "macs"])
def test_every_layer_level_primitive_has_every_back_end(resnet_stats, name):
    """The layer normalizations and the macs operand: scored, exported to standalone torch (equal values),
    to SymPy and back (the same tree), and to LaTeX."""
    text = f"{name}(l1(W) - 0.5 * gamma)" if name != "macs" else "l1(W) / macs + macs"
    formula = Formula.parse(text)
    stats = resnet_stats.stats[1][0]
    namespace = {}
    exec(formula.python(), namespace)  # noqa: S102 - our own generated source
    exported = namespace["criterion"](stats.W, stats.Wn, stats.F, stats.G, stats.gamma, stats.beta,
                                      stats.labels_onehot, macs=stats.macs)
    assert torch.allclose(exported.double(), formula.score(stats).double())
    assert Formula(from_sympy(to_sympy(formula.tree))).score(stats).allclose(formula.score(stats))
    assert formula.latex()


@pytest.mark.parametrize("name", ["add", "sub", "mul", "div"])
@pytest.mark.parametrize("args", [(grammar.ByClass, grammar.ByClass), (grammar.ByClass, grammar.Scores),
                                  (grammar.Scores, grammar.ByClass)],
                         ids=["class-class", "class-scores", "scores-class"])
def test_class_statistics_combine_with_each_other_and_with_scores(name, args):
    # scores are one per channel, the same for every class
    assert grammar.resolve(name, args).ret is grammar.ByClass
