"""Durable Streams with owners: every user's stream names are a namespace of their own.

Over real Hypercorn servers with tokens, on the memory store and on a real
Redis: alice's ``chat/1`` is not bob's, bob can neither read, append to,
delete nor fork it, and nothing he gets back differs from a name nobody
has. ``durable_access="shared"`` keeps one namespace; runs keep their rule.
In Redis: the key names encode ``(owner, name)`` injectively, and streams
written before owners existed are the shared namespace's.

Real I/O: no mock clock; every test runs under a trio deadline.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from trio_streams.cli._plan import ServePlan
from trio_streams.durable import RedisDurableStore, StreamId
from trio_streams.durable.redis._layout import Keys, owned_tag
from trio_streams.log.redis import RedisStore
from trio_streams.web import TrioStreams

from .redis_support import unique_prefix
from .server_support import Server, running_server

DEADLINE = 20
TOKENS = {"a-secret": "alice", "b-secret": "bob"}
ALICE = {"Authorization": "Bearer a-secret"}
BOB = {"Authorization": "Bearer b-secret"}
TEXT = {"Content-Type": "text/plain"}
JSON = {"Content-Type": "application/json"}


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def stores(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The server options that put runs and Durable Streams in memory, or in Redis."""
    if request.param == "memory":
        return {}
    return {"store": RedisStore(request.getfixturevalue("redis_url"), prefix=unique_prefix())}


def seen(response: httpx.Response) -> tuple[int, bytes, list[tuple[str, str]]]:
    """Everything a client learns from a response (but its date)."""
    headers = sorted((name, value) for name, value in response.headers.items() if name != "date")
    return response.status_code, response.content, headers


async def bobs_view(client: httpx.AsyncClient, url: str) -> list[tuple[int, bytes, list[tuple[str, str]]]]:
    """Bob's answers to every kind of request on ``url`` (none of them creates it)."""
    fork = {**BOB, "Stream-Forked-From": url}
    return [
        seen(await client.get(url, headers=BOB)),
        seen(await client.get(url, params={"offset": "-1", "live": "long-poll"}, headers=BOB)),
        seen(await client.get(url, params={"offset": "-1", "live": "sse"}, headers=BOB)),
        seen(await client.head(url, headers=BOB)),
        seen(await client.post(url, content=b"bob was here", headers={**BOB, **TEXT})),
        seen(await client.post(url, headers={**BOB, "Stream-Closed": "true"})),
        seen(await client.delete(url, headers=BOB)),
        seen(await client.put("/v1/stream/bobs-fork", headers=fork)),
    ]


async def test_each_owner_has_their_own_chat_1(stores: dict[str, Any]) -> None:
    with trio.fail_after(DEADLINE):
        async with (
            running_server(auth=TOKENS, long_poll_timeout=0.5, **stores) as server,
            httpx.AsyncClient(base_url=server.url) as client,
        ):
            assert server.streams.durable_access == "owner", "the default with tokens"
            url = "/v1/stream/chat/1"
            alices = await client.put(url, content=b"alice's secret", headers={**ALICE, **TEXT})
            assert alices.status_code == 201
            bobs = await client.put(url, content=b'[{"from": "bob"}]', headers={**BOB, **JSON})
            assert bobs.status_code == 201, "bob's name is free: alice's stream is not in his namespace"
            assert (await client.post(url, content=b" again", headers={**ALICE, **TEXT})).status_code == 204
            read = await client.get(url, headers=ALICE)
            assert (read.text, read.headers["content-type"]) == ("alice's secret again", "text/plain")
            read = await client.get(url, headers=BOB)
            assert (read.json(), read.headers["content-type"]) == ([{"from": "bob"}], "application/json")
            assert (await client.head(url, headers=BOB)).headers["content-type"] == "application/json"
            assert (await client.delete(url, headers=BOB)).status_code == 204
            assert (await client.get(url, headers=ALICE)).text == "alice's secret again"

            # Bob, with no chat/1 of his own, on alice's: 404 to everything, and
            # exactly what he gets once alice's is gone too (nothing differs).
            with_alices = await bobs_view(client, url)
            assert [status for status, _, _ in with_alices] == [404] * 8
            assert (await client.get(url, headers=ALICE)).text == "alice's secret again", "untouched"
            assert (await client.delete(url, headers=ALICE)).status_code == 204
            assert await bobs_view(client, url) == with_alices


