"""Errors a user can cause. The CLI prints their message on one line and exits with code 2."""


class PrunevoError(Exception):
    """Bad input: the message says what was wrong and what is allowed."""


class FormulaError(PrunevoError):
    """A formula that does not parse or does not type-check."""


class DataError(PrunevoError):
    """A dataset that is missing, malformed or unknown."""


class ModelError(PrunevoError):
    """A model the pruner cannot handle, or an unknown network name."""


class RunError(PrunevoError):
    """A run directory or checkpoint that is missing, corrupt or incompatible."""


class NotApplicableError(PrunevoError):
    """A criterion that needs what the model lacks (BatchNorm, a gradient...): compare reports it as n/a.

    ``reason`` is the short form for a table cell ("does not apply to lenet5: needs BatchNorm ...")."""

    def __init__(self, criterion: str, reason: str):
        super().__init__(f"criterion {criterion!r} {reason}")
        self.reason = reason
