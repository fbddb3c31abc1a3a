"""Helpers over the config dataclasses, which hold every default once: read a (nested) field's default, build
a config from values given by path, and list a config's values by path.

A path names a field of a nested config with dots: ``finetune.epochs`` in ``TransferConfig``,
``execution.n_jobs`` in ``EvolutionConfig``.  The command line uses paths as option destinations, so that its
defaults, its help text and the configs it builds come from the dataclasses themselves.
"""
from __future__ import annotations

from dataclasses import MISSING, fields, is_dataclass, replace
from typing import Any, get_args, get_type_hints


def _nested(target: Any, name: str) -> Any:
    """The value of field ``name`` in a config instance, or its default in a config class: the default value,
    the default factory's value, or (a required nested config, such as ``TransferConfig.setup``) its class."""
    if not isinstance(target, type):
        return getattr(target, name)
    field = {f.name: f for f in fields(target)}.get(name)
    if field is None:
        raise KeyError(f"{target.__name__} has no field {name!r}")
    if field.default is not MISSING:
        return field.default
    if field.default_factory is not MISSING:
        return field.default_factory()
    hint = get_type_hints(target)[name]
    return next((t for t in (get_args(hint) or (hint,)) if is_dataclass(t)), MISSING)


def field_default(config: type, path: str) -> Any:
    """The default of the field at ``path`` (``MISSING`` for a required one).  Raises KeyError for a bad path."""
    value: Any = config
    for name in path.split("."):
        if value is None or value is MISSING:
            return value
        value = _nested(value, name)
    return value


def is_path(config: type, path: str) -> bool:
    """Whether ``path``'s first part is a field of ``config``."""
    return path.split(".", 1)[0] in {f.name for f in fields(config)}


def build(target: Any, values: dict[str, Any]) -> Any:
    """``target`` (a config class, or an instance to change) with ``values`` set at their paths; every other
    field keeps its default (or the instance's value).  Lists become tuples, as configs hold them.  Raises
    what the config's validation raises (PrunevoError) and TypeError for an unknown field."""
    top: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for path, value in values.items():
        head, _, rest = path.partition(".")
        if rest:
            nested.setdefault(head, {})[rest] = value
        else:
            top[head] = tuple(value) if isinstance(value, list) else value
    for head, sub in nested.items():
        start = top.get(head, _nested(target, head))
        top[head] = build(start, sub)
    return target(**top) if isinstance(target, type) else replace(target, **top)


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """Every leaf value of a config by path (nested configs expanded)."""
    out: dict[str, Any] = {}
    for f in fields(config):
        value = getattr(config, f.name)
        if is_dataclass(value) and not isinstance(value, type):
            out.update(flatten(value, f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = value
    return out
