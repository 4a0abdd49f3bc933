"""The commit's own Redis connection (``durable/redis/_wire.py``), on a real Redis.

The store sends its COMMIT calls on a connection of its own (RESP2, no
coredis command path) for a plain ``redis://`` URL. These tests check that
the store uses it, that its replies go to the right commit when commits
are pipelined or one is cancelled while waiting, that a connection Redis
killed is replaced before the next commit, that a login (``AUTH``,
``SELECT``) is as the URL says, and the RESP2 reader and URL rules alone.
"""

from __future__ import annotations

import socket
import tempfile
from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing
from coredis.tokens import PureToken

from trio_streams.durable import CreateRequest, DurableStreamError, RedisDurableStore, StreamId
from trio_streams.durable._stream import AppendRequest
from trio_streams.durable.redis._wire import (
    _INCOMPLETE,
    Target,
    WireCommitScript,
    _Error,
    _pack,
    _parse,
    wire_target,
)

from .redis_support import SyncRedis

if TYPE_CHECKING:
    from collections.abc import Iterator

DEADLINE = 20
TEXT = "text/plain"


@pytest.fixture(scope="module")
def acl_redis() -> Iterator[SyncRedis]:
    server = SyncRedis(
        "--user", "alice", "on", ">alicepw", "~*", "&*", "+@all",
        "--user", "bob", "on", ">pw%41x", "~*", "&*", "+@all",
    )  # fmt: skip
    try:
        yield server
    finally:
        server.close()


async def append_through_the_commit_connection(url: str, prefix: str) -> None:
    """Connect to ``url`` (on the commit connection), create a stream, append to it and read it back."""
    async with RedisDurableStore().connect(url, prefix=prefix) as store:
        assert isinstance(store._commit_script(), WireCommitScript)
        await store.create("s", CreateRequest(TEXT))
        await store.append("s", AppendRequest(b"a", TEXT))
        assert await read_all(store, "s") == b"a"


async def read_all(store: RedisDurableStore, name: str) -> bytes:
    source = await store.open_read(name)
    found = await source.read(0)
    return b"".join(piece for piece in found.pieces if isinstance(piece, bytes))


def test_resp2_replies_parse_whole_or_not_at_all() -> None:
    reply = b"*2\r\n$3\r\n1-2\r\n$-1\r\n:7\r\n-NOSCRIPT gone\r\n+OK\r\n"
    value, end = _parse(bytearray(reply), 0)
    assert value == [b"1-2", None]
    value, end = _parse(bytearray(reply), end)
    assert value == 7
    value, end = _parse(bytearray(reply), end)
    assert value == _Error(b"NOSCRIPT gone")
    value, end = _parse(bytearray(reply), end)
    assert (value, end) == (b"OK", len(reply))
    for cut in range(1, 18):  # any prefix of the array (or of its first item) is incomplete
        assert _parse(bytearray(reply[:cut]), 0) == (_INCOMPLETE, 0)
    with pytest.raises(ValueError, match="RESP2"):
        _parse(bytearray(b"?what\r\n"), 0)


def test_commands_are_packed_as_resp_arrays() -> None:
    assert _pack([b"EVALSHA", "ab", b"1", "k", b"\r\n"]) == (
        b"*5\r\n$7\r\nEVALSHA\r\n$2\r\nab\r\n$1\r\n1\r\n$1\r\nk\r\n$2\r\n\r\n\r\n"
    )


def test_only_plain_urls_take_the_commit_connection() -> None:
    assert wire_target("redis://127.0.0.1:7000/3") == Target(host="127.0.0.1", port=7000, db=3)
    # User and password as coredis takes them: as written in the netloc, decoded in the query.
    assert wire_target("redis://u:p%40ss@h") == Target(host="h", username="u", password="p%40ss")
    assert wire_target("redis://h?password=p%40ss") == Target(host="h", password="p@ss")
    assert wire_target("redis://h/?db=2") == Target(host="h", db=2)
    assert wire_target("unix:///tmp/r.sock?db=1&password=x") == Target(path="/tmp/r.sock", password="x", db=1)
    for url in ("rediss://h:6380", "redis://h?ssl_cert_reqs=none", "redis://h/x", "http://h", "redis://h:x"):
        assert wire_target(url) is None, url


