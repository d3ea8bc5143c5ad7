"""The package layout docs/design.md describes holds: no import cycle (counting imports inside
functions too), and imports only point down the layers (stages <- audio, wire <- service <- commands,
evaluation, training)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "vadstream"

# subpackage -> subpackages it must never import
FORBIDDEN = {
    "stages": {"audio", "wire", "service", "commands", "evaluation", "training"},
    "audio": {"wire", "service", "commands", "evaluation", "training"},
    "wire": {"audio", "service", "commands", "evaluation", "training"},
    "service": {"commands", "evaluation", "training"},
}


def import_graph() -> dict[str, set[str]]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        modules[name] = path
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            graph[name] |= {t for t in targets if t in modules and t not in (name, "vadstream")}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle():
    assert cycles(import_graph()) == []


def test_imports_point_down_the_layers():
    def layer(module: str) -> str:
        parts = module.split(".")
        return parts[1] if len(parts) > 2 else ""

    wrong = [f"{m} -> {t}" for m, targets in import_graph().items() for t in sorted(targets)
             if layer(t) in FORBIDDEN.get(layer(m), set())]
    assert wrong == []


def test_the_checks_see_a_cycle_and_a_wrong_way_import():
    """The checks can fail: a made-up graph with both."""
    graph = {"vadstream.stages.a": {"vadstream.service.b"}, "vadstream.service.b": {"vadstream.stages.a"}}
    assert cycles(graph) == [["vadstream.service.b", "vadstream.stages.a"]]
