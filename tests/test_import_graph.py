"""The package's layers, checked on its import graph (parsed with ``ast``, nothing imported).

Every ``import`` and ``from ... import`` of every module counts: module level,
``if TYPE_CHECKING:`` blocks, class bodies and function bodies; relative
imports are resolved, and ``from pkg import name`` is an import of
``pkg.name`` when that is a module. The rules (docs/architecture.md, "Module map"):

- ``log/`` imports nothing from runs, durable, protocol, web, cli, bench or testing;
- ``runs/`` and ``durable/`` import no web, cli, protocol, bench or testing;
- ``log/``, ``runs/``, ``durable/`` and ``protocol/`` import no Quart, Quart-Trio,
  Werkzeug or Hypercorn;
- ``web/`` reaches stores only through the store protocol: of ``log/`` it may
  import the package itself and :data:`LOG_FOR_WEB` (entries and their JSON,
  the store protocol, the budget), never ``log/redis/`` or the memory store; of
  ``durable/`` nothing under ``durable/redis/``;
- ``bench/`` is a client: it imports only itself and the root helpers;
- the root helpers (``_errors``, ``_exception_groups``, ``_parking``, ``_version``) import no layer;
- no import cycles, counting every import: type-checking ones (they show where
  types live) and function-level ones (a deferred import hides a cycle, it does
  not remove it). Each cycle is reported with its edges, deferred ones marked.

The deprecation shims (``stores/``) are exempt: they exist to point at the new place.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "trio_streams"

FRAMEWORKS = ("quart", "quart_trio", "werkzeug", "hypercorn")
LAYERS = ("log", "runs", "durable", "protocol", "web", "cli", "bench", "testing")
SHIM_LAYERS = ("stores",)
ROOT_HELPERS = ("_errors", "_exception_groups", "_parking", "_version")
#: Modules at the root that something outside loads: ``python -m`` and pytest's ``pytest11``.
ENTRY_POINTS = ("__main__", "_pytest_entry_point")

#: What of log/ the web layer may import: the public package, the store protocol,
#: entries (and their JSON) and the memory accounting. Not log/redis/, not the memory store.
LOG_FOR_WEB = frozenset(
    {
        "trio_streams.log",
        "trio_streams.log._store",
        "trio_streams.log._events",
        "trio_streams.log._json",
        "trio_streams.log._budget",
        "trio_streams.log._sizes",
    }
)

FORBIDDEN_LAYERS: dict[str, tuple[str, ...]] = {
    "log": ("runs", "durable", "protocol", "web", "cli", "bench", "testing"),
    "runs": ("durable", "protocol", "web", "cli", "bench", "testing"),
    "durable": ("protocol", "web", "cli", "bench", "testing"),
    "protocol": ("web", "cli", "bench", "testing"),
    "web": ("cli", "bench", "testing"),
}
NO_FRAMEWORK = ("log", "runs", "durable", "protocol")

# No exceptions: every import obeys the layers, and there is no cycle. (Kept
# as sets so that a temporary exception, if one is ever needed, is explicit.)
KNOWN_VIOLATIONS: frozenset[tuple[str, str]] = frozenset()
KNOWN_CYCLES: frozenset[frozenset[str]] = frozenset()


@dataclass(frozen=True)
class Edge:
    importer: str
    imported: str
    line: int
    at_import_time: bool  # False: inside a function body (runs when called)


def module_names(package_dir: Path) -> dict[str, Path]:
    """Dotted name -> file, for every module of the package under ``package_dir``."""
    root = package_dir.parent
    names = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


class _Imports(ast.NodeVisitor):
    def __init__(self, module: str, is_package: bool, modules: set[str]) -> None:
        self.module = module
        self.package = module if is_package else module.rpartition(".")[0]
        self.modules = modules
        self.depth = 0  # function nesting
        self.edges: list[Edge] = []

    def _add(self, target: str, line: int) -> None:
        self.edges.append(Edge(self.module, target, line, self.depth == 0))

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.package.split(".")
            base = base[: len(base) - (node.level - 1)]
            source = ".".join(base + ([node.module] if node.module else []))
        else:
            source = node.module or ""
        for alias in node.names:
            sub = f"{source}.{alias.name}"
            self._add(sub if sub in self.modules else source, node.lineno)


def import_edges(package_dir: Path) -> list[Edge]:
    """Every import of every module of the package, resolved to dotted names."""
    names = module_names(package_dir)
    edges = []
    for name, path in names.items():
        visitor = _Imports(name, path.name == "__init__.py", set(names))
        visitor.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        edges += visitor.edges
    return edges


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def violations(edges: list[Edge]) -> set[tuple[str, str]]:
    """(importer, imported) pairs that break a layering rule."""
    found = set()
    for e in edges:
        if not e.importer.startswith("trio_streams"):
            continue
        layer = layer_of(e.importer)
        if layer in SHIM_LAYERS:
            continue
        top = e.imported.split(".")[0]
        inside = top == "trio_streams"
        target_layer = layer_of(e.imported) if inside else ""
        bad = False
        if layer in NO_FRAMEWORK and top in FRAMEWORKS:
            bad = True
        if inside and target_layer in FORBIDDEN_LAYERS.get(layer, ()):
            bad = True
        if layer == "web" and inside:
            if target_layer == "log" and e.imported not in LOG_FOR_WEB:
                bad = True
            if e.imported.startswith("trio_streams.durable.redis"):
                bad = True
        if layer == "bench" and inside and target_layer not in ("bench", *ROOT_HELPERS):
            bad = True
        if layer in ROOT_HELPERS and inside and target_layer not in ROOT_HELPERS:
            bad = True
        if bad:
            found.add((e.importer, e.imported))
    return found


def cycles(edges: list[Edge]) -> list[frozenset[str]]:
    """The import cycles: strongly connected components of the package's import graph (Tarjan)."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        if e.imported.startswith("trio_streams") and e.importer != e.imported:
            if layer_of(e.importer) in SHIM_LAYERS:
                continue
            graph.setdefault(e.importer, set()).add(e.imported)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _describe(edges: list[Edge], pairs: set[tuple[str, str]]) -> str:
    lines = []
    for importer, imported in sorted(pairs):
        where = [e.line for e in edges if (e.importer, e.imported) == (importer, imported)]
        lines.append(f"  {importer} (line {min(where)}) imports {imported}")
    return "\n".join(lines)