@pytest.mark.redis
async def test_commits_go_on_their_own_connection_and_replies_find_their_commit(
    redis_url: str, prefix: str
) -> None:
    with trio.fail_after(DEADLINE):
        async with RedisDurableStore().connect(redis_url, prefix=prefix) as store:
            script = store._commit_script()
            assert isinstance(script, WireCommitScript)
            for k, name in enumerate("abcd"):
                await store.create(name, CreateRequest(TEXT))
                for _ in range(k):  # streams at different versions and tails
                    await store.append(name, AppendRequest(b"-" * 7, TEXT))
            got: dict[str, list[int]] = {name: [] for name in "abcd"}

            async def append(name: str, body: bytes) -> None:
                outcome = await store.append(name, AppendRequest(body, TEXT))
                got[name].append(outcome.next_offset.position)

            # Four streams commit at once: pipelined on the one connection; each
            # append's answer is its own stream's (a reply given to the wrong
            # commit would place a batch at another stream's tail).
            link = script._link
            assert link is not None
            client = store._require()
            async with trio.open_nursery() as nursery:
                await client.client_pause(10_000, PureToken.WRITE)  # Redis holds the commits
                for k, name in enumerate("abcd"):
                    for _ in range(5):
                        nursery.start_soon(append, name, name.encode() * (k + 2))
                await trio.testing.wait_all_tasks_blocked()
                assert len(link.waiting) == 4  # one batch per stream, all sent
                await client.client_unpause()
            for k, name in enumerate("abcd"):
                assert sorted(got[name]) == [7 * k + (k + 2) * j for j in range(1, 6)], name
                assert (await store.head(name)).tail.position == 7 * k + 5 * (k + 2)
            assert script._link is not None
            assert not script._link.waiting


@pytest.mark.redis
async def test_a_commit_cancelled_while_waiting_leaves_the_next_its_own_reply(
    redis_url: str, prefix: str
) -> None:
    with trio.fail_after(DEADLINE):
        async with RedisDurableStore().connect(redis_url, prefix=prefix) as store:
            await store.create("s", CreateRequest(TEXT))
            script = store._commit_script()
            assert isinstance(script, WireCommitScript)
            link = script._link
            assert link is not None
            client = store._require()
            meta_key = store._keys.meta(StreamId(None, "s"))
            async with trio.open_nursery() as nursery:
                # Redis holds the commit (a failing check: reply 0) until unpaused.
                await client.client_pause(10_000, PureToken.WRITE)
                scope = trio.CancelScope()

                async def held() -> None:
                    with scope:
                        await script(keys=[meta_key], args=['{"c": [false], "o": []}'])

                nursery.start_soon(held)
                await trio.testing.wait_all_tasks_blocked()
                assert len(link.waiting) == 1  # sent, waiting for its reply
                scope.cancel()
            await client.client_unpause()
            # The next commit gets its own reply (1), not the dropped one (0).
            assert await script(keys=[meta_key], args=['{"c": [], "o": []}']) == 1
            assert script._link is link
            assert link.lost is None
            await store.append("s", AppendRequest(b"x", TEXT))
            assert await read_all(store, "s") == b"x"


@pytest.mark.redis
async def test_a_commit_connection_redis_killed_is_replaced(redis_url: str, prefix: str) -> None:
    with trio.fail_after(DEADLINE):
        async with RedisDurableStore().connect(redis_url, prefix=prefix) as store:
            await store.create("s", CreateRequest(TEXT))
            await store.append("s", AppendRequest(b"a", TEXT))
            script = store._commit_script()
            assert isinstance(script, WireCommitScript)
            old = script._link
            assert old is not None
            assert isinstance(old.stream, trio.SocketStream)
            host, port = old.stream.socket.getsockname()[:2]
            assert await store._require().client_kill(ip_port=f"{host}:{port}")
            await old.ended.wait()  # its reader saw the connection end
            assert old.lost is not None
            await store.append("s", AppendRequest(b"b", TEXT))
            assert script._link is not old
            assert await read_all(store, "s") == b"ab"


