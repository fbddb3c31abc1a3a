"""The grammar's two registries: operands and operators, each entry carrying every back-end it needs.

A formula's value types, the records of one operand (``Operand``) and one operator (``Operator``, with its typed
overloads ``Op``), and the calls that add them.  Modelled on DEAP's ``PrimitiveSetTyped.addPrimitive`` (one call
adds a typed primitive) and timm's ``register_model`` (the registry is what the tests parametrize over, so
coverage grows by itself: ``tests/test_registry.py``).  ``grammar`` registers prunevo's own operands and
operators; everything else (the DEAP primitive set, the parser, the evaluator, the streamed accumulators, the
Python, SymPy and LaTeX exports, the criteria's "not applicable" reasons) reads the tables here.

The derived tables (``OPS``, ``OPS_BY_KEY``, ``OPERANDS``, ``FUNCTION_NAMES``, ``LAYER_NORMS``, ``MIN_HEIGHT``)
are updated in place by every registration, so a reference taken before one sees it.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator

import torch

if TYPE_CHECKING:
    import sympy

EPS = 1e-6  # protects div/lnorm; "≈ 0" threshold of sparsity


class Weights:
    """[C, D]: one filter (or one slice of the next layer's weights) per channel."""


class Maps:
    """[C, N, S]: one feature map (or its gradient) per channel and calibration sample."""


class MeanMaps:
    """[C, S]: a feature map averaged over the calibration samples, one mean map per channel."""


class ByClass:
    """[C, K]: one class-conditional statistic per channel and class."""


class Scores:
    """[C]: one value per channel. Every formula returns this type."""


TYPES = (Weights, Maps, MeanMaps, ByClass, Scores)
TYPE_WORDS = {Weights: "weights", Maps: "feature maps", MeanMaps: "mean feature maps", ByClass: "class statistics",
              Scores: "scores"}
NEEDS = ("weights", "forward", "backward")  # what a calibration pass must run to yield an operand, cheapest first


@dataclass(frozen=True)
class Op:
    """One typed overload of an operator: ``name(args...) -> ret``, computed by ``fn`` on torch tensors.

    Attributes:
        name: the operator's name.
        args: the argument types (``TYPES``).
        ret: the return type.
        fn: the torch function; with ``needs_labels`` it also takes the labels one-hot ``[N, K]`` last.
        needs_labels: it reads the samples' classes (class statistics).
    """

    name: str
    args: tuple[type, ...]
    ret: type
    fn: Callable[..., torch.Tensor]
    needs_labels: bool = False

    @property
    def key(self) -> str:
        """Unique primitive name inside the DEAP primitive set (names are overloaded across types)."""
        return self.name + "__" + "_".join(t.__name__ for t in self.args)


@dataclass(frozen=True)
class Streaming:
    """How a reduction of feature maps accumulates over calibration batches, in memory that does not grow with
    the images (``accumulators.Accumulator`` runs it).

    Attributes:
        update: ``update(state, values, onehot, count)`` adds one batch: ``values`` ``[C, n, S]`` (possibly a
            strided view), ``onehot`` ``[n, K]``, ``count`` the positions (samples if ``per_sample``) seen before
            it; it writes its sums (float64, so the result equals the whole-batch one within rounding) into the
            ``state`` dict.
        finish: ``finish(state, count) -> tensor`` (``[C]``, ``[C, K]`` or ``[C, S]``) from the state and the
            final count.
        per_sample: ``count`` counts samples, not positions.
    """

    update: Callable[[dict, torch.Tensor, torch.Tensor, int], None]
    finish: Callable[[dict, int], torch.Tensor]
    per_sample: bool = False


@dataclass(frozen=True)
class Operand:
    """One operand: a statistic of a prunable layer.

    Attributes:
        name: its text in formulas, its ``operands.LayerStats`` field (or ``statistic``) and its argument in
            exported Python.
        type: one of ``TYPES``.
        latex: its LaTeX.
        needs: what a calibration pass must run to yield it (``NEEDS``: ``weights``, ``forward``, ``backward``).
        missing: how a "not applicable" reason names it when a layer lacks it (None: every layer has it).
        optional: exported Python takes it as a keyword argument with default None (``macs``).
        statistic: ``statistic(stats) -> tensor`` computes it from a layer's other statistics
            (``operands.LayerStats``); None: calibration gathers it (``pruning.statistics``).
    """

    name: str
    type: type
    latex: str
    needs: str = "weights"
    missing: str | None = None
    optional: bool = False
    statistic: Callable[..., torch.Tensor] | None = None


@dataclass(frozen=True)
class Operator:
    """One operator name with every back-end it needs; its typed forms are ``overloads``.

    Attributes:
        name: its text in formulas.
        python: its exported Python, a ``str.format`` template over the arguments' sources (``"{0}.abs()"``);
            it may use ``torch``, ``EPS`` and the helpers of ``export_python`` (``_rows``, ``_div``, ``_lamp``,
            ``_class_moments``).
        sympy: its algebra on scores, a function of SymPy expressions; None: an opaque SymPy function of its name
            (on scores), or nothing (an operator on tensors only: a reduction and everything below it is one
            SymPy symbol).
        latex: its LaTeX inside a reduction, a ``str.format`` template over the arguments' LaTeX; None:
            ``\\operatorname{name}(...)``.
        streaming: how it accumulates over calibration batches; every overload that reduces feature maps
            (``Maps`` in, another type out) needs it.
        sign_blind: a reduction of absolute values: ``name(abs(x)) == name(x)``, which canonical forms use.
        layer_norm: computed over a whole layer's scores, not channel by channel (SymPy keeps it opaque).
        needs_labels: its functions take the labels one-hot after their arguments.
    """

    name: str
    python: str
    sympy: Callable[..., sympy.Expr] | None = None
    latex: str | None = None
    streaming: Streaming | None = None
    sign_blind: bool = False
    layer_norm: bool = False
    needs_labels: bool = False

    @property
    def overloads(self) -> list[Op]:
        """Its typed forms, in the order they were added."""
        return [op for op in OPS if op.name == self.name]


OPERAND_SPECS: dict[str, Operand] = {}
OPERATORS: dict[str, Operator] = {}
# derived, in registration order (the DEAP primitive set and random generation follow it, so seeds reproduce runs)
OPERANDS: dict[str, type] = {}
OPS: list[Op] = []
OPS_BY_KEY: dict[str, Op] = {}
FUNCTION_NAMES: list[str] = []
LAYER_NORMS: list[str] = []
MIN_HEIGHT: dict[type, int] = {}


def _check_new(name: str) -> None:
    if not name.isidentifier() or name.startswith("_"):
        raise ValueError(f"{name!r} is not a name formulas can use (a Python identifier not starting with '_')")
    if name in OPERAND_SPECS or name in OPERATORS:
        raise ValueError(f"{name!r} is already an operand or an operator")


def register_operand(name: str, type_: type, *, latex: str, needs: str = "weights", missing: str | None = None,
                     optional: bool = False, statistic: Callable[..., torch.Tensor] | None = None
                     ) -> Operand:
    """Add an operand to the grammar.

    Args:
        name: its text in formulas; a field of ``operands.LayerStats`` unless ``statistic`` computes it.
        type_: one of ``TYPES`` (``Weights`` ``[C, D]``, ``Scores`` ``[C]``...).
        latex: its LaTeX.
        needs: ``weights``, ``forward`` or ``backward``: what a calibration pass must run to yield it (for a
            ``statistic``, what the statistics it reads need).
        missing: how a "not applicable" reason names it when a layer lacks it (None: never lacking).
        optional: exported Python takes it as ``name=None`` after the others.
        statistic: ``statistic(stats) -> tensor`` of its type, from a layer's ``LayerStats`` (its weights,
            ``gamma``...); feature-map operands cannot be computed this way (streamed calibration never holds
            whole feature maps), calibration must gather them.

    Returns:
        The ``Operand``.

    Raises:
        ValueError: a name in use or not an identifier, an unknown type or ``needs``, or a computed feature map.
    """
    _check_new(name)
    if type_ not in TYPES or needs not in NEEDS:
        raise ValueError(f"type must be one of {', '.join(t.__name__ for t in TYPES)} and needs one of "
                         f"{', '.join(NEEDS)}")
    if statistic is not None and type_ is Maps:
        raise ValueError(f"{name}: feature-map operands are gathered by calibration, not computed from statistics")
    OPERAND_SPECS[name] = Operand(name, type_, latex, needs, missing, optional, statistic)
    _derive()
    return OPERAND_SPECS[name]


Overload = tuple[tuple[type, ...], type, Callable[..., torch.Tensor]]


def register_operator(name: str, overloads: list[Overload] | tuple = (), *, python: str,
                      sympy: Callable[..., sympy.Expr] | None = None, latex: str | None = None,
                      streaming: Streaming | None = None, sign_blind: bool = False, layer_norm: bool = False,
                      needs_labels: bool = False) -> Operator:
    """Add an operator to the grammar with every back-end (after DEAP's ``PrimitiveSetTyped.addPrimitive``).

    Args:
        name: its text in formulas.
        overloads: ``(argument types, return type, torch function)`` for each typed form, appended to ``OPS``
            (more can follow with ``add_overload``).  Types are ``Weights`` ``[C, D]``, ``Maps`` ``[C, N, S]``,
            ``MeanMaps`` ``[C, S]``, ``ByClass`` ``[C, K]`` and ``Scores`` ``[C]``.
        python: exported Python, a template over the arguments' sources (``"{0}.abs()"``).
        sympy: score-level algebra on SymPy expressions (None: opaque).
        latex: LaTeX template inside a reduction (None: ``\\operatorname{name}``).
        streaming: how it accumulates over batches; required when an overload reduces feature maps.
        sign_blind: ``name(abs(x)) == name(x)``.
        layer_norm: computed over a layer's scores as a whole.
        needs_labels: its functions take the labels one-hot ``[N, K]`` after their arguments.

    Returns:
        The ``Operator``.

    Raises:
        ValueError: a name in use or not an identifier, an unknown type, or a reduction of feature maps without
            ``streaming``.
    """
    _check_new(name)
    OPERATORS[name] = Operator(name, python, sympy, latex, streaming, sign_blind, layer_norm, needs_labels)
    try:
        for args, ret, fn in overloads:
            add_overload(name, args, ret, fn)
    except ValueError:
        unregister(name)
        raise
    _derive()
    return OPERATORS[name]


def add_overload(name: str, args: tuple[type, ...], ret: type, fn: Callable[..., torch.Tensor]) -> Op:
    """Add one typed form to the registered operator ``name``.

    Args:
        name: a registered operator.
        args: its argument types (``TYPES``).
        ret: its return type.
        fn: the torch function of tensors of those types.

    Returns:
        The ``Op``.

    Raises:
        ValueError: an unknown operator or type, an overload already there, or a reduction of feature maps by an
            operator without streaming.
    """
    operator = OPERATORS.get(name)
    if operator is None:
        raise ValueError(f"{name!r} is not a registered operator")
    op = Op(name, tuple(args), ret, fn, operator.needs_labels)
    if not op.args or any(t not in TYPES for t in (*op.args, op.ret)):
        raise ValueError(f"{op.key}: give one or more argument types and a return type among "
                         f"{', '.join(t.__name__ for t in TYPES)}")
    if op.key in OPS_BY_KEY:
        raise ValueError(f"{name} already has an overload for {', '.join(t.__name__ for t in op.args)}")
    if Maps in op.args and op.ret is not Maps and operator.streaming is None:
        raise ValueError(f"{op.key} reduces feature maps: register {name} with streaming=Streaming(...)")
    OPS.append(op)
    _derive()
    return op


def unregister(name: str) -> None:
    """Remove an operator (with its overloads) or an operand; for tests and plugins that register temporarily."""
    OPERATORS.pop(name, None)
    OPERAND_SPECS.pop(name, None)
    OPS[:] = [op for op in OPS if op.name != name]
    _derive()


@contextmanager
def registered(register: Callable[..., object], name: str, *args, **kwargs) -> Iterator[object]:
    """``register(name, *args, **kwargs)`` (``register_operator`` or ``register_operand``) for a ``with`` block.

    Raises:
        ValueError: as ``register`` does.
    """
    entry = register(name, *args, **kwargs)
    try:
        yield entry
    finally:
        unregister(name)


@dataclass(frozen=True)
class Extensions:
    """The operands and operators registered beyond prunevo's own (``grammar``), in registration order: what a
    worker process, which imported only prunevo, must register to read the same formulas (``install``).

    Attributes:
        operands: their ``Operand`` records.
        operators: each ``Operator`` record with its overloads.
    """

    operands: tuple[Operand, ...] = ()
    operators: tuple[tuple[Operator, tuple[Op, ...]], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.operands or self.operators)


_BUILTIN: set[str] = set()


def seal_builtins() -> None:
    """Mark everything registered so far as built in (``grammar`` calls it once, after registering its own)."""
    _BUILTIN.update(OPERAND_SPECS, OPERATORS)


def extensions() -> Extensions:
    """The registrations beyond the built-in ones, to send to worker processes (picklable with cloudpickle,
    which joblib's loky, Dask and Ray use, when their functions are)."""
    return Extensions(tuple(spec for name, spec in OPERAND_SPECS.items() if name not in _BUILTIN),
                      tuple((operator, tuple(operator.overloads)) for name, operator in OPERATORS.items()
                            if name not in _BUILTIN))


def install(extra: Extensions) -> None:
    """Register whatever of ``extra`` this process lacks (a worker process, before it runs a job)."""
    for spec in extra.operands:
        if spec.name not in OPERAND_SPECS:
            OPERAND_SPECS[spec.name] = spec
    for operator, overloads in extra.operators:
        if operator.name not in OPERATORS:
            OPERATORS[operator.name] = operator
            OPS.extend(overloads)
    _derive()


def _derive() -> None:
    """Update the derived tables in place from the registries."""
    OPERANDS.clear()
    OPERANDS.update({name: spec.type for name, spec in OPERAND_SPECS.items()})
    OPS_BY_KEY.clear()
    OPS_BY_KEY.update({op.key: op for op in OPS})
    FUNCTION_NAMES[:] = list(dict.fromkeys(op.name for op in OPS))
    LAYER_NORMS[:] = [name for name in FUNCTION_NAMES if OPERATORS[name].layer_norm]
    MIN_HEIGHT.clear()
    MIN_HEIGHT.update(_min_heights())


def _min_heights() -> dict[type, int]:
    """Smallest subtree height that yields each type; lets generation always close a branch."""
    heights = {t: 0 for t in set(OPERANDS.values()) | {Scores}}
    changed = True
    while changed:
        changed = False
        for op in OPS:
            if all(a in heights for a in op.args):
                h = 1 + max(heights[a] for a in op.args)
                if h < heights.get(op.ret, 10**9):
                    heights[op.ret] = h
                    changed = True
    return heights


def resolve(name: str, arg_types: tuple[type, ...]) -> Op | None:
    """The overload of ``name`` that accepts ``arg_types``, or None."""
    return OPS_BY_KEY.get(name + "__" + "_".join(t.__name__ for t in arg_types))


def signatures(name: str) -> list[str]:
    """Human-readable overloads of ``name``, for error messages."""
    return [
        f"{op.name}({', '.join(TYPE_WORDS[t] for t in op.args)}) -> {TYPE_WORDS[op.ret]}"
        for op in OPS
        if op.name == name
    ]


def terminals_of(type_: type) -> list[str]:
    """The operands of ``type_``, and ``<const>`` for scores (ephemeral constants)."""
    names = [n for n, t in OPERANDS.items() if t is type_]
    return names + (["<const>"] if type_ is Scores else [])


def ops_returning(type_: type) -> list[Op]:
    """Every overload that returns ``type_``, in registration order."""
    return [op for op in OPS if op.ret is type_]