def _cycle_path(edges: list[Edge], component: frozenset[str]) -> str:
    inner = sorted(
        {
            (e.importer, e.imported, "" if e.at_import_time else " (in a function)")
            for e in edges
            if {e.importer, e.imported} <= component
        }
    )
    return "\n".join(f"    {a} -> {b}{deferred}" for a, b, deferred in inner)


def test_layers_import_only_downwards():
    edges = import_edges(PACKAGE_DIR)
    found = violations(edges)
    new = found - KNOWN_VIOLATIONS
    stale = KNOWN_VIOLATIONS - found
    assert not new, "imports that break the layers:\n" + _describe(edges, new)
    assert not stale, "fixed; delete from KNOWN_VIOLATIONS:\n" + "\n".join(f"  {p}" for p in sorted(stale))


def test_no_import_cycles():
    edges = import_edges(PACKAGE_DIR)
    found = set(cycles(edges))
    new = found - KNOWN_CYCLES
    stale = KNOWN_CYCLES - found
    report = "\n".join(
        f"  cycle of {len(c)} modules:\n{_cycle_path(edges, c)}" for c in sorted(new, key=sorted)
    )
    assert not new, "import cycles (type-checking and deferred imports included):\n" + report
    assert not stale, "changed or fixed; update KNOWN_CYCLES:\n" + "\n".join(
        f"  {sorted(c)}" for c in sorted(stale, key=sorted)
    )


def test_every_module_is_in_a_layer():
    """A new module at the root must be a public entry point or a root helper."""
    for name in module_names(PACKAGE_DIR):
        layer = layer_of(name)
        assert layer in ("", *ENTRY_POINTS, *LAYERS, *SHIM_LAYERS, *ROOT_HELPERS), name


# The checker itself, on small packages of its own: each rule catches its break.


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    pkg = tmp_path / "trio_streams"
    for rel, text in {"__init__.py": "", **files}.items():
        path = pkg / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return pkg


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (
            {
                "log/__init__.py": "",
                "log/_a.py": "from ..runs import _hub\n",
                "runs/__init__.py": "",
                "runs/_hub.py": "",
            },
            {("trio_streams.log._a", "trio_streams.runs._hub")},
        ),
        (
            {
                "runs/__init__.py": "",
                "runs/_a.py": "import typing\nif typing.TYPE_CHECKING:\n    from ..web import _x\n",
                "web/__init__.py": "",
                "web/_x.py": "",
            },
            {("trio_streams.runs._a", "trio_streams.web._x")},
        ),
        (
            {"durable/__init__.py": "", "durable/_a.py": "def f():\n    import quart\n"},
            {("trio_streams.durable._a", "quart")},
        ),
        (
            {"protocol/__init__.py": "", "protocol/_a.py": "from quart import request\n"},
            {("trio_streams.protocol._a", "quart")},
        ),
        (
            {"web/__init__.py": "", "web/_a.py": "from ..log.redis import _writer\n", "log/__init__.py": ""},
            {("trio_streams.web._a", "trio_streams.log.redis")},
        ),
        (
            {
                "web/__init__.py": "",
                "web/_a.py": "from ..log._memory import MemoryStore\n",
                "log/__init__.py": "",
            },
            {("trio_streams.web._a", "trio_streams.log._memory")},
        ),
        (
            {"web/__init__.py": "", "web/_a.py": "from ..log._store import Store\nfrom ..log import Event\n"},
            set(),
        ),
        ({"_errors.py": "from .runs import _run\n"}, {("trio_streams._errors", "trio_streams.runs")}),
    ],
)
def test_checker_catches_each_rule(tmp_path, files, expected):
    assert violations(import_edges(_package(tmp_path, files))) == expected


def test_checker_reports_cycles_through_type_checking_and_deferred_imports(tmp_path):
    pkg = _package(
        tmp_path,
        {
            "runs/__init__.py": "",
            "runs/_a.py": "from . import _b\n",
            "runs/_b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ._a import X\n",
            "runs/_c.py": "from ._d import Y\n",
            "runs/_d.py": "def f():\n    from ._c import Z\n",
            "runs/_e.py": "from . import _a\n",  # depends on a cycle, is not in one
        },
    )
    assert sorted(cycles(import_edges(pkg)), key=sorted) == [
        frozenset({"trio_streams.runs._a", "trio_streams.runs._b"}),
        frozenset({"trio_streams.runs._c", "trio_streams.runs._d"}),
    ]
