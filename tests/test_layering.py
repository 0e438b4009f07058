"""The package's architecture, read from its imports (``ast``; nothing is imported).

DESIGN.md's layers, bottom to top: surrogate and _validate; kernels; functional; nn; losses;
data; (hardware, robust, proxy, convert, interop, decoders); learning; viz; train; apps; cli. An import
may point down the order or stay inside its own part; every import counts, including those
inside functions (a lazy import hides a circle, it does not remove it). No two modules import
each other through any chain, no app imports another app, and no module uses another
module's private (``_name``) functions, classes or constants.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Set, Tuple

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = "spikegrad"

RANK = {"surrogate": 0, "_validate": 0, "kernels": 1, "functional": 2, "nn": 3, "losses": 4,
        "data": 5, "hardware": 6, "robust": 6, "proxy": 6, "convert": 6, "interop": 6,
        "decoders": 6,
        "learning": 7, "viz": 8, "train": 9, "apps": 10, "cli": 11, "": 12}



class Import(NamedTuple):
    source: str   # importing module, dotted
    target: str   # imported module (or package), dotted
    name: Optional[str]  # the name taken from it (None for `import x`)
    line: int


def _modules() -> Dict[str, Tuple[Path, bool]]:
    mods = {}
    for path in (SRC / PKG).rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        mods[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return mods


MODULES = _modules()


def _resolve(module: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    base = module.split(".") if is_pkg else module.split(".")[:-1]
    if node.level:
        base = base[:len(base) - (node.level - 1)]
        return ".".join(base + ([node.module] if node.module else []))
    return node.module or ""


def _imports() -> List[Import]:
    found = []
    for module, (path, is_pkg) in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                target = _resolve(module, is_pkg, node)
                if target != PKG and not target.startswith(PKG + "."):
                    continue
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    found.append(Import(module, sub if sub in MODULES else target,
                                        None if sub in MODULES else alias.name, node.lineno))
            elif isinstance(node, ast.Import):
                found += [Import(module, a.name, None, node.lineno) for a in node.names
                          if a.name == PKG or a.name.startswith(PKG + ".")]
    return found


IMPORTS = _imports()


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _app(module: str) -> Optional[str]:
    parts = module.split(".")
    # the skeleton every app uses, not apps themselves
    shared = ("config", "report", "budget", "sweep", "datasets", "setups")
    if len(parts) > 2 and parts[1] == "apps" and parts[2] not in shared:
        return parts[2]
    return None


def test_every_part_of_the_package_has_a_layer():
    assert {_part(m) for m in MODULES} <= set(RANK), set(map(_part, MODULES)) - set(RANK)


def test_imports_point_down_the_layers():
    bad = []
    for imp in IMPORTS:
        src, dst = _part(imp.source), _part(imp.target)
        if src != dst and RANK[dst] >= RANK[src]:
            bad.append(f"{imp.source}:{imp.line} imports {imp.target} ({src} -> {dst})")
    assert not bad, "imports that point up (or sideways) the layers:\n" + "\n".join(bad)


def _cycles(edges: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on: Set[str] = set()
    out: List[List[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in list(edges):
        if v not in index:
            visit(v)
    return out


def test_no_import_circles():
    edges: Dict[str, Set[str]] = defaultdict(set)
    for imp in IMPORTS:
        if imp.source != imp.target:
            edges[imp.source].add(imp.target)
            edges[imp.target]  # noqa: B018 - every module is a node
    assert _cycles(edges) == []


def test_the_cycle_finder_finds_a_cycle():
    edges = defaultdict(set, {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}})
    assert _cycles(edges) == [["a", "b", "c"]]


def test_no_app_imports_another_app():
    pairs = {(_app(i.source), _app(i.target)) for i in IMPORTS
             if _app(i.source) and _app(i.target) and _app(i.source) != _app(i.target)}
    assert not pairs, f"apps import other apps (share a set-up in apps/setups instead): {pairs}"


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _private_uses() -> List[str]:
    uses = [f"{i.source}:{i.line} imports {i.target}.{i.name}" for i in IMPORTS
            if i.name and _private(i.name) and i.source != i.target]
    for module, (path, is_pkg) in MODULES.items():
        tree = ast.parse(path.read_text())
        alias: Dict[str, str] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                target = _resolve(module, is_pkg, node)
                for a in node.names:
                    if f"{target}.{a.name}" in MODULES:
                        alias[a.asname or a.name] = f"{target}.{a.name}"
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.startswith(PKG):
                        alias[a.asname or PKG] = a.name if a.asname else PKG

        def resolve(node) -> Optional[str]:
            if isinstance(node, ast.Name):
                return alias.get(node.id)
            if isinstance(node, ast.Attribute):
                base = resolve(node.value)
                if base and f"{base}.{node.attr}" in MODULES:
                    return f"{base}.{node.attr}"
            return None

        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and _private(node.attr):
                owner = resolve(node.value)
                if owner and owner != module:
                    uses.append(f"{module}:{node.lineno} uses {owner}.{node.attr}")
    return uses


def test_no_module_uses_another_modules_private_names():
    uses = _private_uses()
    assert not uses, "\n".join(uses)


def test_nn_reaches_the_kernels_only_through_functional():
    # the backend registry is consulted by functional's *_seq alone (DESIGN.md)
    direct = [f"{i.source}:{i.line} imports {i.target}" for i in IMPORTS
              if _part(i.source) == "nn" and _part(i.target) == "kernels"]
    assert not direct, "\n".join(direct)
