"""The package's layering (docs/architecture.md): data flows one way.

taml.run (the shared run kit) imports no other taml package; taml.data imports only the run
kit; the two families (taml.episodic, taml.biased) never import each other; and no module
imports, even inside a function, anything that imports it back."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "taml"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module -> the taml modules it imports (function-level imports included); ``from
    package import name`` counts as importing the submodule when ``name`` is one."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names if a.name.startswith("taml"))
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: resolve against this module's package
                    anchor = name.split(".")[: len(name.split(".")) - node.level
                                               + (1 if is_package else 0)]
                    base = ".".join(anchor + ([base] if base else []))
                if not base.startswith("taml"):
                    continue
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.add(sub if sub in modules else base)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def family(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def violations(allowed: dict[str, set[str]]) -> list[str]:
    out = []
    for module, targets in import_graph().items():
        rule = allowed.get(family(module))
        if rule is None:
            continue
        out += [f"{module} imports {t}" for t in sorted(targets)
                if family(t) and family(t) not in rule]
    return out


def test_the_graph_sees_the_packages():
    graph = import_graph()
    assert "taml.episodic.train" in graph and "taml.biased.train" in graph
    assert "taml.run.folder" in graph["taml.episodic.train"]  # it reads imports at all


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_the_run_kit_imports_no_other_taml_package():
    assert violations({"run": {"run"}}) == []


def test_the_data_layer_imports_only_the_run_kit():
    assert violations({"data": {"run", "data"}}) == []


def test_the_two_families_do_not_import_each_other():
    assert violations({"episodic": {"run", "data", "episodic"},
                       "biased": {"run", "data", "biased"}}) == []


def test_the_checker_catches_a_cycle_and_a_crossing():
    assert cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]
    assert family("taml.biased.methods.core") == "biased"
