"""The user-facing pytest plugin: fixtures, scripted producers, assertions."""

from __future__ import annotations

import re
import time

import pytest
import trio

from trio_streams import Event, Gap
from trio_streams.testing import assert_well_formed, virtual_deadline

#: Whatever entry point this environment's metadata has (an editable install may
#: predate the opt-in), these tests say what loads: `no:trio_streams` blocks it.
NO_ENTRY_POINT = ("-p", "no:trio_streams")
#: What an installed trio_streams' pytest11 entry point loads (pyproject.toml).
ENTRY_POINT = (*NO_ENTRY_POINT, "-p", "trio_streams._pytest_entry_point")


def test_plugin_gives_a_mock_clock_hub(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ntrio_mode = true\n")
    pytester.makeconftest('pytest_plugins = ["trio_streams.testing"]')
    pytester.makepyfile(
        """
        import pytest, trio
        from trio_streams.testing import Gate, Script, collect, types_of

        @pytest.fixture
        def stream_hub_options():
            return {"grace_period": 60.0}

        async def test_abort_path(stream_hub, autojump_clock):
            gate = Gate()
            run = await stream_hub.start(Script().emit_many(3, every=1.0).wait(gate))
            await gate.reached()
            await trio.sleep(177)
            await stream_hub.cancel(run.id)
            info = await stream_hub.wait(run.id)
            assert (info.status, info.result, info.ended_at) == ("cancelled", "t0t1t2", 179.0)
            assert stream_hub.config.grace_period == 60.0
            assert types_of(await collect(stream_hub, run.id))[-1] == "cancelled"

        async def test_forgot_the_clock(stream_hub):
            pass
        """
    )
    result = pytester.runpytest("-q", *NO_ENTRY_POINT)  # opted in by the conftest
    result.assert_outcomes(passed=1, failed=1)  # pytest-trio reports fixture errors as failures
    result.stdout.fnmatch_lines(["*must also take the autojump_clock fixture*"])


def test_a_lost_wake_up_fails_fast_with_where_it_hung(pytester: pytest.Pytester) -> None:
    """A regression that would hang a user's mock-clock test forever fails it
    in real milliseconds with ``TooSlowError``, saying where the test waits."""
    pytester.makeini("[pytest]\ntrio_mode = true\n")
    pytester.makepyfile(
        """
        import pytest, trio
        from trio_streams.log._wakeup import Changed
        from trio_streams.testing import Gate, Script

        async def test_lost_wake_up(stream_hub, autojump_clock, monkeypatch):
            gate = Gate()
            run = await stream_hub.start(Script().emit().wait(gate).emit())
            await gate.reached()
            async with stream_hub.subscribe(run.id) as subscription:
                assert [e.seq for e in await subscription.receive_batch()] == [1]
                # The regression: a publish no longer wakes its parked readers.
                monkeypatch.setattr(Changed, "notify", lambda self: None)
                gate.release()
                await subscription.receive_batch()  # the reader that is never woken

        async def test_a_long_test_within_the_default(stream_hub, autojump_clock):
            await trio.sleep(86_000)

        async def test_past_the_default(stream_hub, autojump_clock):
            await trio.sleep(86_401)

        @pytest.mark.parametrize("stream_hub_deadline", [3 * 86_400.0])
        async def test_longer_for_one_test(stream_hub, autojump_clock):
            await trio.sleep(2 * 86_400)

        @pytest.mark.parametrize("stream_hub_deadline", [None])
        async def test_no_limit(stream_hub, autojump_clock):
            await trio.sleep(30 * 86_400)
        """
    )
    # In a subprocess with a real-time limit: if the deadline did not work the
    # lost wake-up would hang it, and TimeoutExpired fails this test.
    started = time.monotonic()
    result = pytester.runpytest_subprocess(
        *("-q", "-p", "no:timeout", "-p", "no:cacheprovider"),
        *(*NO_ENTRY_POINT, "-p", "trio_streams.testing"),
        timeout=30,
    )
    elapsed = time.monotonic() - started
    result.assert_outcomes(passed=3, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*_ test_lost_wake_up _*",
            "*trio.TooSlowError: still running after 86400.0 s of trio time (stream_hub_deadline*",
            "*_ test_past_the_default _*",
            "*trio.TooSlowError: still running after 86400.0 s of trio time (stream_hub_deadline*",
            "*FAILED*::test_lost_wake_up*",
            "*FAILED*::test_past_the_default*",
        ]
    )
    # Where it hung: the test's own line, then the hub's parking call.
    output = result.stdout.str()
    hung = output[output.index("""task "<test 'test_lost_wake_up'>":""") :]
    assert re.search(r"in test_lost_wake_up\n[ |]*await subscription.receive_batch\(\)  # the reader", hung)
    assert re.search(r"in receive_batch\n[ |]*await run._wakeup.wait\(\)", hung)
    assert elapsed < 30, elapsed  # seconds of real time, not a day


async def test_virtual_deadline_keeps_what_the_block_raised_and_a_cancel_from_outside(
    autojump_clock,
) -> None:
    error = KeyError("mine")
    with pytest.raises(KeyError) as caught:
        async with virtual_deadline(10):
            raise error
    assert caught.value is error
    assert caught.value.__context__ is None  # no ExceptionGroup in its story
    with trio.move_on_after(5) as outer:
        async with virtual_deadline(10):
            await trio.sleep_forever()
    assert outer.cancelled_caught
    assert trio.current_time() == 5
    with pytest.raises(trio.TooSlowError, match=r"^still running after 10 s of trio time \(my limit\)"):
        async with virtual_deadline(10, what="my limit"):
            await trio.sleep_forever()
    assert trio.current_time() == 15
    with pytest.raises(ValueError, match="positive"):
        async with virtual_deadline(0):
            pass


def ev(seq: int, type: str = "token") -> Event:
    return Event.create(seq, type, None, 0.0)


def test_assert_well_formed_accepts_good_streams() -> None:
    assert_well_formed([ev(1), ev(2), ev(3, "done")])
    assert_well_formed([ev(5), Gap(missed=3, first_available=9), ev(9), ev(10, "cancelled")], after=4)


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ([ev(1), ev(3), ev(4, "done")], "expected seq 2"),
        ([ev(1), ev(1), ev(2, "done")], "expected seq 2"),
        ([ev(1), ev(2)], "exactly one terminal"),
        ([ev(1, "done"), ev(2)], "not last"),
        ([ev(1), Gap(missed=2, first_available=5), ev(5, "done")], "does not follow"),
    ],
)
def test_assert_well_formed_catches_broken_streams(items: list[object], message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        assert_well_formed(items)  # type: ignore[arg-type]


async def test_the_readme_example(stream_hub, autojump_clock) -> None:
    # Kept identical to the README's "Test your app's abort paths" snippet.
    import trio

    from trio_streams.testing import Gate, Script, collect, types_of

    gate = Gate()
    run = await stream_hub.start(Script().emit_many(3, every=1.0).wait(gate))
    await gate.reached()  # the producer is blocked now
    await stream_hub.cancel(run.id)
    info = await stream_hub.wait(run.id)
    assert (info.status, info.result, trio.current_time()) == ("cancelled", "t0t1t2", 2.0)
    assert types_of(await collect(stream_hub, run.id)) == ["token"] * 3 + ["cancelled"]
