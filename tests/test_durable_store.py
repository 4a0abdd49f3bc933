"""The Durable Streams store on its own: semantics, lifetimes and waits on the autojump clock."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trio_streams.durable import (
    AppendRequest,
    CreateRequest,
    DurableStreamError,
    DurableStreamStore,
    ForkSpec,
    Offset,
)
from trio_streams.durable._headers import ExpiresAt
from trio_streams.durable._producers import ProducerClaim

TEXT = "text/plain"
JSON = "application/json"


def text(store: DurableStreamStore, name: str, position: int = 0) -> bytes:
    found = store.read(store.head(name), position)
    return b"".join(piece for piece in found.pieces if isinstance(piece, bytes))


def messages(store: DurableStreamStore, name: str, position: int = 0) -> list[bytes]:
    found = store.read(store.head(name), position)
    return [message for piece in found.pieces if isinstance(piece, tuple) for message in piece]


def refused(status: int, code: str | None = None) -> pytest.RaisesExc[DurableStreamError]:
    def check(error: DurableStreamError) -> bool:
        return error.status == status and (code is None or error.code == code)

    return pytest.raises(DurableStreamError, check=check)


async def test_offsets_sort_as_strings_and_strictly_increase():
    store = DurableStreamStore()
    stream, created = store.create("s", CreateRequest(TEXT, body=b"a"))
    assert created
    offsets = [str(stream.tail)]
    for size in (1, 12, 3, 1000):
        outcome = store.append("s", AppendRequest(b"x" * size, TEXT))
        offsets.append(str(outcome.next_offset))
    assert offsets == sorted(offsets)
    assert len(set(offsets)) == len(offsets)
    assert offsets[0] == "0000000000000001_0000000000000001"
    assert Offset.parse(offsets[-1]) == Offset(5, 1017)
    # A read may start anywhere; a boundary reads exactly the later appends.
    assert text(store, "s", 2) == b"x" * (12 + 3 + 1000)
    assert text(store, "s", 1) == b"x" * (1 + 12 + 3 + 1000)
    for bad in ("", "-1", "now", "1_2", "0000000000000000_000000000000000x", "0" * 16 + "," + "0" * 16):
        with pytest.raises(ValueError, match="not an offset"):
            Offset.parse(bad)


async def test_reads_stop_after_the_append_that_passes_the_limit():
    store = DurableStreamStore(max_read_bytes=10)
    store.create("s", CreateRequest(TEXT))
    for chunk in (b"aaaa", b"bbbbbbbb", b"cc"):
        store.append("s", AppendRequest(chunk, TEXT))
    stream = store.head("s")
    first = store.read(stream, 0)
    assert first.pieces == [b"aaaa", b"bbbbbbbb"]
    assert first.end == Offset(2, 12)
    second = store.read(stream, first.end.position)
    assert second.pieces == [b"cc"]
    assert second.end == stream.tail
    # At the tail: nothing, and the tail itself.
    assert store.read(stream, stream.tail.position).pieces == []
    with refused(400, "offset_beyond_tail"):
        store.read(stream, stream.tail.position + 1)


async def test_json_mode_keeps_message_boundaries_and_flattens_one_level():
    store = DurableStreamStore()
    store.create("j", CreateRequest(JSON, body=b"[]"))
    assert store.head("j").tail == Offset(0, 0)
    store.append("j", AppendRequest(b'{"a": 1}', JSON))
    store.append("j", AppendRequest(b"[[1, 2], [3, 4]]", JSON))
    store.append("j", AppendRequest(b'[[["deep"]]]', JSON))
    store.append("j", AppendRequest(b'"line\\nbreak"', JSON))
    assert messages(store, "j") == [b'{"a":1}', b"[1,2]", b"[3,4]", b'[["deep"]]', b'"line\\nbreak"']
    assert store.head("j").tail == Offset(4, 5)
    with refused(400, "empty_json_array"):
        store.append("j", AppendRequest(b"[]", JSON))
    for bad in (b"{ nope }", b"NaN", b"[1,", b"\xff"):
        with refused(400, "invalid_json"):
            store.append("j", AppendRequest(bad, JSON))
    assert store.head("j").tail == Offset(4, 5), "refused appends change nothing"


async def test_append_checks_in_the_protocols_order():
    store = DurableStreamStore()
    with refused(404):
        store.append("missing", AppendRequest(b"x", TEXT))
    store.create("s", CreateRequest(TEXT))
    with refused(400, "empty_body"):
        store.append("s", AppendRequest(b"", TEXT))
    with refused(400, "missing_content_type"):
        store.append("s", AppendRequest(b"x", None))
    with refused(409, "content_type_mismatch"):
        store.append("s", AppendRequest(b"{}", JSON))
    store.append("s", AppendRequest(b"1", TEXT, stream_seq="09"))
    store.append("s", AppendRequest(b"2", TEXT, stream_seq="10"))
    with refused(409, "stream_seq_regression"):
        store.append("s", AppendRequest(b"3", TEXT, stream_seq="10"))
    with refused(409, "stream_seq_regression"):
        store.append("s", AppendRequest(b"3", TEXT, stream_seq="1"))  # byte order: "1" < "10"
    store.append("s", AppendRequest(b"3", TEXT, stream_seq="9"))  # byte order: "9" > "10"
    assert text(store, "s") == b"123"


async def test_idempotent_producers():
    store = DurableStreamStore()
    store.create("s", CreateRequest(TEXT))

    def send(producer: str, epoch: int, seq: int, body: bytes = b"x") -> int:
        return store.append(
            "s", AppendRequest(body, TEXT, producer=ProducerClaim(producer, epoch, seq))
        ).status

    assert send("p", 0, 0, b"a") == 200
    assert send("p", 0, 1, b"b") == 200
    duplicate = store.append("s", AppendRequest(b"a", TEXT, producer=ProducerClaim("p", 0, 0)))
    assert (duplicate.status, duplicate.producer_seq) == (204, 1), "a retry reports the highest accepted seq"
    with refused(409, "producer_seq_gap") as gap:
        send("p", 0, 3)
    assert gap.value.headers == {"Producer-Expected-Seq": "2", "Producer-Received-Seq": "3"}
    with refused(400, "producer_epoch_seq"):
        send("p", 1, 5)
    assert send("p", 1, 0, b"c") == 200
    with refused(403, "producer_epoch_stale") as stale:
        send("p", 0, 2)
    assert stale.value.headers == {"Producer-Epoch": "1"}
    assert send("q", 0, 0, b"d") == 200, "producers are independent"
    with refused(409, "producer_seq_gap"):
        send("r", 0, 1)
    assert text(store, "s") == b"abcd"


async def test_close_is_atomic_idempotent_and_final():
    store = DurableStreamStore()
    store.create("s", CreateRequest(TEXT, body=b"first"))
    closing = ProducerClaim("p", 0, 0)
    outcome = store.append("s", AppendRequest(b" last", TEXT, close=True, producer=closing))
    assert (outcome.status, outcome.closed) == (200, True)
    tail = outcome.next_offset
    # Retrying the closing append deduplicates, whatever its body.
    retry = store.append("s", AppendRequest(b"other", TEXT, close=True, producer=closing))
    assert (retry.status, retry.closed, retry.next_offset) == (204, True, tail)
    # Close-only again: fine, with any (or no) Content-Type.
    assert store.append("s", AppendRequest(b"", None, close=True)).status == 204
    with refused(409, "stream_closed") as closed:
        store.append("s", AppendRequest(b"more", TEXT))
    assert closed.value.headers == {"Stream-Closed": "true", "Stream-Next-Offset": str(tail)}
    with refused(409, "stream_closed"):
        store.append("s", AppendRequest(b"more", TEXT, close=True, producer=ProducerClaim("p", 0, 1)))
    assert text(store, "s") == b"first last"
    # Re-creating must match the closed state too.
    assert store.create("s", CreateRequest(TEXT, closed=True)) == (store.head("s"), False)
    with refused(409, "stream_exists"):
        store.create("s", CreateRequest(TEXT))


async def test_sliding_ttl_renews_on_reads_and_writes_but_not_head(autojump_clock: trio.testing.MockClock):
    store = DurableStreamStore()
    store.create("s", CreateRequest(TEXT, ttl=10))
    await trio.sleep(9)
    store.head("s")  # metadata only
    store.append("s", AppendRequest(b"x", TEXT))  # renews: expires at 19
    await trio.sleep(9)
    store.open("s")  # a read renews: expires at 28
    await trio.sleep(9.5)
    assert store.head("s").deadline == 28.0
    await trio.sleep(0.5)
    assert trio.current_time() == 28.0
    with refused(404):
        store.head("s")
    # The name is free again.
    assert store.create("s", CreateRequest(JSON))[1]


async def test_expires_at_is_absolute_and_never_renewed(autojump_clock: trio.testing.MockClock):
    wall = 1_000_000.0
    store = DurableStreamStore(wall_clock=lambda: wall + trio.current_time())
    expires = ExpiresAt("1970-01-12T13:47:10Z", wall + 30)
    store.create("s", CreateRequest(TEXT, expires_at=expires))
    await trio.sleep(20)
    store.append("s", AppendRequest(b"x", TEXT))
    store.open("s")
    await trio.sleep(9.5)
    assert store.head("s").deadline == 30.0
    await trio.sleep(0.5)
    assert trio.current_time() == 30.0
    with refused(404):
        store.open("s")
    with refused(400, "ttl_and_expires_at"):
        store.create("t", CreateRequest(TEXT, ttl=5, expires_at=expires))


async def test_expired_streams_are_swept_by_later_writes(autojump_clock: trio.testing.MockClock):
    store = DurableStreamStore()
    for index in range(5):
        store.create(f"s{index}", CreateRequest(TEXT, ttl=1, body=b"abc"))
    assert store.statistics().bytes == 15
    await trio.sleep(2)
    store.create("other", CreateRequest(TEXT))
    stats = store.statistics()
    assert (stats.streams, stats.bytes) == (1, 0)


async def test_forks_stitch_source_data_and_soft_delete_cascades():
    store = DurableStreamStore()
    store.create("src", CreateRequest(TEXT, body=b"A"))
    store.append("src", AppendRequest(b"B", TEXT))
    store.create("f1", CreateRequest(None, fork=ForkSpec("src", None, 0)))
    store.append("src", AppendRequest(b"later", TEXT))
    store.append("f1", AppendRequest(b"C", TEXT))
    store.create("f2", CreateRequest(TEXT, fork=ForkSpec("f1", Offset(1, 1), 0)))
    assert (text(store, "src"), text(store, "f1"), text(store, "f2")) == (b"ABlater", b"ABC", b"A")
    # Same offsets as the source up to the fork point, then the fork's own.
    assert str(store.head("f1").tail) == "0000000000000003_0000000000000003"
    assert text(store, "f1", 2) == b"C"
    # Idempotent re-create, and the conflicts.
    assert not store.create("f1", CreateRequest(None, fork=ForkSpec("src", None, 0)))[1]
    with refused(409, "stream_exists"):
        store.create("f1", CreateRequest(None, fork=ForkSpec("src", Offset(0, 0), 0)))
    with refused(409, "content_type_mismatch"):
        store.create("f3", CreateRequest(JSON, fork=ForkSpec("src", None, 0)))
    with refused(404):
        store.create("f3", CreateRequest(None, fork=ForkSpec("nowhere", None, 0)))
    with refused(400, "fork_offset_beyond_tail"):
        store.create("f3", CreateRequest(None, fork=ForkSpec("src", Offset(9, 9), 0)))
    # Deleting a source that forks read: 410 to clients, name blocked, data kept.
    store.delete("src")
    with refused(410):
        store.head("src")
    with refused(410):
        store.delete("src")
    with refused(409, "stream_soft_deleted"):
        store.create("src", CreateRequest(TEXT))
    with refused(409, "source_soft_deleted"):
        store.create("f3", CreateRequest(None, fork=ForkSpec("src", None, 0)))
    store.delete("f1")  # f2 still reads f1's data
    assert text(store, "f2") == b"A"
    assert store.statistics().soft_deleted == 2
    store.delete("f2")  # the last fork: the chain is collected
    stats = store.statistics()
    assert (stats.streams, stats.soft_deleted, stats.bytes) == (0, 0, 0)


async def test_sub_offsets_copy_part_of_one_append():
    store = DurableStreamStore()
    store.create("bin", CreateRequest(TEXT, body=b"hello"))
    store.create("json", CreateRequest(JSON, body=b'[{"a":1},{"b":2},{"c":3}]'))
    store.create("empty", CreateRequest(TEXT))
    start = Offset(0, 0)
    store.create("b3", CreateRequest(None, fork=ForkSpec("bin", start, 3), body=b"XY"))
    assert text(store, "b3") == b"helXY"
    store.create("j2", CreateRequest(None, fork=ForkSpec("json", start, 2)))
    assert messages(store, "j2") == [b'{"a":1}', b'{"b":2}']
    store.create("b3b", CreateRequest(None, fork=ForkSpec("b3", start, 2)))
    assert text(store, "b3b") == b"he", "sub-offsets compose along a chain"
    with refused(400, "fork_sub_offset_overshoot"):
        store.create("x", CreateRequest(None, fork=ForkSpec("bin", start, 6)))
    with refused(400, "fork_sub_offset_overshoot"):
        store.create("x", CreateRequest(None, fork=ForkSpec("empty", start, 1)))
    # Producer state is never inherited.
    store.append("json", AppendRequest(b"[1]", JSON, producer=ProducerClaim("p", 0, 0)))
    store.create("j1", CreateRequest(None, fork=ForkSpec("json", start, 1)))
    assert store.append("j1", AppendRequest(b"[9]", JSON, producer=ProducerClaim("p", 0, 0))).status == 200
    assert messages(store, "j1") == [b'{"a":1}', b"9"]


async def test_store_bounds():
    store = DurableStreamStore(max_streams=2, max_bytes=10)
    store.create("a", CreateRequest(TEXT, body=b"12345"))
    store.create("b", CreateRequest(TEXT))
    with refused(507, "store_full"):
        store.create("c", CreateRequest(TEXT))
    with refused(507, "store_full"):
        store.append("b", AppendRequest(b"123456", TEXT))
    store.append("b", AppendRequest(b"12345", TEXT))
    store.delete("a")
    store.append("b", AppendRequest(b"12345", TEXT))
    assert store.statistics().bytes == 10


async def test_wait_is_bounded_woken_by_appends_and_cancellable(autojump_clock: trio.testing.MockClock):
    store = DurableStreamStore()
    stream, _ = store.create("s", CreateRequest(TEXT))
    # Nothing arrives: the wait ends exactly at its deadline.
    await store.wait(stream, 0, deadline=2.5)
    assert trio.current_time() == 2.5
    woke_at: list[float] = []

    async def reader() -> None:
        await store.wait(stream, 0, deadline=100)
        woke_at.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await trio.sleep(1)
        store.append("s", AppendRequest(b"x", TEXT))
    assert woke_at == [3.5]
    # Data already past the position: no wait at all.
    await store.wait(stream, 0, deadline=1000)
    assert trio.current_time() == 3.5
    # Cancelled while parked: the wait ends, the stream is untouched.
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:

            async def cancel_later() -> None:
                await trio.testing.wait_all_tasks_blocked()
                scope.cancel()

            nursery.start_soon(cancel_later)
            await store.wait(stream, 1, deadline=1000)
    assert scope.cancelled_caught
    assert trio.current_time() == 3.5
    assert stream.tail == Offset(1, 1)
    # Cancelled before it starts: it raises at its first checkpoint, without waiting.
    with trio.CancelScope() as scope:
        scope.cancel()
        await store.wait(stream, 0, deadline=1000)
    assert scope.cancelled_caught
    assert trio.current_time() == 3.5
    # Shutdown: parked waits return, later ones do not wait; until resumed.
    async with trio.open_nursery() as nursery:
        nursery.start_soon(store.wait, stream, 1, 1000.0)
        await trio.testing.wait_all_tasks_blocked()
        store.end_live_reads()
    await store.wait(stream, 1, deadline=1000)
    assert trio.current_time() == 3.5
    store.resume_live_reads()
    await store.wait(stream, 1, deadline=4.5)
    assert trio.current_time() == 4.5
    # A close or a delete ends a wait too.
    async with trio.open_nursery() as nursery:
        nursery.start_soon(store.wait, stream, 1, 1000.0)
        await trio.testing.wait_all_tasks_blocked()
        store.delete("s")
    assert trio.current_time() == 4.5
    assert not store.holds(stream)