async def test_forks_belong_to_their_creator_who_must_read_the_source(stores: dict[str, Any]) -> None:
    with trio.fail_after(DEADLINE):
        async with (
            running_server(auth=TOKENS, **stores) as server,
            httpx.AsyncClient(base_url=server.url) as client,
        ):
            source = "/v1/stream/src"
            middle = (await client.put(source, content=b"abc", headers={**ALICE, **TEXT})).headers[
                "stream-next-offset"
            ]
            await client.post(source, content=b"def", headers={**ALICE, **TEXT})
            forked_from = {"Stream-Forked-From": source}
            at_middle = {**forked_from, "Stream-Fork-Offset": middle}
            for headers in (forked_from, at_middle):
                refused = await client.put("/v1/stream/mine", headers={**BOB, **headers})
                assert refused.status_code == 404, "bob cannot read alice's src, so cannot fork it"
                assert refused.json()["error"]["code"] == "stream_not_found"
            fork = await client.put("/v1/stream/fork", headers={**ALICE, **at_middle})
            assert fork.status_code == 201
            assert (await client.get("/v1/stream/fork", headers=ALICE)).text == "abc"
            assert (await client.get("/v1/stream/fork", headers=BOB)).status_code == 404, "alice's fork"

            # Bob's own src: his fork of "src" reads his data, not hers.
            await client.put(source, content=b"bob's", headers={**BOB, **TEXT})
            assert (await client.put("/v1/stream/fork", headers={**BOB, **forked_from})).status_code == 201
            assert (await client.get("/v1/stream/fork", headers=BOB)).text == "bob's"
            assert (await client.get("/v1/stream/fork", headers=ALICE)).text == "abc"

            # Soft-deleting alice's source blocks only her name.
            assert (await client.delete(source, headers=ALICE)).status_code == 204
            assert (await client.get(source, headers=ALICE)).status_code == 410
            assert (await client.get(source, headers=BOB)).text == "bob's"
            assert (await client.delete("/v1/stream/fork", headers=ALICE)).status_code == 204
            assert (await client.get(source, headers=ALICE)).status_code == 404, "gone with its fork"
            assert (await client.get("/v1/stream/fork", headers=BOB)).text == "bob's"


async def test_shared_mode_keeps_one_namespace_for_everyone(stores: dict[str, Any]) -> None:
    with trio.fail_after(DEADLINE):
        async with (
            running_server(auth=TOKENS, durable_access="shared", **stores) as server,
            httpx.AsyncClient(base_url=server.url) as client,
        ):
            url = "/v1/stream/public/feed"
            assert (await client.put(url, content=b"news", headers={**ALICE, **TEXT})).status_code == 201
            assert (await client.put(url, headers={**BOB, **JSON})).status_code == 409, "one name, one stream"
            assert (await client.get(url, headers=BOB)).text == "news"
            assert (await client.post(url, content=b"!", headers={**BOB, **TEXT})).status_code == 204
            fork = await client.put("/v1/stream/copy", headers={**BOB, "Stream-Forked-From": url})
            assert fork.status_code == 201
            assert (await client.get("/v1/stream/copy", headers=ALICE)).text == "news!"
            assert (await client.delete("/v1/stream/copy", headers=ALICE)).status_code == 204
            assert (await client.get("/v1/stream/copy", headers=BOB)).status_code == 404


@pytest.mark.parametrize("access", ["owner", "shared"])
async def test_run_streams_keep_the_runs_rule_in_both_modes(access: str) -> None:
    with trio.fail_after(DEADLINE):
        async with (
            running_server(auth=TOKENS, durable_access=access) as server,
            httpx.AsyncClient(base_url=server.url) as client,
        ):
            started = await client.post(
                "/v1/runs", json={"producer": "demo", "input": {"tokens": 3, "rate": 1000}}, headers=ALICE
            )
            url = f"/v1/stream/runs/{started.json()['run_id']}"
            read = await client.get(url, headers=ALICE)
            assert read.status_code == 200
            for response in (
                await client.get(url, headers=BOB),
                await client.head(url, headers=BOB),
                await client.get(url, params={"offset": "-1", "live": "long-poll"}, headers=BOB),
            ):
                assert response.status_code == 404
            unknown = await client.get("/v1/stream/runs/no-such-run", headers=BOB)
            assert (await client.get(url, headers=BOB)).json()["error"]["code"] == unknown.json()["error"][
                "code"
            ]
            assert (await client.get(url)).status_code == 401


# -- the option and the flag -----------------------------------------------------------------


def test_durable_access_option_defaults_and_refusals() -> None:
    assert TrioStreams(auth=TOKENS).durable_access == "owner"
    assert TrioStreams(auth=TOKENS, durable_access="shared").durable_access == "shared"
    assert TrioStreams().durable_access == "shared"
    assert TrioStreams(durable_access="shared").durable_access == "shared"
    with pytest.raises(ValueError, match=r"durable_access must be 'owner' or 'shared', not 'public'"):
        TrioStreams(auth=TOKENS, durable_access="public")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"durable_access='owner' needs auth"):
        TrioStreams(durable_access="owner")


def serve_args(*args: str) -> Any:
    from trio_streams.cli._main import build_parser

    return build_parser().parse_args(["serve", *args])