@pytest.mark.redis
async def test_the_commit_connection_logs_in_as_the_url_says(acl_redis: SyncRedis, prefix: str) -> None:
    with trio.fail_after(DEADLINE):
        url = f"redis://alice:alicepw@127.0.0.1:{acl_redis.port}/5"
        async with RedisDurableStore().connect(url, prefix=prefix) as store:
            await store.create("s", CreateRequest(TEXT))
            await store.append("s", AppendRequest(b"a", TEXT))
            assert isinstance(store._commit_script(), WireCommitScript)
            assert await read_all(store, "s") == b"a"
            data_key = store._keys.data(StreamId(None, "s"))
            assert await store._require().xlen(data_key) == 1
        # Nothing in database 0: the commit connection selected 5, as the URL says.
        url0 = f"redis://alice:alicepw@127.0.0.1:{acl_redis.port}/0"
        async with RedisDurableStore().connect(url0, prefix=prefix) as store:
            assert await store._require().xlen(data_key) == 0


@pytest.fixture(scope="module")
def unix_redis() -> Iterator[tuple[SyncRedis, str]]:
    with tempfile.TemporaryDirectory(prefix="trio-streams-sock-") as where:
        path = f"{where}/redis.sock"
        server = SyncRedis("--unixsocket", path, "--unixsocketperm", "700")
        try:
            yield server, path
        finally:
            server.close()


@pytest.mark.redis
async def test_commits_over_a_unix_socket(unix_redis: tuple[SyncRedis, str], prefix: str) -> None:
    _server, path = unix_redis
    with trio.fail_after(DEADLINE):
        async with RedisDurableStore().connect(f"unix://{path}?db=2", prefix=prefix) as store:
            script = store._commit_script()
            assert isinstance(script, WireCommitScript)
            await store.create("s", CreateRequest(TEXT))
            await store.append("s", AppendRequest(b"a", TEXT))
            assert await read_all(store, "s") == b"a"
            assert script._link is not None
            assert isinstance(script._link.stream, trio.SocketStream)
            assert script._link.stream.socket.family == socket.AF_UNIX
            assert await store._require().xlen(store._keys.data(StreamId(None, "s"))) == 1


@pytest.mark.redis
async def test_a_reply_past_the_stream_timeout_is_a_503_and_drops_the_connection(
    redis_url: str, prefix: str
) -> None:
    with trio.fail_after(DEADLINE):
        async with RedisDurableStore().connect(redis_url, prefix=prefix, stream_timeout=0.3) as store:
            await store.create("s", CreateRequest(TEXT))
            script = store._commit_script()
            assert isinstance(script, WireCommitScript)
            old = script._link
            assert old is not None
            client = store._require()
            await client.client_pause(10_000, PureToken.WRITE)  # the commit's reply never comes in time
            try:
                with pytest.raises(DurableStreamError, match="redis is unavailable") as raised:
                    await store.append("s", AppendRequest(b"late", TEXT))
            finally:
                assert store._connection is not None
                with store._connection.health.exempt():  # it fails fast now: unhealthy
                    await client.client_unpause()
            assert raised.value.status == 503
            # Its reply may still come: the connection is dropped, so it cannot answer another commit.
            assert old.lost is not None
            await old.ended.wait()


@pytest.mark.redis
async def test_a_commit_that_cannot_be_sent_is_a_503(redis_url: str, prefix: str) -> None:
    # The socket broke under a link not yet known lost (Redis restarted; its reader
    # has not run since): sending fails -- a 503 like any lost connection, not a 500.
    with trio.fail_after(DEADLINE):
        async with RedisDurableStore().connect(redis_url, prefix=prefix) as store:
            await store.create("s", CreateRequest(TEXT))
            script = store._commit_script()
            assert isinstance(script, WireCommitScript)
            old = script._link
            assert old is not None
            assert isinstance(old.stream, trio.SocketStream)
            sock = old.stream.socket
            with socket.fromfd(sock.fileno(), sock.family, sock.type) as same:
                same.shutdown(socket.SHUT_WR)  # behind trio's back: the next send fails (EPIPE)
            meta_key = store._keys.meta(StreamId(None, "s"))
            with (
                pytest.raises(DurableStreamError, match="redis is unavailable") as raised,
                store._operation(),
            ):
                await script(keys=[meta_key], args=['{"c": [], "o": []}'])
            assert raised.value.status == 503
            assert old.lost is not None
            await store.append("s", AppendRequest(b"a", TEXT))  # on a new connection
            assert script._link is not old
            assert await read_all(store, "s") == b"a"


