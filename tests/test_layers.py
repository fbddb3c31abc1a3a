"""The package's dependencies point down the pipeline, and no module imports itself back through others.

Every import counts, including the lazy ones inside functions (they hide cycles rather than remove
them); only ``if TYPE_CHECKING:`` blocks, which never run, are left out.
"""
from __future__ import annotations

import ast
from pathlib import Path

import prunevo

ROOT = Path(prunevo.__file__).parent
# lower layers never import higher ones
LAYERS = {"errors": 0, "utils": 0, "verdict": 0, "configs": 0, "progress": 0, "zoo": 1, "training": 2, "primitives": 2,
          "pruning": 3, "fitness": 4, "evolve": 5, "transfer": 6, "cli_options": 7, "cli_report": 7, "cli_transfer": 7,
          "cli": 7, "__init__": 8}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
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


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in ROOT.rglob("*.py")}
    return {name: {m for m in _imports(path) if m in modules and m != name} for name, path in modules.items()}


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS["__init__"] if len(parts) == 1 else LAYERS[parts[1]]


def test_dependencies_point_down():
    upward = [f"{a} -> {b}" for a, deps in _graph().items() for b in deps
              if _layer(b) > _layer(a) and not (b.count(".") == 1 and a.startswith(b))]
    assert not upward, upward


def test_no_import_cycles():
    graph = {a: {b for b in deps if b.count(".") > 1 or b == "prunevo.utils" or b == "prunevo.errors"}
             for a, deps in _graph().items()}  # package facades (__init__) re-export; they are not dependencies
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
