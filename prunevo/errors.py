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
    sets it (``--max-layer-ratio``, ``--allocation global``) through ``cli_message``."""

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
        text = super().__str__()
        return _PARAM.sub(lambda m: param(m.group(1), m.group(2)), text)


class FormulaError(PrunevoError):
    """A formula that does not parse or does not type-check."""


class DataError(PrunevoError):
    """A dataset that is missing, malformed or unknown."""


class ModelError(PrunevoError):
    """A model the pruner cannot handle, or an unknown network name."""


class RunError(PrunevoError):
    """A run directory or checkpoint that is missing, corrupt or incompatible."""


class TargetUnreachable(PrunevoError):
    """A pruning target (a MACs or latency share) that the allocation cannot reach; the message says which
    parameter to change.  Searches over targets catch this error only: any other error is a real failure."""


class NotApplicableError(PrunevoError):
    """A criterion that needs what the model lacks (BatchNorm, a gradient...): compare reports it as n/a.

    ``reason`` is the short form for a table cell ("does not apply to lenet5: needs BatchNorm ...")."""

    def __init__(self, criterion: str, reason: str):
        super().__init__(f"criterion {criterion!r} {reason}")
        self.reason = reason
