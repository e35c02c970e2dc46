"""The package's architecture, checked: dependencies between rooms run one way, no import cycles.

Every ``import`` in ``seviz/`` is read with :mod:`ast` (module level, inside
functions and under ``TYPE_CHECKING`` alike, so no import can hide a cycle), and
two rules are asserted:

* a room (``seviz/<room>/`` or a top-level module) imports only the rooms below
  it in :data:`ALLOWED`;
* the module graph has no cycle.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "seviz"

# What each room may import (besides itself). cli and app are on top; record
# (``recording``) uses models, se, data and store; analysis uses store; pruning
# uses analysis, models, se (and data and store: it verifies on images).
FOUNDATION = {"errors", "_torch_utils", "_files"}
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "_torch_utils": {"errors"},
    "_files": {"errors"},
    "store": {"errors", "_files"},
    "se": FOUNDATION,
    "models": FOUNDATION | {"se"},
    "data": FOUNDATION | {"models"},
    "recording": FOUNDATION | {"models", "se", "data", "store"},
    "analysis": FOUNDATION | {"store"},
    "pruning": FOUNDATION | {"analysis", "models", "se", "data", "store"},
    "plots": FOUNDATION | {"analysis", "store"},
    "demo": FOUNDATION | {"models", "se", "data", "store", "recording", "analysis", "pruning", "plots"},
    "app": FOUNDATION | {"models", "se", "data", "store", "recording", "analysis", "pruning", "plots"},
    "cli": FOUNDATION
    | {"models", "se", "data", "store", "recording", "analysis", "pruning", "plots", "demo", "app"},
    "__main__": {"cli"},
    "__init__": set(),  # the lazy public API: names only, no imports
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every seviz module ``path`` imports, resolved to the deepest module that exists."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "seviz")
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "seviz":
            assert node.level == 0, f"{path}: relative import; write the absolute seviz path"
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if candidate in MODULES else node.module)
    return found - {"seviz"} if path.name != "__init__.py" or path.parent != PACKAGE else found


MODULES = {_module_name(p) for p in PACKAGE.rglob("*.py") if "_data" not in p.parts}
GRAPH = {_module_name(p): _imports(p) for p in PACKAGE.rglob("*.py") if "_data" not in p.parts}


def _room(module: str) -> str:
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def test_graph_is_read_from_every_module():
    assert len(GRAPH) > 40
    assert "seviz.store.writer" in GRAPH and "seviz.store.schema" in GRAPH["seviz.store.writer"]


def test_rooms_import_only_the_rooms_below_them():
    upward = sorted(
        f"{module} -> {target}"
        for module, targets in GRAPH.items()
        for target in targets
        if _room(target) != _room(module) and _room(target) not in ALLOWED[_room(module)]
    )
    assert not upward, "imports against the one-way rule:\n" + "\n".join(upward)


def test_every_room_has_a_rule():
    assert {_room(m) for m in MODULES} <= set(ALLOWED)


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_cycles():
    cycle = _cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_planted_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_a_planted_upward_import_is_caught():
    graph = dict(GRAPH, **{"seviz.store.reader": GRAPH["seviz.store.reader"] | {"seviz.analysis.compute"}})
    upward = [
        (m, t)
        for m, ts in graph.items()
        for t in ts
        if _room(t) != _room(m) and _room(t) not in ALLOWED[_room(m)]
    ]
    assert ("seviz.store.reader", "seviz.analysis.compute") in upward


@pytest.mark.parametrize(
    "name", sorted(m.name for m in pkgutil.walk_packages([str(PACKAGE)], "seviz.") if "_data" not in m.name)
)
def test_every_module_imports(name):
    if name in ("seviz.__main__", "seviz.app.main"):  # scripts: they run when imported
        return
    importlib.import_module(name)


def test_import_seviz_stays_light():
    """``import seviz`` and ``seviz --help`` load neither torch, streamlit nor matplotlib."""
    code = (
        "import sys, seviz, seviz.cli; seviz.cli.build_parser(); "
        "print(sorted(m for m in ('torch', 'streamlit', 'matplotlib', 'timm', 'h5py') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_public_errors_are_one_family():
    import seviz
    from seviz import errors

    family = [v for v in vars(errors).values() if isinstance(v, type) and issubclass(v, Exception)]
    assert len(family) >= 10
    assert all(issubclass(e, errors.SevizError) for e in family)
    assert seviz.StoreError is errors.StoreError
