"""The core's import graph has floors: no module imports one on a higher floor, and there is no circle.

records -> encoder/engines -> store -> retriever/documents -> finetune/evaluate/datasets -> demo/CLI.
Imports are read from the source (also those inside functions), so a lazy import cannot hide a circle.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import mlret_rag

PACKAGE = Path(mlret_rag.__file__).parent
FLOORS = [
    ("records", {"errors", "kb", "_atomic", "_hashing", "_quiet", "cache", "_writelock", "_callable"}),
    ("encoder/engines", {"bundled", "_identity", "onnx_quantize", "onnx_backend", "engines", "encoder"}),
    ("store", {"location", "store"}),
    ("retriever", {"retriever", "documents"}),
    ("finetune/evaluate", {"finetune", "evaluate", "datasets"}),
    ("demo/CLI", {"demo", "cli", "testing", "__init__"}),
]


def _floor(module: str) -> int:
    top = module.split(".")[0]
    for level, (_, names) in enumerate(FLOORS):
        if top in names:
            return level
    raise AssertionError(f"mlret_rag.{module} has no floor in {__name__}.FLOORS; add it")


def _imports() -> dict[str, set[str]]:
    """``{module: {imported module}}`` for every module of the package, names relative to it."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        package = parts[:-1]  # the package a relative import starts from (for __init__ too)
        name = ".".join(parts if parts[-1] != "__init__" else parts[:-1] or ["__init__"])
        modules[name] = (path, package)
    graph: dict[str, set[str]] = {}
    for name, (path, package) in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                candidates = [target, *(f"{target}.{alias.name}" if target else alias.name for alias in node.names)]
                found |= {c for c in candidates if c in modules and c != name}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mlret_rag."):
                found |= {node.module.removeprefix("mlret_rag.")} & set(modules)
        graph[name] = found
    return graph


def test_no_module_imports_a_higher_floor():
    upward = [
        f"mlret_rag.{m} ({FLOORS[_floor(m)][0]}) imports mlret_rag.{t} ({FLOORS[_floor(t)][0]})"
        for m, targets in _imports().items() for t in targets if _floor(t) > _floor(m)
    ]
    assert upward == []


def test_no_import_circle_outside_the_cli():
    """The CLI's subcommand modules register on the app its ``__init__`` creates (typer's pattern)."""
    graph = _imports()
    circles = []

    def visit(module: str, path: list[str]) -> None:
        for target in sorted(graph[module]):
            if target in path:
                circle = path[path.index(target):] + [target]
                if not all(m.startswith("cli") for m in circle):
                    circles.append(" -> ".join(circle))
            elif target not in done:
                visit(target, [*path, target])
        done.add(module)

    done: set[str] = set()
    for module in sorted(graph):
        visit(module, [module])
    assert circles == []


def test_no_test_or_benchmark_reaches_a_private_name():
    """Tests and benchmarks go through public names: no ``mlret_rag._x`` module, no ``obj._attr`` of ours."""
    root = PACKAGE.parent
    found = []
    for path in [*root.glob("tests/*.py"), *root.glob("benchmarks/*.py"), *root.glob("integrations/*/tests/**/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            where = f"{path.relative_to(root)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mlret_rag"):
                names = [node.module, *(a.name for a in node.names)]
                found += [f"{where} {n}" for n in names if any(part.startswith("_") and not part.startswith("__")
                                                               for part in n.split("."))]
            elif (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                  and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls", "os", "sys"))):
                found.append(f"{where} .{node.attr}")
    assert found == []


def test_the_readme_layout_names_every_module():
    """README's layout section matches the tree: every module of the package is named there."""
    readme = (PACKAGE.parent / "README.md").read_text(encoding="utf-8")
    layout = readme[readme.index("## Development"):]
    layout = layout[: layout.index("integrations/")]
    modules = {p.stem for p in PACKAGE.rglob("*.py") if p.stem not in ("__init__", "__main__")}
    missing = sorted(m for m in modules if not re.search(rf"(?<![\w/]){re.escape(m)}(\.py)?\b", layout))
    assert missing == []
