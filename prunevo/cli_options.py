"""Command-line options read from the config dataclasses: one place for each default.

An option that sets a config field has the field's path as its destination (``finetune.epochs``) and
``None`` as its argparse default, so "not given" stays visible; its help text ends with the field's default,
read from the dataclass (``prunevo.configs``), and ``config_values`` gives what was typed, ready for
``configs.build``.  Options that belong to the command line alone (output folders, progress bars) keep
their default in argparse, which is then their one place.
"""
from __future__ import annotations

import argparse
from dataclasses import MISSING
from typing import Any

from prunevo.configs import field_default, is_path

EXIT_USAGE = 2  # bad input, as argparse's own usage errors

# argument groups, in the order users look for them in --help
GROUPS = {
    "run": "run and seeds",
    "data": "data and model",
    "target": "pruning target",
    "criterion": "criterion and its statistics",
    "strategy": "strategy and allocation",
    "reconstruct": "reconstruction (refit what removed channels fed, without training)",
    "evolution": "genetic programming",
    "racing": "racing (selection robust to calibration noise)",
    "ladder": "fidelity ladder",
    "finetune": "training and fine-tune",
    "latency": "latency",
    "execution": "execution",
    "output": "output",
}


def shown(value: Any) -> str:
    """A default as help text writes it (booleans as on/off, sequences space-separated)."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (tuple, list)):
        return " ".join(str(v) for v in value) if value else "none"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


class Parser(argparse.ArgumentParser):
    """argparse with its usage errors on one line, as every other error of the command line: ``prunevo: error:
    ...``, exit code 2 (its default prints the whole usage block first)."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"prunevo: error: {message} (see '{self.prog} --help')\n")


class ConfigOptions:
    """Adds options to ``parser`` in named argument groups (``GROUPS``), reading defaults from ``config``."""

    def __init__(self, parser: argparse.ArgumentParser, config: type):
        self.parser = parser
        self.config = config
        # every group now, in GROUPS' order (--help leaves out the empty ones)
        self._groups = {key: parser.add_argument_group(title) for key, title in GROUPS.items()}

    def group(self, key: str) -> argparse._ArgumentGroup:
        return self._groups[key]

    def field(self, key: str, *flags: str, path: str, help: str, default: str | None = None,
              **kwargs) -> argparse.Action:
        """An option that sets the config field at ``path``; ``default`` overrides the default's text (for
        fields whose None means "decided later", such as a device-dependent value)."""
        value = field_default(self.config, path)
        text = default if default is not None else (None if value in (MISSING, None) else shown(value))
        if text is not None:
            help = f"{help} (default: {text})"
        if "metavar" not in kwargs and "choices" not in kwargs and "action" not in kwargs:
            kwargs["metavar"] = flags[-1].lstrip("-").upper().replace("-", "_")  # not the path
        return self.group(key).add_argument(*flags, dest=path, default=None, help=help.replace("%", "%%"),
                                            **kwargs)

    def plain(self, key: str, *flags: str, help: str, **kwargs) -> argparse.Action:
        """An option of the command line alone (its default, if any, is given here once and added to the help)."""
        return plain_option(self.group(key), *flags, help=help, **kwargs)


def plain_option(parser, *flags: str, help: str, **kwargs) -> argparse.Action:
    """``parser.add_argument`` with the default (when there is one to say) appended to the help text."""
    default = kwargs.get("default")
    if default is not None and kwargs.get("action") not in ("store_true", "store_false"):
        help = f"{help} (default: {shown(default)})"
    return parser.add_argument(*flags, help=help.replace("%", "%%"), **kwargs)


def config_values(args: argparse.Namespace, config: type) -> dict[str, Any]:
    """The typed values of ``args`` whose destinations are paths in ``config`` (None: not given)."""
    return {dest: value for dest, value in vars(args).items() if value is not None and is_path(config, dest)}
