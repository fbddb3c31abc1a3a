"""One entry point for the export formats of a formula."""
from __future__ import annotations

import json

from prunevo.errors import PrunevoError
from prunevo.primitives.formula import Formula

FORMATS = ("json", "sympy", "latex", "python", "text")


def export_formula(formula: Formula, fmt: str, extra: dict | None = None) -> str:
    """The formula as text in ``fmt``; ``extra`` (fitness, tasks...) is added to the JSON form."""
    if fmt == "json":
        return json.dumps({**formula.to_json(), **(extra or {})}, indent=2) + "\n"
    if fmt == "sympy":
        return str(formula.sympy) + "\n"
    if fmt == "latex":
        return formula.latex() + "\n"
    if fmt == "python":
        return formula.python()
    if fmt == "text":
        return formula.text + "\n"
    raise PrunevoError(f"unknown export format {fmt!r}; allowed: {', '.join(FORMATS)}")


def read_formula(source: str) -> Formula:
    """A formula from text, or from a file holding text or a JSON export."""
    from pathlib import Path

    looks_like_path = len(source) < 4096 and "(" not in source
    path = Path(source)
    if looks_like_path and path.is_file():
        content = path.read_text()
        return Formula.from_json(content) if content.lstrip().startswith("{") else Formula.parse(content.strip())
    if looks_like_path and path.suffix in (".json", ".txt"):
        raise PrunevoError(f"formula file {path} not found")
    return Formula.parse(source)
