"""Imports point down the layers, never at another module's private names, and never in a circle.

Every import is read with `ast` (those inside functions too: a lazy import is still a dependency), so the
check needs no import of inrkit and sees code paths no test runs. The layers (README, Layout):

    rank 0  core          rank 3  train
    rank 1  data, signal  rank 4  stages
    rank 2  fields, models, metrics (siblings)
    rank 5  cli (the package inrkit/cli/)
    top     inrkit/__init__.py

An import of the same rank is allowed (public names only); `from inrkit import x` imports the top package
unless x is a subpackage or module.
"""

from __future__ import annotations

import ast
from collections import deque
from pathlib import Path

import inrkit

LAYERS = {"core": 0, "data": 1, "signal": 1, "fields": 2, "models": 2, "metrics": 2, "train": 3, "stages": 4,
          "cli": 5}


def is_private(name: str) -> bool:
    """`_x` is module-internal; dunders (`__version__`) are not."""
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def find_modules(root: Path, package: str) -> dict[str, Path]:
    """{dotted module name: file} for every .py file of `package` under `root`."""
    modules = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute module a `from ... import` names, relative levels included."""
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(module: str, path: Path, modules: dict) -> list[tuple[str, str | None, int]]:
    """(target module, imported name or None, line) for every import in the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(a.name, None, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(node, module, path.name == "__init__.py")
            for a in node.names:
                sub = f"{source}.{a.name}"  # `from pkg import mod` imports the module pkg.mod
                found.append((sub, None, node.lineno) if sub in modules else (source, a.name, node.lineno))
    return found


def layer_of(module: str, package: str, ranks: dict) -> tuple[str, float] | None:
    """(layer name, rank) of an in-package module; the top package ranks above every layer; None if unplaced."""
    if module == package:
        return "top", float("inf")
    name = module.split(".")[1]
    return (name, ranks[name]) if name in ranks else None


def edges(root: Path, package: str) -> list[tuple[str, str, str | None, int]]:
    """(importer, imported module, name, line) for every import between modules of `package`."""
    modules = find_modules(root, package)
    return [(m, target, name, line) for m, path in modules.items()
            for target, name, line in imports_of(m, path, modules)
            if target == package or target.startswith(package + ".")]


def _private_module(src: str, dst: str) -> bool:
    """`pkg._mod` is internal to pkg: importing it from outside pkg reaches into a private name."""
    parent, _, last = dst.rpartition(".")
    return is_private(last) and not (src == parent or src.startswith(parent + "."))


def layer_violations(root: Path, package: str, ranks: dict) -> list[str]:
    """Upward imports, imports of private names, and modules that belong to no layer."""
    out = set()
    for m in find_modules(root, package):
        if layer_of(m, package, ranks) is None:
            out.add(f"{m} belongs to no layer (add its top-level name to the layer table)")
    for src, dst, name, line in edges(root, package):
        a, b = layer_of(src, package, ranks), layer_of(dst, package, ranks)
        what = f"{name} from {dst}" if name else dst
        if a and b and b[1] > a[1]:
            out.add(f"upward: {src} ({a[0]}) imports {what} ({b[0]}), line {line}")
        if (name and is_private(name)) or _private_module(src, dst):
            out.add(f"private: {src} imports {what}, line {line}")
    return sorted(out)


def _shortest_cycle(start: str, graph: dict[str, set]) -> list[str]:
    """The shortest path start -> ... -> start (breadth first), assuming one exists."""
    parent, queue = {}, deque([start])
    while queue:
        node = queue.popleft()
        for nxt in sorted(graph.get(node, ())):
            if nxt == start:
                path = [node]
                while path[-1] != start:
                    path.append(parent[path[-1]])
                return path[::-1] + [start]
            if nxt not in parent:
                parent[nxt] = node
                queue.append(nxt)
    raise AssertionError(f"no cycle through {start}")


def _reachable(start: str, graph: dict[str, set]) -> set[str]:
    seen, stack = set(), [start]
    while stack:
        for nxt in graph.get(stack.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return seen


def cycles(root: Path, package: str) -> list[str]:
    """One shortest cycle per group of mutually importing modules (strongly connected component), naming
    the whole group when it is larger than that cycle (breaking one cycle may leave another)."""
    graph: dict[str, set] = {}
    for src, dst, _, _ in edges(root, package):
        if src != dst:
            graph.setdefault(src, set()).add(dst)
    reach = {m: _reachable(m, graph) for m in graph}
    done, out = set(), []
    for m in sorted(graph):
        if m in done or m not in reach[m]:
            continue
        group = sorted(n for n in reach[m] if m in reach.get(n, ()))
        done |= set(group)
        path = _shortest_cycle(m, graph)
        more = f" (one of the cycles among {', '.join(group)})" if len(group) > len(path) - 1 else ""
        out.append("cycle: " + " -> ".join(path) + more)
    return out


def check(root: Path, package: str, ranks: dict) -> list[str]:
    return layer_violations(root, package, ranks) + cycles(root, package)


def test_inrkit_imports_point_down_without_cycles():
    problems = check(Path(inrkit.__file__).parent.parent, "inrkit", LAYERS)
    assert not problems, f"{len(problems)} import problems:\n  " + "\n  ".join(problems)


def write_package(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def test_checker_reports_each_kind_of_violation(tmp_path):
    write_package(tmp_path, {
        "pkg/__init__.py": "from pkg.high import run\n",
        "pkg/low/__init__.py": "",
        "pkg/low/base.py": "def f():\n    from pkg.high.app import g  # upward, hidden in a function\n",
        "pkg/low/util.py": "from pkg.low.base import _secret\nfrom pkg import __version__\n",
        "pkg/low/_impl.py": "",
        "pkg/high/__init__.py": "from pkg.high.app import run\n",
        "pkg/high/app.py": "from pkg.low import base\nfrom pkg.low import _impl\ndef run(): ...\n",
        "pkg/high/loop.py": "from .obj import step\n",
        "pkg/high/obj.py": "def step():\n    from pkg.high import loop\n",
        "pkg/stray.py": "",
    })
    problems = check(tmp_path, "pkg", {"low": 0, "high": 1})
    assert problems == [
        "pkg.stray belongs to no layer (add its top-level name to the layer table)",
        "private: pkg.high.app imports pkg.low._impl, line 2",
        "private: pkg.low.util imports _secret from pkg.low.base, line 1",
        "upward: pkg.low.base (low) imports g from pkg.high.app (high), line 2",
        "upward: pkg.low.util (low) imports __version__ from pkg (top), line 2",
        "cycle: pkg.high.app -> pkg.low.base -> pkg.high.app",
        "cycle: pkg.high.loop -> pkg.high.obj -> pkg.high.loop",
    ]


def test_clean_package_passes(tmp_path):
    """Downward, sideways and same-package imports of public names are allowed, also relative ones."""
    write_package(tmp_path, {
        "pkg/__init__.py": "from pkg.high.app import run\n",
        "pkg/low/__init__.py": "from .base import f\n",
        "pkg/low/base.py": "def f(): ...\n",
        "pkg/side/__init__.py": "from pkg.low import f\n",
        "pkg/high/app.py": "import pkg.low.base\nfrom pkg.side import f\nfrom ._impl import h\ndef run(): ...\n",
        "pkg/high/_impl.py": "def h(): ...\n",
    })
    assert check(tmp_path, "pkg", {"low": 0, "side": 0, "high": 1}) == []
