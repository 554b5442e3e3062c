"""The project's import graph from its source (ast): every import of a project module, tests and bench aside.

import-linter (``pyproject.toml`` [tool.importlinter], run by tests/test_layout.py) holds the packages' contracts; it
cannot see ``pipeline.py``, a script, so this graph does: no circle anywhere, and the longest chain.

    python -m tests.import_graph        # modules per package, circles, the longest chains
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("commands", "components", "platforms", "mlp_core", "artifacts")
SCRIPTS = ("pipeline.py",)


def modules(root: Path = ROOT) -> dict[str, Path]:
    found = {}
    for top in PACKAGES:
        for path in sorted((root / top).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    for script in SCRIPTS:
        found[script[:-3]] = root / script
    return found


def edges(root: Path = ROOT, top_level_only: bool = False) -> dict[str, set[str]]:
    """Module -> the project modules it imports: anywhere in its code (a function-level import counts), or with
    ``top_level_only`` only those its import runs (its module-level statements)."""
    mods = modules(root)
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(), str(path))
        # A script's ``if __name__ == "__main__":`` block runs only when it is the program, as the module __main__:
        # importing it never runs that block, so it is no dependency of the module (pipeline.py calls the CLI there).
        tree.body = [n for n in tree.body if not _is_main_block(n)]
        for node in (tree.body if top_level_only else ast.walk(tree)):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                targets = [f"{base}.{a.name}" for a in node.names] + [base]
            for target in targets:
                # the longest project module the name starts with (``from a.b import c`` is a.b.c or a.b)
                while target and target not in mods:
                    target = target.rpartition(".")[0]
                if target and target != name and not name.startswith(target + "."):
                    graph[name].add(target)
    return graph


def _is_main_block(node: ast.stmt) -> bool:
    return (isinstance(node, ast.If) and isinstance(node.test, ast.Compare) and isinstance(node.test.left, ast.Name)
            and node.test.left.id == "__name__" and any(isinstance(c, ast.Constant) and c.value == "__main__"
                                                        for c in node.test.comparators))


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def longest_chain(graph: dict[str, set[str]]) -> list[str]:
    """The longest chain of modules each importing the next (the graph must have no cycle)."""

    @functools.lru_cache(maxsize=None)
    def longest_from(v: str) -> tuple[str, ...]:
        best: tuple[str, ...] = ()
        for w in sorted(graph[v]):
            chain = longest_from(w)
            if len(chain) > len(best):
                best = chain
        return (v, *best)

    return list(max((longest_from(v) for v in sorted(graph)), key=len))


def report(root: Path = ROOT) -> list[str]:
    """Modules per package, the circles, and the longest chains (all imports; module-level imports only)."""
    graph = edges(root)
    lines = [f"{len(graph)} modules: " + ", ".join(
        f"{top} {sum(1 for m in graph if m == top or m.startswith(top + '.'))}" for top in (*PACKAGES, "pipeline"))]
    found = cycles(graph)
    lines.append(f"{len(found)} import circle(s)" + "".join(f"\n  {' <-> '.join(c)}" for c in found))
    if not found:
        for name, top in (("every import", False), ("module-level imports", True)):
            chain = longest_chain(edges(root, top))
            lines.append(f"longest chain, {name}: {len(chain)} modules: {' -> '.join(chain)}")
    return lines


if __name__ == "__main__":
    print("\n".join(report()))
