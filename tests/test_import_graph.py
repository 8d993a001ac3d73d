"""The package's import graph has no circle.

The graph is built from the source with ``ast``: every import statement counts, at the top of a module
or inside a function (a deferred import only hides a circle until the function runs), and an edge goes
to the most specific module named (``from .data import model`` -> ``aiida_cgcnn.data.model``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import aiida_cgcnn

PACKAGE = Path(aiida_cgcnn.__file__).parent


def package_modules(root: Path = PACKAGE) -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, whether it is a package's ``__init__``)."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        modules[".".join(parts)] = (path, is_package)
    return modules


def absolute_name(module: str, is_package: bool, level: int, name: str | None) -> str:
    """The module a ``from`` import in ``module`` names (``level`` leading dots, then ``name``)."""
    if not level:
        return name or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]  # a plain module's dots start from its package
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def imported_modules(module: str, path: Path, is_package: bool, known: set[str]) -> set[str]:
    """The package's modules that ``module`` imports anywhere in its source."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = absolute_name(module, is_package, node.level, node.module)
            # `from package import name`: the submodule when `name` is one, else the package itself
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        found.update(t for t in targets if t in known and t != module)
    return found


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    modules = package_modules(root)
    known = set(modules)
    return {name: imported_modules(name, path, is_pkg, known) for name, (path, is_pkg) in modules.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph[successor]))))
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def describe(graph: dict[str, set[str]], circle: list[str]) -> str:
    members = set(circle)
    lines = [f"{len(circle)} modules in a circle:"]
    lines += [f"    {m} -> {sorted(graph[m] & members)}" for m in circle]
    return "\n".join(lines)


def test_the_graph_sees_every_kind_of_import(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("from .a import thing\n")
    (package / "a.py").write_text("import pkg.b\nthing = 1\n")
    (package / "b.py").write_text("def later():\n    from .sub import c\n")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "c.py").write_text("from .. import a\nfrom ..sub import d\n")
    (package / "sub" / "d.py").write_text("from pkg import sub\nimport numpy\n")
    graph = import_graph(package)
    assert graph == {
        "pkg": {"pkg.a"},
        "pkg.a": {"pkg.b"},
        "pkg.b": {"pkg.sub.c"},  # inside a function
        "pkg.sub": set(),
        "pkg.sub.c": {"pkg.a", "pkg.sub.d"},  # the most specific module named
        "pkg.sub.d": {"pkg.sub"},
    }
    assert circles(graph) == [["pkg.a", "pkg.b", "pkg.sub.c"]]
    assert describe(graph, ["pkg.a", "pkg.b", "pkg.sub.c"]).splitlines() == [
        "3 modules in a circle:",
        "    pkg.a -> ['pkg.b']",
        "    pkg.b -> ['pkg.sub.c']",
        "    pkg.sub.c -> ['pkg.a']",
    ]
    assert circles({"x": {"y"}, "y": {"z"}, "z": set()}) == []


def test_the_package_has_no_import_circle():
    graph = import_graph()
    assert "aiida_cgcnn.predict" in graph and len(graph) > 50
    found = circles(graph)
    assert not found, f"{len(found)} import circle(s):\n" + "\n".join(describe(graph, c) for c in found)
