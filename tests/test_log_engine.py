"""The log engine (``trio_streams/log/``): the tail both logs stand on, the one
wake-up, the live-reads latch, the budget account -- and the import rules."""

from __future__ import annotations

import ast
import pathlib
from dataclasses import dataclass

import pytest
import trio
import trio.testing

import trio_streams
from trio_streams.durable._log import StreamLog
from trio_streams.durable._offsets import Offset
from trio_streams.log import UNBOUNDED, Changed, LiveReads, Tail
from trio_streams.log._budget import Account, MemoryBudget, MemoryBudgetExceeded
from trio_streams.log._events import Event
from trio_streams.log._replay_log import ReplayLog

PACKAGE = pathlib.Path(trio_streams.__file__).parent


@dataclass(frozen=True)
class Item:
    seq: int
    size: int = 10


# -- the tail -------------------------------------------------------------------------


def test_an_unbounded_tail_keeps_everything_and_numbers_on_from_its_start() -> None:
    tail: Tail[Item] = Tail(start_seq=41)
    assert (tail.max_entries, tail.max_bytes) == (UNBOUNDED, UNBOUNDED)
    assert tail.first_seq == 42
    assert not len(tail)
    for seq in range(42, 2042):
        tail.append(Item(seq))
    assert (len(tail), tail.first_seq, tail.last_seq, tail.trimmed) == (2000, 42, 2041, 0)
    assert tail.get(42) == Item(42)
    assert tail.get(2041) == Item(2041)
    assert [item.seq for item in tail.read_after(2038)] == [2039, 2040, 2041]
    with pytest.raises(ValueError, match="expected seq 2042"):
        tail.append(Item(2043))
    with pytest.raises(IndexError):
        tail.get(41)
    with pytest.raises(IndexError):
        tail.get(2042)


def test_a_bounded_tail_trims_the_oldest_and_get_follows_the_head() -> None:
    tail: Tail[Item] = Tail(max_entries=3)
    for seq in range(1, 1001):
        tail.append(Item(seq))
    assert (tail.first_seq, tail.trimmed) == (998, 997)
    assert [tail.get(seq).seq for seq in (998, 999, 1000)] == [998, 999, 1000]
    with pytest.raises(IndexError):
        tail.get(997)
    assert [item.seq for item in tail.read_after(0)] == [998, 999, 1000]


def test_replay_log_is_the_runs_policy_on_the_tail() -> None:
    log = ReplayLog(max_events=2)
    assert isinstance(log, Tail)
    log.max_events = 3
    for seq in range(1, 6):
        log.append(Event.create(seq, "token", seq, 0.0))
    assert (log.max_entries, log.first_seq, log.statistics().events) == (3, 3, 3)


def test_stream_log_chunks_are_tail_entries_numbered_on_from_a_forks_base() -> None:
    source = StreamLog(json=False)
    for piece in (b"ab", b"cde", b"f"):
        source.append(piece)
    fork = StreamLog(json=False, parent=source, base=source.offset_at(2))
    assert fork.append(b"XY") == Offset(2, 4)
    assert fork.append(b"Z") == Offset(3, 5)
    assert [chunk.seq for chunk in fork._chunks.read_after(0)] == [2, 3]
    assert fork.read(0, max_bytes=100).pieces == [b"ab", b"XY", b"Z"]
    assert (fork.extent(2), fork.extent(3), fork.offset_at(3)) == (2, 1, Offset(1, 3))


# -- the one wake-up ----------------------------------------------------------------------


async def test_changed_wakes_every_waiter_once_and_costs_nothing_unwatched(autojump_clock) -> None:
    changed = Changed()
    changed.notify()  # nobody waits: nothing happens, nothing is made
    assert changed.waiting == 0
    assert changed._waiters is None
    woken: list[tuple[int, float]] = []

    async def waiter(n: int) -> None:
        await changed.wait()
        woken.append((n, trio.current_time()))

    async with trio.open_nursery() as nursery:
        for n in range(3):
            nursery.start_soon(waiter, n)
        await trio.testing.wait_all_tasks_blocked()
        assert changed.waiting == 3
        await trio.sleep(5)
        changed.notify()
    assert sorted(woken) == [(0, 5.0), (1, 5.0), (2, 5.0)]
    assert changed.waiting == 0


