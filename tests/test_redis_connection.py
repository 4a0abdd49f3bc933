"""The one Redis connection layer, without a Redis: URL and cluster flag, what
it offers Durable Streams, and the web layer reaching stores only through
the store protocol. (Connecting, the layout check and health against real
servers: test_redis_store.py, test_redis_keys.py, test_redis_freeze.py.)"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import trio

import trio_streams.web
from trio_streams.log import MemoryStore
from trio_streams.log.redis import RedisStore
from trio_streams.log.redis._store import RedisConnection, names_a_cluster


def test_names_a_cluster_reads_the_url_flag() -> None:
    assert names_a_cluster("redis://h:1/0?cluster=yes")
    assert names_a_cluster("redis://:pw@h:1/0?cluster=true")
    assert not names_a_cluster("redis://h:1/0?cluster=no")
    assert not names_a_cluster("redis://h:1/0")
    assert not names_a_cluster("redis://h:1/0?cluster=maybe")  # opening it reports the bad flag


def test_the_connection_owns_url_prefix_keys_and_the_cluster_flag() -> None:
    connection = RedisConnection("redis://:secret@h:1/0?cluster=yes", prefix="p:")
    assert connection.url == "redis://:secret@h:1/0"
    assert connection.cluster
    assert connection.keys.meta("r") == "p:run:{r}:meta"
    assert "secret" not in repr(connection)
    single = RedisConnection("redis://h:1/0?cluster=yes", prefix="p:", cluster=False)
    assert not single.cluster, "the argument wins over the URL's flag"
    with pytest.raises(ValueError, match="cluster="):
        RedisConnection("redis://h:1/0?cluster=maybe")


@pytest.mark.parametrize(
    "name", ["ttl_running", "ttl_finished", "ttl_events_finished", "lease_ttl", "idempotency_ttl"]
)
def test_a_store_refuses_a_lifetime_redis_cannot_take(name: str) -> None:
    """Redis takes an expiry in ms in 64 bits: 1e14 days was accepted, and every write failed."""
    with pytest.raises(ValueError, match=rf"^{name} must be at most 3\.1536e\+08 s \(10 years\)"):
        RedisStore("redis://h:1/0", **{name: 3650 * 86400.0 + 1})  # type: ignore[arg-type]
    RedisStore("redis://h:1/0", **{name: 3650 * 86400.0})  # type: ignore[arg-type]  # ten years is fine


async def test_a_connection_not_open_has_no_client() -> None:
    connection = RedisConnection("redis://h:1/0")
    with pytest.raises(trio.ClosedResourceError):
        connection.client()
    with pytest.raises(trio.ClosedResourceError):
        async with connection.binary_client():
            pass


def test_a_redis_store_offers_its_own_connection_to_durable_streams_on_a_cluster_too() -> None:
    store = RedisStore("redis://h:1/0", prefix="p:")
    assert store.durable_storage() is store.connection
    assert store.keys is store.connection.keys
    on_a_cluster = RedisStore("redis://h:1/0?cluster=yes")
    assert on_a_cluster.durable_storage() is on_a_cluster.connection
    assert MemoryStore().durable_storage() is None


def test_web_reaches_stores_only_through_the_store_protocol() -> None:
    """No module of trio_streams.web imports a Redis store module (it used to
    inspect RedisStore and read its URL and prefix)."""
    offenders = []
    for path in Path(trio_streams.web.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            if any(name.split(".")[-1].startswith(("redis", "_redis")) for name in names):
                offenders.append(f"{path.name}: {names}")
    assert offenders == []


def test_serve_puts_durable_streams_beside_the_runs_on_one_redis_and_on_a_cluster(caplog) -> None:
    from trio_streams.cli._main import build_parser
    from trio_streams.cli._plan import ServePlan

    def plan_for(url: str) -> ServePlan:
        return ServePlan.from_args(build_parser().parse_args(["serve", f"--redis-url={url}"]))

    assert plan_for("redis://h:1/0").options["durable_streams"] == "redis"
    assert "stay in memory" not in caplog.text
    assert plan_for("redis://h:1/0?cluster=yes").options["durable_streams"] == "redis"
    assert "stay in memory" not in caplog.text
