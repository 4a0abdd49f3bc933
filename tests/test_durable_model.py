"""The Durable Streams store against a plain model: appends, forks, deletes and the collection of
soft-deleted sources, in random orders (hypothesis stateful testing)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import trio
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from trio_streams.durable import (
    AppendRequest,
    CreateRequest,
    DurableStreamError,
    DurableStreamStore,
    ForkSpec,
    Offset,
)

TEXT = "text/plain"
NAMES = st.sampled_from([f"s{index}" for index in range(6)])


@dataclass
class Model:
    data: bytes
    #: The offsets (as strings) of this stream's boundaries, in order.
    boundaries: list[str]
    source: str | None = None
    forks: int = 0
    soft_deleted: bool = False
    own_bytes: int = 0
    children: list[str] = field(default_factory=list)


class StoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.store = DurableStreamStore()
        self.model: dict[str, Model] = {}

    # trio.current_time() needs a run; the store only reads the clock (no TTLs here).
    def call(self, function, *args):
        async def run():
            return function(*args)

        return trio.run(run)

    @rule(name=NAMES, body=st.binary(max_size=8))
    def create(self, name: str, body: bytes) -> None:
        entry = self.model.get(name)
        if entry is not None and (entry.source is not None or entry.soft_deleted):
            # A fork is configured differently; a soft-deleted name is blocked.
            with pytest.raises(DurableStreamError, check=lambda error: error.status == 409):
                self.call(self.store.create, name, CreateRequest(TEXT, body=body))
            return
        stream, created = self.call(self.store.create, name, CreateRequest(TEXT, body=body))
        if entry is not None:
            assert not created
            return
        assert created
        self.model[name] = Model(body, [str(stream.tail)], own_bytes=len(body))

    @rule(name=NAMES, body=st.binary(min_size=1, max_size=8))
    def append(self, name: str, body: bytes) -> None:
        entry = self.model.get(name)
        if entry is None or entry.soft_deleted:
            status = 404 if entry is None else 410
            with pytest.raises(DurableStreamError, check=lambda error: error.status == status):
                self.call(self.store.append, name, AppendRequest(body, TEXT))
            return
        outcome = self.call(self.store.append, name, AppendRequest(body, TEXT))
        assert str(outcome.next_offset) > entry.boundaries[-1]
        entry.data += body
        entry.own_bytes += len(body)
        entry.boundaries.append(str(outcome.next_offset))

    @rule(source=NAMES, name=NAMES, pick=st.integers(min_value=0, max_value=100))
    def fork(self, source: str, name: str, pick: int) -> None:
        origin = self.model.get(source)
        if origin is None or origin.soft_deleted or name in self.model:
            return
        boundary = origin.boundaries[pick % len(origin.boundaries)]
        offset = Offset.parse(boundary)
        stream, created = self.call(
            self.store.create, name, CreateRequest(None, fork=ForkSpec(source, offset, 0))
        )
        assert created
        assert str(stream.tail) == boundary
        index = origin.boundaries.index(boundary)
        self.model[name] = Model(
            origin.data[: offset.position], origin.boundaries[: index + 1], source=source
        )
        origin.forks += 1
        origin.children.append(name)

    @rule(name=NAMES)
    def delete(self, name: str) -> None:
        entry = self.model.get(name)
        if entry is None or entry.soft_deleted:
            status = 404 if entry is None else 410
            with pytest.raises(DurableStreamError, check=lambda error: error.status == status):
                self.call(self.store.delete, name)
            return
        self.call(self.store.delete, name)
        if entry.forks:
            entry.soft_deleted = True
            return
        self._collect(name)

    def _collect(self, name: str) -> None:
        entry = self.model.pop(name)
        if entry.source is not None:
            source = self.model[entry.source]
            source.forks -= 1
            if source.soft_deleted and source.forks == 0:
                self._collect(entry.source)

    @precondition(lambda self: bool(self.model))
    @rule(pick=st.integers(min_value=0, max_value=100), start=st.integers(min_value=0, max_value=100))
    def read(self, pick: int, start: int) -> None:
        name = sorted(self.model)[pick % len(self.model)]
        entry = self.model[name]
        if entry.soft_deleted:
            return
        boundary = entry.boundaries[start % len(entry.boundaries)]
        position = Offset.parse(boundary).position
        stream = self.call(self.store.head, name)
        found = self.store.read(stream, position)
        got = b"".join(piece for piece in found.pieces if isinstance(piece, bytes))
        assert got == entry.data[position:]
        assert str(found.end) == entry.boundaries[-1]

    @invariant()
    def bookkeeping_matches(self) -> None:
        stats = self.store.statistics()
        assert stats.streams == len(self.model)
        assert stats.soft_deleted == sum(entry.soft_deleted for entry in self.model.values())
        assert stats.bytes == sum(entry.own_bytes for entry in self.model.values())


StoreMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
test_store_matches_the_model = StoreMachine.TestCase