async def test_changed_wait_is_cancellable(autojump_clock) -> None:
    changed = Changed()
    with trio.move_on_after(2) as scope:
        await changed.wait()
    assert scope.cancelled_caught
    assert trio.current_time() == 2
    assert changed.waiting == 0


def test_live_reads_latch() -> None:
    woken: list[str] = []
    latch = LiveReads(lambda: woken.append("all"))
    assert latch.open
    assert not woken
    latch.end()
    assert (latch.open, woken) == (False, ["all"])
    latch.resume()
    assert (latch.open, woken) == (True, ["all"])


# -- the budget -------------------------------------------------------------------------------


def test_an_account_moves_between_budgets_and_refuses_without_changing() -> None:
    account = Account("durable")
    account.reserve(100, what="a")  # no budget yet: only counted
    first = MemoryBudget(1024 * 1024)
    account.use(first)
    assert (first.used, first.statistics().durable) == (100, 100)
    with pytest.raises(MemoryBudgetExceeded):
        account.reserve(2 * 1024 * 1024, what="too much")
    assert (account.nbytes, first.used) == (100, 100)
    second = MemoryBudget(1024 * 1024)
    account.use(second)
    assert (first.used, second.used) == (0, 100)
    account.release(60)
    assert (account.nbytes, second.used) == (40, 40)


# -- import rules ----------------------------------------------------------------------------


def _imports(path: pathlib.Path) -> set[str]:
    """Every trio_streams module ``path`` imports, type-checking imports included."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    if path.name == "__init__.py":
        package = package[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("trio_streams")}


def _modules() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        graph[".".join(parts)] = _imports(path)
    return {name: {dep for dep in deps if dep in graph and dep != name} for name, deps in graph.items()}


def test_the_log_engine_imports_nothing_of_runs_durable_protocol_web_or_cli() -> None:
    # The root helpers (errors, the lean trio waits) are shared by everything; nothing else.
    allowed = {"trio_streams._errors", "trio_streams._parking"}
    graph = _modules()
    engine = [name for name in graph if name == "trio_streams.log" or name.startswith("trio_streams.log.")]
    assert "trio_streams.log._tail" in engine
    for name in engine:
        outside = {dep for dep in graph[name] if not dep.startswith("trio_streams.log")}
        assert outside <= allowed, f"{name} imports {sorted(outside - allowed)}"


def _cycle_members(graph: dict[str, set[str]]) -> set[str]:
    """Modules on an import cycle (Tarjan's strongly connected components)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    members: set[str] = set()

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for dep in graph[node]:
            if dep not in index:
                visit(dep)
                low[node] = min(low[node], low[dep])
            elif dep in on_stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                members.update(component)

    for node in graph:
        if node not in index:
            visit(node)
    return members


def test_the_run_engine_and_the_log_engine_are_on_no_import_cycle() -> None:
    # Type-checking imports count: a cycle through them shows a type in the wrong module.
    engine = {
        "trio_streams.runs._hub",
        "trio_streams.runs._hub_state",
        "trio_streams.runs._drain",
        "trio_streams.runs._retention",
        "trio_streams.runs._key_claims",
        "trio_streams.runs._keys",
        "trio_streams.runs._run",
        "trio_streams.log._run_info",
        "trio_streams.log._replay_log",
        "trio_streams.log._store",
        "trio_streams.durable._log",
    }
    graph = _modules()
    engine |= {name for name in graph if name.startswith("trio_streams.log")}
    assert not (_cycle_members(graph) & engine)


def test_iter_after_reads_what_read_after_reads_without_a_copy() -> None:
    tail: Tail[Item] = Tail(max_entries=5, start_seq=10)
    for seq in range(11, 31):
        tail.append(Item(seq))
    for after in (0, 24, 25, 27, 30):
        assert list(tail.iter_after(after)) == tail.read_after(after), after
