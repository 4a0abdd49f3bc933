"""The import rules of the protocol layer, checked on the source (type-checking imports included).

Module-level imports only: an import inside a function (the lazy
re-exports of ``trio_streams.durable.__init__``) loads nothing at import time.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "trio_streams"
FRAMEWORKS = ("quart", "quart_trio", "werkzeug", "hypercorn")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _module_level_imports(path: Path) -> set[str]:
    """What ``path`` imports outside function bodies (``if TYPE_CHECKING:`` blocks included)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = package
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                target = (
                    (f"{base}.{node.module}" if node.module else base) if node.level else node.module or ""
                )
                found.add(target)
                # ``from . import _headers``: the submodule itself.
                found.update(f"{target}.{alias.name}" for alias in node.names)
            elif isinstance(node, (ast.If, ast.Try)):
                visit(node.body)
                visit(node.orelse)
                if isinstance(node, ast.Try):
                    for handler in node.handlers:
                        visit(handler.body)
                    visit(node.finalbody)
            elif isinstance(node, ast.ClassDef):
                visit(node.body)

    visit(ast.parse(path.read_text()).body)
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    return {name: {i for i in _module_level_imports(path) if i in modules} for name, path in modules.items()}


def _all_imports(folder: str) -> dict[str, set[str]]:
    return {_module_name(path): _module_level_imports(path) for path in (PACKAGE / folder).rglob("*.py")}


@pytest.mark.parametrize("folder", ["protocol", "durable"])
def test_protocol_and_durable_import_no_web_framework_and_nothing_of_web(folder: str) -> None:
    for module, imports in _all_imports(folder).items():
        for imported in imports:
            assert imported.split(".")[0] not in FRAMEWORKS, f"{module} imports {imported}"
            assert not imported.startswith("trio_streams.web"), f"{module} imports {imported}"


def test_durable_imports_nothing_of_the_protocol_layer() -> None:
    for module, imports in _all_imports("durable").items():
        assert not any(i.startswith("trio_streams.protocol") for i in imports), module


def test_no_import_cycle_through_the_web_extension() -> None:
    graph = _graph()
    start = "trio_streams.web._extension"
    # Everything reachable from the extension, then whether any of it leads back.
    reachable: set[str] = set()
    pending = list(graph[start])
    while pending:
        module = pending.pop()
        if module in reachable:
            continue
        reachable.add(module)
        pending.extend(graph[module])
    back = sorted(module for module in reachable if start in graph[module])
    assert back == [], f"modules the extension imports import it back: {back}"
    for module in ("trio_streams.web._routes", "trio_streams.web._ops", "trio_streams.protocol._runs_http"):
        assert start not in graph[module], module