def test_durable_access_flag() -> None:
    plan = ServePlan.from_args(serve_args("--token", "alice:a-secret"))
    assert "durable_access" not in plan.options
    assert plan.build_app()[1].durable_access == "owner", "the default with tokens"
    plan = ServePlan.from_args(serve_args("--token", "alice:a-secret", "--durable-access", "shared"))
    assert plan.build_app()[1].durable_access == "shared"
    assert ServePlan.from_args(serve_args()).build_app()[1].durable_access == "shared"
    serve = [sys.executable, "-m", "trio_streams", "serve"]
    for args, message in (
        (["--durable-access", "public"], "invalid choice: 'public'"),
        (["--durable-access", "owner"], "--durable-access owner needs --token"),
    ):
        result = subprocess.run([*serve, *args], capture_output=True, text=True, timeout=30)
        assert result.returncode == 2
        (line,) = result.stderr.strip().splitlines()
        assert message in line


# -- Redis: the key names ----------------------------------------------------------------------

#: Owners and names full of the characters an encoding could trip on.
AWKWARD = st.text(alphabet="ab:{}/%u", max_size=6)


def parse_key(key: str, prefix: str) -> tuple[StreamId, str]:
    """The stream and kind (meta, data) of a key: the inverse of Keys, so Keys is injective."""
    rest = key.removeprefix(prefix)
    body, _, kind = rest.rpartition(":")
    if body.startswith("ds:u:{"):
        tag = body.removeprefix("ds:u:{").removesuffix("}")
        owner, _, name = tag.partition("/")
        return StreamId(unquote(owner), unquote(name)), kind
    assert body.startswith("ds:{"), key
    assert body.endswith("}"), key
    return StreamId(None, body.removeprefix("ds:{").removesuffix("}")), kind


def hash_tag(key: str) -> str:
    """What Redis Cluster hashes: the text between the first ``{`` and the next ``}``."""
    start = key.index("{") + 1
    return key[start : key.index("}", start)]


@given(owner=st.none() | AWKWARD, name=AWKWARD)
def test_key_names_encode_owner_and_name_injectively(owner: str | None, name: str) -> None:
    keys = Keys("p:")
    ident = StreamId(owner, name)
    assert parse_key(keys.meta(ident), "p:") == (ident, "meta")
    assert parse_key(keys.data(ident), "p:") == (ident, "data")
    assert hash_tag(keys.meta(ident)) == hash_tag(keys.data(ident)), "one stream, one slot"
    if owner is not None:
        assert hash_tag(keys.meta(ident)) == owned_tag(owner, name), "the whole identity is hashed"
        assert not keys.meta(ident).startswith("p:ds:{"), "never a shared stream's key"


def test_key_names_of_look_alike_streams_differ() -> None:
    keys = Keys("p:")
    look_alikes = [
        StreamId("x/y", "z"),
        StreamId("x", "y/z"),
        StreamId(None, "x/y/z"),
        StreamId(None, "u:{x/y/z}"),
        StreamId("x}", "z"),
        StreamId("x%7D", "z"),
        StreamId("", "x/y/z"),
        StreamId("a:b", "c"),
        StreamId("a", "b:c"),
    ]
    names = [keys.meta(ident) for ident in look_alikes] + [keys.data(ident) for ident in look_alikes]
    assert len(set(names)) == len(names)
    assert keys.meta(StreamId(None, "chat/1")) == "p:ds:{chat/1}:meta", "the layout from before owners"
    assert keys.meta(StreamId("alice", "chat/1")) == "p:ds:u:{alice/chat/1}:meta"


async def redis_keys(server: Server, prefix: str) -> set[str]:
    store = server.streams.durable_store
    assert isinstance(store, RedisDurableStore)
    client = store._require()
    found = [key.decode() async for key in client.scan_iter(match=f"{prefix}ds:*")]
    return {key.removeprefix(prefix) for key in found} - {"ds:notify", "ds:incarnation", "ds:etag-key"}


async def test_look_alike_owners_and_names_stay_apart_in_redis(redis_url: str, prefix: str) -> None:
    # Users "x/y" and "x": a naive "<owner>/<name>" would give both "x/y/z".
    tokens = {"s1": "x/y", "s2": "x", "s3": "a{b}:c"}
    with trio.fail_after(DEADLINE):
        async with (
            running_server(store=RedisStore(redis_url, prefix=prefix), auth=tokens) as server,
            httpx.AsyncClient(base_url=server.url) as client,
        ):
            writes = [("s1", "z", b"one"), ("s2", "y/z", b"two"), ("s3", "z", b"three")]
            for secret, name, body in writes:
                headers = {"Authorization": f"Bearer {secret}", **TEXT}
                assert (
                    await client.put(f"/v1/stream/{name}", content=body, headers=headers)
                ).status_code == 201
            for secret, name, body in writes:
                read = await client.get(f"/v1/stream/{name}", headers={"Authorization": f"Bearer {secret}"})
                assert read.content == body
            assert await redis_keys(server, prefix) == {
                "ds:u:{x%2Fy/z}:meta",
                "ds:u:{x%2Fy/z}:data",
                "ds:u:{x/y/z}:meta",
                "ds:u:{x/y/z}:data",
                "ds:u:{a%7Bb%7D:c/z}:meta",
                "ds:u:{a%7Bb%7D:c/z}:data",
            }


