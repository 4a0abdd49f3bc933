"""Run keys across instances on one Redis: per-owner key slots, atomic claims,
FIFO, turns handed over, healing, and the layout version.

Two hubs in one process stand for two servers (each its own RedisStore:
connections, instance id, leases). Real Redis: the real clock under trio
deadlines, no mock clock.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import pytest
import trio
import trio.testing
from hypothesis import example, given
from hypothesis import strategies as st

from trio_streams import AtCapacity, KeysUnavailable, RunConflict, RunStatus, open_hub
from trio_streams.durable import RedisDurableStore
from trio_streams.log.redis import LayoutMismatch, RedisStore
from trio_streams.log.redis import _layout as _redis_layout
from trio_streams.log.redis._keys import RedisKeys, encode_key_id
from trio_streams.log.redis._scripts import RELEASE_KEY

from .test_redis_instances import two_hubs

if TYPE_CHECKING:
    from trio_streams import Hub


def redis_of(hub: Hub) -> RedisStore:
    assert isinstance(hub.store, RedisStore)
    return hub.store


def told_to_wait(hub: Hub) -> trio.Event:
    """Set once a queued run on ``hub`` has asked Redis for its key's turn and
    was told to wait. (All tasks blocked is no such sign on real I/O: the
    waiter may still be in its first round trip, and then, on a loaded
    machine, ask only after the holder released: its turn is there at once,
    and the wake-up under test is never needed.)"""
    claims = redis_of(hub)._claims
    where = claims._where
    asked = trio.Event()

    async def recording(*args: Any) -> int:
        fence = await where(*args)
        if fence == 0:
            asked.set()
        return fence

    claims._where = recording  # type: ignore[method-assign,assignment]
    return asked


class Held:
    """A producer that holds its key until released, recording when it ran."""

    def __init__(self, log: list[str] | None = None, name: str = "") -> None:
        self.started = trio.Event()
        self.release = trio.Event()
        self.log = log
        self.name = name
        self.started_at: float | None = None

    async def __call__(self, ctx: Any) -> str:
        self.started_at = trio.current_time()
        if self.log is not None:
            self.log.append(self.name)
        self.started.set()
        await self.release.wait()
        return self.name


owners = st.one_of(st.none(), st.text(max_size=6))
keys_ = st.text(min_size=1, max_size=6)


@given(owners, keys_, owners, keys_)
@example("a.b", "c", "a", "b.c")
@example("a%2E", "b", "a.", "b")
@example(None, "k", "", "k")
@example("-", "k", None, "k")
def test_owner_and_key_are_encoded_injectively_and_safely(o1, k1, o2, k2):
    one, two = encode_key_id(o1, k1), encode_key_id(o2, k2)
    assert (one == two) == ((o1, k1) == (o2, k2))
    for name in (one, two):
        assert not set(name) & set("{}: "), name
    names = RedisKeys("p:")
    assert names.key_slot(o1, k1).endswith("}")
    assert names.key_queue(o1, k1).endswith("}:queue")
    if o1 is not None and o2 is not None:
        assert (names.owner_runs(o1) == names.owner_runs(o2)) == (o1 == o2)


async def test_owners_and_keys_with_separators_never_meet_in_redis(redis_url, prefix):
    with trio.fail_after(20):
        async with two_hubs(redis_url, prefix) as (a, b):
            pairs = [
                ("a:b", "c"),
                ("a", "b:c"),
                ("{x}", "y"),
                ("x", "}y"),
                (None, "k"),
                ("", "k"),
                ("None", "k"),
            ]
            held = [Held() for _ in pairs]
            runs = []
            for i, ((owner, key), producer) in enumerate(zip(pairs, held, strict=True)):
                hub = (a, b)[i % 2]
                run = await hub.start(producer, key=key, owner=owner, on_conflict="reject")
                assert run.status is RunStatus.RUNNING
                runs.append(run)
            store = redis_of(a)
            for (owner, key), run in zip(pairs, runs, strict=True):
                assert await store.key_holder_of(owner, key) == run.id
            for owner in ("a:b", "a", "{x}", "x", ""):
                listed = {info.run_id for info in await store.list_runs(owner=owner)}
                assert listed == {run.id for (o, _k), run in zip(pairs, runs, strict=True) if o == owner}
            for producer in held:
                producer.release.set()
            for i, run in enumerate(runs):
                assert (await (a, b)[i % 2].wait(run.id)).status is RunStatus.DONE


async def test_enqueue_is_fifo_across_instances(redis_url, prefix):
    with trio.fail_after(20):
        async with two_hubs(redis_url, prefix) as (a, b):
            order: list[str] = []
            first = Held(order, "first")
            await a.start(first, key="conv", owner="ann")
            await first.started.wait()
            queued = []
            for i, hub in enumerate((b, a, b, a)):
                producer = Held(order, f"q{i}")
                producer.release.set()
                run = await hub.start(producer, key="conv", owner="ann", on_conflict="enqueue")
                assert run.status is RunStatus.QUEUED
                queued.append((hub, run))
            first.release.set()
            with trio.fail_after(5):
                for hub, run in queued:
                    assert (await hub.wait(run.id)).status is RunStatus.DONE
            assert order == ["first", "q0", "q1", "q2", "q3"]
            assert await redis_of(a).key_holder_of("ann", "conv") is None


async def test_reject_and_the_queue_bound_hold_across_instances(redis_url, prefix):
    with trio.fail_after(20):
        store_a = RedisStore(redis_url, prefix=prefix)
        store_b = RedisStore(redis_url, prefix=prefix)
        async with open_hub(store_a, max_queued_per_key=2) as a, open_hub(store_b, max_queued_per_key=2) as b:
            holder = Held()
            held = await a.start(holder, key="k")
            with pytest.raises(RunConflict) as caught:
                await b.start(Held(), key="k", on_conflict="reject")
            assert caught.value.live_run_id == held.id
            waiting = [await hub.start(Held(), key="k", on_conflict="enqueue") for hub in (b, a)]
            with pytest.raises(AtCapacity):
                await b.start(Held(), key="k", on_conflict="enqueue")
            for hub, run in ((a, held), (b, waiting[0]), (a, waiting[1])):
                await hub.cancel(run.id)
                await hub.wait(run.id)


async def test_the_next_run_elsewhere_starts_when_the_holder_ends_not_at_the_next_poll(redis_url, prefix):
    # A 60 s lease: a waiter asks its key slot every 10 s; the turn must come
    # through the release's message, at once.
    with trio.fail_after(20):
        async with two_hubs(redis_url, prefix, lease_ttl=60) as (a, b):
            holder, nxt = Held(), Held()
            first = await a.start(holder, key="conv")
            await holder.started.wait()
            waits = told_to_wait(b)
            second = await b.start(nxt, key="conv", on_conflict="enqueue")
            assert second.status is RunStatus.QUEUED
            await waits.wait()
            assert second.id in redis_of(b)._claims._turns
            holder.release.set()
            ended = (await a.wait(first.id)).ended_at
            with trio.fail_after(2):
                await nxt.started.wait()
            nxt.release.set()
            info = await b.wait(second.id)
            assert ended is not None
            assert info.started_at is not None
            assert info.started_at >= ended


async def test_a_lost_turn_message_only_delays_the_turn_until_the_waiter_asks(redis_url, prefix):
    # The waiter asks every lease / 6 = 1 s: the bound below (asked + slack for a
    # loaded machine) stays well short of the lease, which would free the turn anyway.
    lease = 6.0
    with trio.fail_after(20):
        async with two_hubs(redis_url, prefix, lease_ttl=lease) as (a, b):
            sent: list[str] = []

            async def lost(run_id: str) -> None:
                await trio.lowlevel.checkpoint()
                sent.append(run_id)  # the instance died before it could announce

            redis_of(a)._claims._announce_turn = lost
            holder, nxt = Held(), Held()
            first = await a.start(holder, key="conv")
            await holder.started.wait()
            waits = told_to_wait(b)
            second = await b.start(nxt, key="conv", on_conflict="enqueue")
            await waits.wait()
            assert second.id in redis_of(b)._claims._turns
            holder.release.set()
            await a.wait(first.id)
            ended = trio.current_time()
            with trio.fail_after(lease / 6 + 1.5):
                await nxt.started.wait()
            assert sent == [second.id]
            assert 0 <= trio.current_time() - ended <= lease / 6 + 1.5
            nxt.release.set()
            await b.wait(second.id)


async def test_a_claim_whose_start_then_fails_is_released(redis_url, prefix):
    with trio.fail_after(20):
        async with (
            two_hubs(redis_url, prefix) as (a, b),
            open_hub(RedisStore(redis_url, prefix=prefix), max_runs=1) as full,
        ):
            busy = Held()
            await full.start(busy)  # the one live run it may hold
            with pytest.raises(AtCapacity):
                await full.start(Held(), key="k")  # claimed, then refused by max_runs
            assert await redis_of(a).key_holder_of(None, "k") is None
            run = await b.start(Held(), key="k", on_conflict="reject")
            assert run.status is RunStatus.RUNNING
            busy.release.set()
            await b.cancel(run.id)
            await b.wait(run.id)


@pytest.mark.parametrize("fate", ["reply_lost", "cancelled", "arrives_late"])
async def test_a_claim_made_but_never_answered_is_withdrawn(redis_url, prefix, monkeypatch, fate):
    with trio.fail_after(20):
        async with two_hubs(redis_url, prefix) as (a, b):
            claims = redis_of(a)._claims
            real = claims._claim_once
            sent: list[Any] = []
            waiting = trio.Event()

            async def made_then_lost(*args: Any) -> Any:
                sent.append(args)
                if fate != "arrives_late":
                    await real(*args)  # the script ran in Redis: the key is claimed
                if fate == "reply_lost":
                    raise ConnectionError("connection lost before the reply")
                waiting.set()
                await trio.sleep_forever()  # the reply never comes: the caller gives up

            monkeypatch.setattr(claims, "_claim_once", made_then_lost)
            if fate == "reply_lost":
                with pytest.raises(KeysUnavailable):
                    await a.start(Held(), key="k")
            else:
                with trio.CancelScope() as scope:
                    async with trio.open_nursery() as nursery:

                        async def cancel_when_blocked() -> None:
                            # Once the claim is made and its reply awaited: all
                            # tasks blocked could also be the claim's own round
                            # trip to Redis on a loaded machine.
                            await waiting.wait()
                            scope.cancel()

                        nursery.start_soon(cancel_when_blocked)
                        await a.start(Held(), key="k")
                assert scope.cancelled_caught
            monkeypatch.undo()
            if fate == "arrives_late":
                # The claim reaches Redis only now, after its withdrawal: refused.
                with pytest.raises(RuntimeError, match="withdrawn"):
                    await real(*sent[0])
            assert await redis_of(a).key_holder_of(None, "k") is None
            assert not await redis_of(a).client.exists([redis_of(a).keys.key_queue(None, "k")])
            run = await b.start(Held(), key="k", on_conflict="reject")
            assert run.status is RunStatus.RUNNING
            await b.cancel(run.id)


async def test_a_finished_holder_whose_release_was_lost_does_not_block_its_key(redis_url, prefix):
    with trio.fail_after(20):
        async with two_hubs(redis_url, prefix) as (a, b):
            done = Held()
            done.release.set()
            old = await a.start(done, key="k")
            await a.wait(old.id)
            store = redis_of(a)
            # As if its instance had died between storing its end and releasing.
            await store.client.hset(store.keys.key_slot(None, "k"), {"run": old.id, "at": "0"})
            run = await b.start(Held(), key="k", on_conflict="reject")
            assert run.status is RunStatus.RUNNING
            assert await store.key_holder_of(None, "k") == run.id
            await b.cancel(run.id)


async def test_a_claim_never_saved_is_tombstoned_then_released_but_only_after_a_lease(redis_url, prefix):
    with trio.fail_after(20):
        async with two_hubs(redis_url, prefix, lease_ttl=5) as (a, b):
            store = redis_of(a)
            seconds = int((await store.client.time()).timestamp())  # Redis's clock
            slot = store.keys.key_slot(None, "k")
            # A claim made a moment ago, its run not saved yet: it holds the key.
            await store.client.hset(slot, {"run": "young", "at": str(seconds * 1000)})
            with pytest.raises(RunConflict):
                await b.start(Held(), key="k", on_conflict="reject")
            # A claim older than a lease, never saved, no lease: its instance died.
            await store.client.hset(slot, {"run": "ghost", "at": str((seconds - 6) * 1000)})
            run = await b.start(Held(), key="k", on_conflict="reject")
            assert run.status is RunStatus.RUNNING
            assert await store.client.hgetall(store.keys.meta("ghost")) == {"status": "dead"}
            assert await store.get_run("ghost") is None
            await b.cancel(run.id)


async def test_a_run_whose_key_went_to_another_run_is_cancelled(redis_url, prefix):
    with trio.fail_after(20):
        store = RedisStore(redis_url, prefix=prefix, lease_ttl=1.2)  # renewed every 0.2 s
        async with open_hub(store) as hub:
            run = await hub.start(Held(), key="k")
            # As if another instance had declared it dead and handed the key on.
            await store.client.hset(store.keys.key_slot(None, "k"), {"run": "successor"})
            with trio.fail_after(3):  # within a renewal or two
                info = await hub.wait(run.id)
            assert (info.status, info.reason) == (RunStatus.CANCELLED, "key_lost")


async def test_interrupting_a_dead_owners_run_waits_until_it_is_declared_dead(redis_url, prefix):
    lease = 1.5
    with trio.fail_after(40):
        owner = await trio.lowlevel.open_process(
            [sys.executable, "-m", "tests.redis_owner", redis_url, prefix, str(lease)], stdout=subprocess.PIPE
        )
        try:
            assert owner.stdout is not None
            line = b""
            while not line.endswith(b"\n"):
                chunk = await owner.stdout.receive_some(100)
                assert chunk, "the owner process exited early"
                line += chunk
            old_id = line.decode().strip()
            owner.send_signal(signal.SIGKILL)
            await owner.wait()
            async with open_hub(RedisStore(redis_url, prefix=prefix, lease_ttl=lease)) as hub:
                new = Held()
                new.release.set()
                run = await hub.start(new, key="endless", owner="owner", on_conflict="interrupt")
                assert run.status is RunStatus.QUEUED
                info = await hub.wait(run.id)
                old = await hub.get_info(old_id)
            assert old.status is RunStatus.DEAD
            assert old.error is not None
            assert old.error["code"] == "owner_lost"
            assert info.status is RunStatus.DONE
            assert old.ended_at is not None
            assert info.started_at is not None
            assert info.started_at >= old.ended_at
        finally:
            if owner.returncode is None:
                owner.kill()
                await owner.wait()


# -- the layout version -------------------------------------------------------------------


async def test_a_fresh_prefix_gets_this_layout(redis_url, prefix):
    with trio.fail_after(10):
        store = RedisStore(redis_url, prefix=prefix)
        async with open_hub(store):
            assert await store.client.get(f"{prefix}layout") == str(_redis_layout.LAYOUT_VERSION)


@pytest.mark.parametrize(
    ("setup", "found"),
    [
        ({"layout": "3"}, "3"),
        ({"runs": "zset"}, "1"),
        ({"running": "zset"}, "1"),
        ({"control": "stream"}, "1"),
        ({"ds:notify": "stream"}, "1"),
    ],
)
async def test_an_instance_refuses_to_start_on_another_layout(redis_url, prefix, setup, found):
    with trio.fail_after(10):
        helper = RedisStore(redis_url, prefix=prefix + "x")
        async with open_hub(helper):
            for name, kind in setup.items():
                if kind == "zset":
                    await helper.client.zadd(prefix + name, {"old-run": 1.0})
                elif kind == "stream":
                    await helper.client.xadd(prefix + name, {"op": "cancel"})
                else:
                    await helper.client.set(prefix + name, kind)
        with pytest.raises(LayoutMismatch) as caught:
            async with open_hub(RedisStore(redis_url, prefix=prefix)):
                pass
        message = str(caught.value)
        assert f"layout {found}" in message
        assert f"layout {_redis_layout.LAYOUT_VERSION}" in message
        assert "new prefix" in message


async def test_a_prefix_of_layout_1_is_adopted_as_the_docs_say(redis_url, prefix):
    with trio.fail_after(10):
        helper = RedisStore(redis_url, prefix=prefix + "x")
        async with open_hub(helper):
            client = helper.client
            # What a release before layout 2 left: an index and a key holder.
            await client.zadd(f"{prefix}runs", {"old-run": 1.0})
            await client.set(f"{prefix}key:conv", "old-run")
            with pytest.raises(LayoutMismatch):
                async with open_hub(RedisStore(redis_url, prefix=prefix)):
                    pass
            # docs/redis.md, "Upgrades": every old instance stopped, then
            async for name in client.scan_iter(match=f"{prefix}key:*"):
                await client.delete([name])
            await client.set(f"{prefix}layout", "2")
            async with open_hub(RedisStore(redis_url, prefix=prefix)) as hub:
                run = await hub.start(Held(), key="conv", on_conflict="reject")
                assert run.status is RunStatus.RUNNING
                await hub.cancel(run.id)


async def test_an_instance_of_another_layout_refuses_to_run_beside_this_one(redis_url, prefix, monkeypatch):
    with trio.fail_after(10):
        async with open_hub(RedisStore(redis_url, prefix=prefix)) as hub:
            await hub.start(Held(), key="k")
            monkeypatch.setattr(_redis_layout, "LAYOUT_VERSION", 3)  # the next release
            with pytest.raises(
                LayoutMismatch, match="holds data of layout 2; this trio-streams uses layout 3"
            ):
                async with open_hub(RedisStore(redis_url, prefix=prefix)):
                    pass
            monkeypatch.undo()
            hub._close()


def test_serve_on_a_prefix_of_another_layout_exits_with_one_clear_line(redis_server, prefix):
    subprocess.run(
        [find_cli(), "-p", str(redis_server.port), "ZADD", f"{prefix}runs", "1", "old-run"],
        check=True,
        capture_output=True,
        timeout=10,
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "trio_streams",
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--redis-url",
            redis_server.url,
            "--redis-prefix",
            prefix,
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("trio-streams serve: error: startup failed: redis prefix")
    assert "layout 1" in last
    assert "layout 2" in last
    assert "Traceback" not in result.stderr


def find_cli() -> str:
    from trio_streams.log.redis._server import find_redis_binary

    return str(find_redis_binary("redis-cli"))


async def test_release_script_hands_the_key_to_the_queue_head_atomically(redis_url, prefix):
    with trio.fail_after(10):
        store = RedisStore(redis_url, prefix=prefix)
        async with open_hub(store):
            client, keys = store.client, store.keys
            for run_id in ("h", "q1", "q2"):
                await store.claim_key("o", "k", run_id, "enqueue", 16)
            release = client.register_script(RELEASE_KEY)
            slot = [keys.key_slot("o", "k"), keys.key_queue("o", "k")]
            assert await release(keys=[*slot, "x"], args=["q2", 1000, 0]) == [0, 1]  # left the queue
            reply: list[Any] = await release(keys=[*slot, "x"], args=["h", 1000, 0])
            assert reply[:2] == [1, "q1"]
            assert int(reply[2]) == 2  # a new holder, a new fence
            assert await release(keys=[*slot, "x"], args=["h", 1000, 0]) == [0, 0]  # twice: nothing
            assert await store.key_holder_of("o", "k") == "q1"
            assert await release(keys=[*slot, "x"], args=["q1", 1000, 0]) == [1]
            # A withdrawn claim that arrives late is refused.
            await store.release_key("o", "k", "late", withdraw=True)
            with pytest.raises(RuntimeError, match="withdrawn"):
                await store.claim_key("o", "k", "late", "enqueue", 16)
            assert await store.key_holder_of("o", "k") is None
            assert await store.key_holder_of("o", "k") is None


@pytest.mark.parametrize(("setup", "found"), [("3", "3"), (None, "1")], ids=["another-version", "layout-1"])
async def test_a_durable_streams_store_alone_checks_the_layout_too(redis_url, prefix, setup, found):
    # A RedisDurableStore used without a RedisStore beside it (an app mounting
    # only Durable Streams) reads and claims the same version key.
    with trio.fail_after(10):
        async with RedisDurableStore().connect(redis_url, prefix=prefix + "fresh:"):
            pass
        helper = RedisStore(redis_url, prefix=prefix + "x")
        async with open_hub(helper):
            assert await helper.client.get(prefix + "fresh:layout") == str(_redis_layout.LAYOUT_VERSION)
            if setup is None:
                await helper.client.xadd(prefix + "ds:notify", {"n": "chat/1"})
            else:
                await helper.client.set(prefix + "layout", setup)
        with pytest.raises(LayoutMismatch, match=f"layout {found}"):
            async with RedisDurableStore().connect(redis_url, prefix=prefix):
                pass