@pytest.mark.redis
async def test_a_commit_cancelled_before_it_is_sent_keeps_the_connection(redis_url: str, prefix: str) -> None:
    # A commit handed the send lock is cancelled before it runs: nothing of it was sent,
    # so the commits in flight on the connection keep it and get their own replies.
    with trio.fail_after(DEADLINE):
        async with RedisDurableStore().connect(redis_url, prefix=prefix) as store:
            await store.create("s", CreateRequest(TEXT))
            script = store._commit_script()
            assert isinstance(script, WireCommitScript)
            link = script._link
            assert link is not None
            client = store._require()
            meta_key = store._keys.meta(StreamId(None, "s"))
            replies: list[object] = []

            async def sent() -> None:
                replies.append(await script(keys=[meta_key], args=['{"c": [], "o": []}']))

            scope = trio.CancelScope()

            async def queued() -> None:
                with scope:
                    await script(keys=[meta_key], args=['{"c": [], "o": []}'])

            async with trio.open_nursery() as nursery:
                await client.client_pause(10_000, PureToken.WRITE)  # Redis holds the sent commit
                nursery.start_soon(sent)
                await trio.testing.wait_all_tasks_blocked()
                assert len(link.waiting) == 1
                script._sending.acquire_nowait()  # a send under way
                nursery.start_soon(queued)
                await trio.testing.wait_all_tasks_blocked()  # queued for the send lock
                script._sending.release()  # handed to the queued commit...
                scope.cancel()  # ...which is cancelled before it runs
                await trio.testing.wait_all_tasks_blocked()
                assert link.lost is None
                await client.client_unpause()
            assert replies == [1]
            assert script._link is link


@pytest.mark.redis
async def test_a_commit_after_the_store_closed_is_a_503(redis_url: str, prefix: str) -> None:
    # A request still under way when its store closed (past the close grace) commits:
    # a 503, not a RuntimeError from the closed nursery the reader would start in.
    with trio.fail_after(DEADLINE):
        store = RedisDurableStore()
        async with store.connect(redis_url, prefix=prefix):
            await store.create("s", CreateRequest(TEXT))
        with pytest.raises(DurableStreamError) as raised, store._operation():
            await store._commit([], [StreamId(None, "s")], [])
        assert raised.value.status == 503


@pytest.mark.redis
async def test_the_commit_connection_logs_in_with_the_password_coredis_uses(
    acl_redis: SyncRedis, prefix: str
) -> None:
    # coredis takes the URL's user and password as written (no %-decoding): a password
    # with a '%' in it logs the commit connection in as it does the store's client.
    with trio.fail_after(DEADLINE):
        url = f"redis://bob:pw%41x@127.0.0.1:{acl_redis.port}/0"
        await append_through_the_commit_connection(url, prefix)


@pytest.fixture(scope="module")
def nopass_user_redis() -> Iterator[SyncRedis]:
    # The default user may only PING (the fixture's readiness check); carol needs no password.
    server = SyncRedis(
        "--user", "default", "on", "nopass", "resetkeys", "-@all", "+ping",
        "--user", "carol", "on", "nopass", "~*", "&*", "+@all",
    )  # fmt: skip
    try:
        yield server
    finally:
        server.close()


@pytest.mark.redis
async def test_the_commit_connection_logs_in_as_a_user_named_without_a_password(
    nopass_user_redis: SyncRedis, prefix: str
) -> None:
    # redis://carol@host: coredis logs in as carol (HELLO ... AUTH carol ""); so does the
    # commit connection -- not as the default user, whose rights are not carol's.
    with trio.fail_after(DEADLINE):
        url = f"redis://carol@127.0.0.1:{nopass_user_redis.port}/0"
        await append_through_the_commit_connection(url, prefix)