# -- Redis: streams from before owners, and instances --------------------------------------------


async def test_streams_from_before_owners_are_the_shared_namespace(redis_url: str, prefix: str) -> None:
    url = "/v1/stream/chat/1"
    with trio.fail_after(DEADLINE):
        # Before the upgrade: no namespaces (here: no tokens, which writes the same keys).
        async with (
            running_server(store=RedisStore(redis_url, prefix=prefix)) as before,
            httpx.AsyncClient(base_url=before.url) as client,
        ):
            first = (await client.put(url, content=b"old ", headers=TEXT)).headers["stream-next-offset"]
            tail = (await client.post(url, content=b"data", headers=TEXT)).headers["stream-next-offset"]
            assert await redis_keys(before, prefix) == {"ds:{chat/1}:meta", "ds:{chat/1}:data"}

        # Owner mode: in nobody's namespace. Alice's chat/1 is a new stream beside it.
        async with (
            running_server(store=RedisStore(redis_url, prefix=prefix), auth=TOKENS) as owned,
            httpx.AsyncClient(base_url=owned.url) as client,
        ):
            assert (await client.get(url, headers=ALICE)).status_code == 404
            assert (await client.head(url, headers=BOB)).status_code == 404
            assert (await client.put(url, content=b"new", headers={**ALICE, **TEXT})).status_code == 201
            assert (await client.get(url, headers=ALICE)).text == "new"
            assert (await client.delete(url, headers=BOB)).status_code == 404
            assert "ds:{chat/1}:meta" in await redis_keys(owned, prefix), "kept, untouched"

        # Shared mode: as before the upgrade, with the same offsets.
        async with (
            running_server(
                store=RedisStore(redis_url, prefix=prefix), auth=TOKENS, durable_access="shared"
            ) as shared,
            httpx.AsyncClient(base_url=shared.url) as client,
        ):
            read = await client.get(url, headers=BOB)
            assert (read.text, read.headers["stream-next-offset"]) == ("old data", tail)
            assert (await client.get(url, params={"offset": first}, headers=ALICE)).text == "data"


async def test_an_append_on_one_instance_wakes_only_its_owners_reader_on_another(
    redis_url: str, prefix: str
) -> None:
    url = "/v1/stream/chat/1"
    options: dict[str, Any] = {"auth": TOKENS, "long_poll_timeout": 6}
    with trio.fail_after(DEADLINE):
        async with (
            running_server(store=RedisStore(redis_url, prefix=prefix), **options) as a,
            running_server(store=RedisStore(redis_url, prefix=prefix), **options) as b,
            httpx.AsyncClient(base_url=a.url) as on_a,
            httpx.AsyncClient(base_url=b.url) as on_b,
        ):
            store = b.streams.durable_store
            assert isinstance(store, RedisDurableStore)
            tails = {}
            for who, headers in (("alice", ALICE), ("bob", BOB)):
                created = await on_a.put(url, content=who.encode(), headers={**headers, **TEXT})
                tails[who] = created.headers["stream-next-offset"]
            polled: dict[str, httpx.Response] = {}
            answered = {"alice": trio.Event(), "bob": trio.Event()}

            async def poll(who: str, headers: dict[str, str]) -> None:
                params = {"offset": tails[who], "live": "long-poll"}
                polled[who] = await on_b.get(url, params=params, headers=headers)
                answered[who].set()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(poll, "alice", ALICE)
                nursery.start_soon(poll, "bob", BOB)
                await b.streams.durable_live_reads.wait_value(2)
                assert store._notifications.waiting(StreamId("alice", "chat/1")) == 1
                assert store._notifications.waiting(StreamId("bob", "chat/1")) == 1
                appended_at = trio.current_time()
                await on_a.post(url, content=b" news", headers={**ALICE, **TEXT})
                await answered["alice"].wait()
                assert trio.current_time() - appended_at < 3, "woken by the append, not the 6 s timeout"
                assert "bob" not in polled, "bob's reader of his own chat/1 still waits"
                await on_a.post(url, content=b" more", headers={**BOB, **TEXT})
            assert (polled["alice"].status_code, polled["alice"].text) == (200, " news")
            assert (polled["bob"].status_code, polled["bob"].text) == (200, " more")
