"""The package's dependencies point down the pipeline, and no module imports itself back through others.

Every import counts, including the lazy ones inside functions (they hide cycles rather than remove them).
``if TYPE_CHECKING:`` blocks never run, so they may point up a layer, but they count as cycles: a type that
can only be named by importing the module that calls you is a circle in the design.

``LAYERS`` is also the table of docs/ARCHITECTURE.md, which ``test_architecture_doc_matches`` keeps in step.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import prunevo

ROOT = Path(prunevo.__file__).parent
# lower layers never import higher ones
LAYERS = {"errors": 0, "utils": 0, "verdict": 0, "configs": 0, "progress": 0, "zoo": 1, "training": 2, "primitives": 2,
          "pruning": 3, "fitness": 4, "runs": 5, "evolve": 6, "transfer": 6, "cli_options": 7,
          "cli_transfer": 7, "cli": 7, "__init__": 8}
# packages on one layer of the pipeline are independent: neither imports the other (the CLI modules share layer 7
# as one front end, and layer 0's helpers may use each other)
INDEPENDENT_LAYERS = range(1, 7)


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, type_checking: bool = False) -> set[str]:
    tree = ast.parse(path.read_text())
    skip = set()
    for node in ast.walk(tree):
        if not type_checking and isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for n in ast.walk(node))
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("prunevo"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("prunevo"))
    return found


def _graph(type_checking: bool = False) -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in ROOT.rglob("*.py")}
    return {name: {m for m in _imports(path, type_checking) if m in modules and m != name}
            for name, path in modules.items()}


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS["__init__"] if len(parts) == 1 else LAYERS[parts[1]]


def test_dependencies_point_down():
    upward = [f"{a} -> {b}" for a, deps in _graph().items() for b in deps
              if _layer(b) > _layer(a) and not (b.count(".") == 1 and a.startswith(b))]
    assert not upward, upward


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_module_has_a_layer():
    assert not {_package(m) for m in _graph()} - set(LAYERS)


def test_packages_on_one_layer_are_independent():
    across = [f"{a} -> {b}" for a, deps in _graph().items() for b in deps
              if _package(a) != _package(b) and _layer(a) == _layer(b) and _layer(a) in INDEPENDENT_LAYERS]
    assert not across, across


def test_no_import_cycles():
    graph = {a: {b for b in deps if b.count(".") > 1 or b == "prunevo.utils" or b == "prunevo.errors"}
             for a, deps in _graph(type_checking=True).items()}  # package facades (__init__) re-export; they are not dependencies
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, cycles


def test_architecture_doc_matches():
    """docs/ARCHITECTURE.md's table lists each package of LAYERS once, on its layer."""
    text = (ROOT.parent / "docs" / "ARCHITECTURE.md").read_text()
    rows = re.findall(r"^\|\s*(\d+)\s*\|\s*`([\w]+)`\s*\|", text, flags=re.MULTILINE)
    documented = {package: int(layer) for layer, package in rows}
    assert len(rows) == len(documented), "a package is listed twice"
    assert documented == LAYERS
