"""Errors a user can cause. The CLI prints their message on one line and exits with code 2."""
from __future__ import annotations

import re

_PARAM = re.compile(r"\{param:([a-z_.]+)(?:=([^}]*))?\}")


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (libraries raise multi-line ones), for one-line errors."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no message"


def _literal(value: str) -> str:
    """A parameter value as Python code would write it: numbers bare, words quoted."""
    try:
        float(value)
        return value
    except ValueError:
        return repr(value)


class PrunevoError(Exception):
    """Bad input: the message says what was wrong and what is allowed.

    A message names a parameter as ``{param:name}`` or ``{param:name=value}``: the library's text reads
    ``name`` / ``name=value`` (``max_layer_ratio``, ``allocation='global'``), and the CLI shows the flag that
    sets it (``--max-layer-ratio``, ``--allocation global``) through ``cli_message``.

    Example:
        >>> from prunevo import PrunevoError
        >>> error = PrunevoError("{param:max_layer_ratio} must be < 1, got 1.5")
        >>> str(error), error.cli_message({"max_layer_ratio": "--max-layer-ratio"})
        ('max_layer_ratio must be < 1, got 1.5', '--max-layer-ratio must be < 1, got 1.5')
    """

    def __str__(self) -> str:
        return self.render(lambda name, value: name if value is None else f"{name}={_literal(value)}")

    def cli_message(self, flags: dict[str, str]) -> str:
        """The message with each parameter as the flag in ``flags`` (parameter name -> option string)."""
        def flag(name: str, value: str | None) -> str:
            if name not in flags:
                return name if value is None else f"{name}={_literal(value)}"
            return flags[name] if value is None else f"{flags[name]} {value}"
        return self.render(flag)

    def render(self, param) -> str:
        """The message with each ``{param:...}`` replaced by ``param(name, value or None)``."""
        text = super().__str__()
        return _PARAM.sub(lambda m: param(m.group(1), m.group(2)), text)


class FormulaError(PrunevoError):
    """A formula that does not parse or does not type-check.

    Example:
        >>> from prunevo import Formula, FormulaError
        >>> try:
        ...     Formula.parse("l1(F) + W")
        ... except FormulaError as error:
        ...     print(str(error).split(";")[0])
        l1(F) + W: add does not take (scores, weights)
    """


class DataError(PrunevoError):
    """A dataset that is missing, malformed or unknown.

    Example:
        >>> from prunevo import DataError
        >>> from prunevo.zoo.images import load_image_data
        >>> try:
        ...     load_image_data("nodata")
        ... except DataError as error:
        ...     print(str(error).split(";")[0])
        unknown dataset 'nodata'
    """


class ModelError(PrunevoError):
    """A model the pruner cannot handle, a checkpoint that does not fit it, or an unknown network name.

    Example:
        >>> from prunevo import ModelError
        >>> from prunevo.zoo.models import build_model
        >>> try:
        ...     build_model("no-such-net", 10, (3, 32, 32))
        ... except ModelError as error:
        ...     print(str(error).split(";")[0])
        unknown model 'no-such-net'
    """


class RunError(PrunevoError):
    """A run directory or checkpoint that is missing, corrupt, in use or incompatible.

    Example:
        >>> from prunevo import RunError, load_run
        >>> try:
        ...     load_run("/no/such/run")
        ... except RunError as error:
        ...     print(error)
        /no/such/run/config.json not found: not a prunevo run directory (no config)
    """


class TargetUnreachable(PrunevoError):
    """A pruning target (a MACs or latency share) that the allocation cannot reach; the message says which
    parameter to change.  Searches over targets catch this error only: any other error is a real failure.

    Example:
        >>> from prunevo import FitConfig, Setup, TargetUnreachable, TransferConfig, apply_formula
        >>> config = TransferConfig(setup=Setup(model="small-vgg", dataset="digits"), target_macs=0.01,
        ...                         finetune=FitConfig(epochs=0), latency=None)
        >>> try:
        ...     apply_formula("l1(W)", config)
        ... except TargetUnreachable as error:
        ...     print(str(error).split(";")[0])
        cannot reach 1% of the MACs with uniform allocation (closest: 1.3%)
    """


class NotApplicableError(PrunevoError):
    """A criterion that needs what the model lacks (BatchNorm, a gradient...): compare reports it as n/a.

    Args:
        criterion: the criterion's name.
        reason: the short form for a table cell ("does not apply to lenet5: needs BatchNorm ..."), kept as
            ``reason``.

    Example:
        >>> from prunevo import FitConfig, NotApplicableError, Setup, TransferConfig, apply_formula
        >>> config = TransferConfig(setup=Setup(model="lenet5", dataset="digits"), target_macs=0.5,
        ...                         finetune=FitConfig(epochs=0), latency=None)
        >>> try:
        ...     apply_formula("gamma", config)
        ... except NotApplicableError as error:
        ...     print(error.reason[:50])
        does not apply to lenet5: needs BatchNorm (gamma),
    """

    def __init__(self, criterion: str, reason: str):
        super().__init__(f"criterion {criterion!r} {reason}")
        self.reason = reason
