"""The package follows its data flow: no module imports from a higher layer, and no two modules import each
other, directly or around a circle (lazy imports inside functions count too).  Read from the source text, so a
new import that breaks the rule fails here, naming it."""

from __future__ import annotations

import ast
from pathlib import Path

import fidkit

PACKAGE = Path(fidkit.__file__).parent

#: Lowest first.  A module may import from its own layer and the layers below it.
LAYERS = [
    {"_version", "errors", "_io", "cache", "_safe_pickle", "_download", "_optional"},   # foundations
    {"stats"},                                # streaming moments, provenance, statistics files
    {"registry"},                             # published reference statistics: entries, downloads, first-use sha256
    {"data"},                                 # sources, decoding
    {"extractors"},                           # networks as declared plug-ins
    {"metrics"},                              # pure functions of statistics and features, declared plug-ins
    {"engine"},                               # the plan and the feature pass with its state
    {"protocols"},                            # published protocols' cards and the comparability verdict
    {"report"},                               # results, notes and warnings
    {"request"},                              # a request resolved once
    {"session"},                              # features into a result
    {"api", "evaluator", "differentiable", "testing", "adm", "mapreduce",   # front ends
     "loggers", "torchmetric", "lightning"},                   # ... and their bridges to other frameworks
    {"cli", "__main__", "__init__"},          # the command line and the package's face
]


def _layer_of(module: str) -> int:
    top = module.split(".")[1] if "." in module else "__init__"
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"{module}: its sub-package {top!r} has no layer in tests/test_layers.py; add it")


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        out[".".join(parts) if parts != ["fidkit", "__init__"] else "fidkit.__init__"] = path
    return out


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The fidkit modules a file imports (``from fidkit.x import y`` counts as fidkit.x.y when that is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and \
                node.module.split(".")[0] == "fidkit":
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.split(".")[0] == "fidkit"]
        for name in names:
            if name in modules:
                found.add(name)
            elif name == "fidkit":
                found.add("fidkit.__init__")
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {m: _imports(p, modules) - {m} for m, p in modules.items()}


def test_no_import_runs_up_the_layers():
    upward = []
    for module, targets in _graph().items():
        for t in sorted(targets):
            if t.startswith(module + ".") and module.count(".") == 1:  # a sub-package's __init__ re-exporting
                continue
            if _layer_of(t) > _layer_of(module):
                upward.append(f"{module} imports {t}")
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)


def test_no_import_cycles():
    graph = _graph()
    # a package's __init__ importing its own modules is how a package is built, not a cycle of ideas
    for m in graph:
        graph[m] = {t for t in graph[m] if not (t.startswith(m + ".") or m == "fidkit.__init__")}
    cycles, state, stack = [], {}, []

    def visit(m: str) -> None:
        state[m] = "open"
        stack.append(m)
        for t in sorted(graph.get(m, ())):
            if state.get(t) == "open":
                cycles.append(" -> ".join(stack[stack.index(t):] + [t]))
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_rules_can_fail(tmp_path):
    """The checker sees an upward import and a cycle when they are there."""
    modules = {"fidkit.stats.a": tmp_path / "a.py", "fidkit.api": tmp_path / "b.py"}
    modules["fidkit.stats.a"].write_text("def f():\n    from fidkit.api import evaluate\n")
    modules["fidkit.api"].write_text("import fidkit.stats.a\n")
    assert _imports(modules["fidkit.stats.a"], modules) == {"fidkit.api"}
    assert _layer_of("fidkit.api") > _layer_of("fidkit.stats.a")
