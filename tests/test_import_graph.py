"""No import circle among compare's modules.

Every `import` and `from ... import` statement of compare/**/*.py, at module level and inside functions alike, is an
edge from the importing module to the module it names (read with `ast`, nothing is imported): a function-level import
that closes a circle is a circle all the same, only deferred. The graph must have no cycle. The checker is proven on
small synthetic sets of module sources: it finds a planted cycle (module-level, function-level, relative, through a
package's `from compare import x`) and passes a set without one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "compare"


def module_sources(root: Path, package: str) -> dict[str, str]:
    """Dotted module name -> source, for every .py file of `package` under `root` (a package's __init__.py is the
    package's own name)."""
    sources = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        sources[".".join(parts)] = path.read_text(encoding="utf-8")
    return sources


def _resolve(name: str, modules: set[str]) -> str | None:
    """The module of `modules` that the dotted `name` is, or lies in (the longest such prefix), or None."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def import_graph(sources: dict[str, str]) -> dict[str, set[str]]:
    """Module -> the modules of `sources` it imports anywhere in its source (module level or in a function)."""
    modules = set(sources)
    packages = {m for m in modules if any(other.startswith(m + ".") for other in modules)}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, source in sources.items():
        here = module if module in packages else module.rpartition(".")[0]  # the package a relative import starts at
        for node in ast.walk(ast.parse(source)):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base_parts = here.split(".")[: len(here.split(".")) - (node.level - 1)] if here else []
                    base = ".".join(base_parts + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                # `from pkg import name`: the submodule pkg.name when there is one, else pkg itself
                named = [f"{base}.{alias.name}" for alias in node.names]
                targets = [name if name in modules else base for name in named]
            for target in targets:
                found = _resolve(target, modules)
                if found is not None and found != module:
                    graph[module].add(found)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of `graph` as [a, b, ..., a], or None (depth-first search, white/grey/black)."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


# ----- the checker on planted circles ---------------------------------------------------------------------------------
SYNTHETIC = {
    "pkg": "",
    "pkg.base": "import numpy as np\n",
    "pkg.cli": "from pkg.base import np\n\n\ndef main():\n    from pkg import commands\n",
    "pkg.commands": "import pkg.base\n",
}


def test_the_checker_passes_modules_without_a_circle():
    graph = import_graph(SYNTHETIC)
    assert graph["pkg.cli"] == {"pkg.base", "pkg.commands"} and graph["pkg.commands"] == {"pkg.base"}
    assert find_cycle(graph) is None


@pytest.mark.parametrize(
    "planted",
    [
        "from pkg.cli import main\n",  # module level
        "def run():\n    from pkg.cli import main\n",  # inside a function: deferred, still a circle
        "def run():\n    from . import cli\n",  # relative
        "import pkg.cli as cli\n",
        "def run():\n    from pkg import cli\n",  # a package's submodule named in `from pkg import`
    ],
    ids=["module-level", "function-level", "relative", "import-as", "from-package"],
)
def test_the_checker_finds_a_planted_circle(planted):
    sources = {**SYNTHETIC, "pkg.commands": SYNTHETIC["pkg.commands"] + planted}
    assert find_cycle(import_graph(sources)) in (
        ["pkg.cli", "pkg.commands", "pkg.cli"],
        ["pkg.commands", "pkg.cli", "pkg.commands"],
    )


def test_the_checker_finds_a_longer_circle_through_a_subpackage():
    sources = {
        **SYNTHETIC,
        "pkg.sub": "",
        "pkg.sub.leaf": "from ..cli import main\n",
        "pkg.base": "from pkg.sub.leaf import x\n",
    }
    cycle = find_cycle(import_graph(sources))
    assert cycle is not None and set(cycle) == {"pkg.base", "pkg.sub.leaf", "pkg.cli"}


# ----- the package ----------------------------------------------------------------------------------------------------
def test_compare_has_no_import_circle():
    sources = module_sources(ROOT, PACKAGE)
    graph = import_graph(sources)
    assert {"compare.cli", "compare.keras_cli", "compare.harness"} <= set(graph)  # the files were read
    assert "compare.parser" in graph["compare.keras_cli"]  # and their imports
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle)
