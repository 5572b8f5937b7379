"""Import structure: serving/ never needs torch or perception, and no module imports itself
back through others (an import cycle), counting every import a module writes: at the top,
inside functions and under TYPE_CHECKING alike, since each is a dependency a reader follows.
Both lists come from the directories, so a new module is checked without editing this file."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("perception", "serving")


def modules(package: str) -> list[str]:
    """Dotted names of every module under a package folder (packages as their __init__)."""
    out = []
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        out.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return out


def imports_of(name: str, known: set[str]) -> set[str]:
    """The project modules that module `name` imports anywhere in its source. `from a.b
    import c` counts as a.b.c when that is a module, else as a.b."""
    path = ROOT / Path(*name.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                out.add(sub if sub in known else node.module)
    return out & known


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module, or a module importing itself
    (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1 or v in graph[v]:
                    found.append(sorted(comp))
    return found


def test_cycle_finder_finds_a_planted_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert sorted(cycles(graph)) == [["a", "b", "c"], ["e"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles() -> None:
    known = {m for p in PACKAGES for m in modules(p)}
    graph = {m: imports_of(m, known) - {m} for m in known}
    assert imports_of("serving.io", known) >= {"serving.source", "serving.camera"}
    assert cycles(graph) == []


def test_serving_never_imports_torch_or_perception() -> None:
    names = modules("serving")
    assert "serving.app" in names and "serving.runtime" in names
    code = (
        "import importlib, sys\n"
        "sys.modules['torch'] = None; sys.modules['perception'] = None\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        "loaded = [m for m in sys.modules if sys.modules[m] is not None]\n"
        "assert not [m for m in loaded if m.split('.')[0] in ('torch', 'perception')]\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=180, cwd=ROOT
    )
    assert res.returncode == 0, res.stderr[-2000:]
