"""The Redis connection's health (fail fast while Redis does not answer), on the mock clock.

No Redis here: ``RedisHealth.run`` wraps awaitables that stand in for
commands (one that times out raises ``TimeoutError`` as coredis does, one
that hangs never returns), so every transition and the probe's backoff are
asserted at exact virtual times. The real-Redis side (SIGSTOP) is in
``test_redis_freeze.py``.
"""

from __future__ import annotations

import logging
import sys

import coredis
import pytest
import trio
import trio.testing

from trio_streams.log.redis._health import QuietTracebacks, RedisHealth, RedisUnavailable, timed_out

STREAM_TIMEOUT = 4.0


async def answer() -> str:
    await trio.lowlevel.checkpoint()
    return "PONG"


async def time_out() -> str:
    await trio.sleep(STREAM_TIMEOUT)
    raise TimeoutError(f"PING timed out after {STREAM_TIMEOUT} seconds")


async def refuse() -> str:
    await trio.lowlevel.checkpoint()
    raise coredis.exceptions.ConnectionError("Unable to establish a connection") from ConnectionRefusedError()


async def hang() -> str:
    await trio.sleep_forever()
    raise AssertionError("unreachable")


def up(state: RedisHealth) -> bool:
    """``state.healthy`` (through a call: mypy would narrow the attribute between asserts)."""
    return state.healthy


def health() -> RedisHealth:
    return RedisHealth("redis://h:1/0", stream_timeout=STREAM_TIMEOUT, probe_min=0.5, probe_max=2.0)


async def test_a_timeout_turns_it_unhealthy_and_later_commands_fail_at_once(autojump_clock) -> None:
    state = health()
    assert await state.run(answer, blocking=False) == "PONG"
    with pytest.raises(RedisUnavailable, match="PING timed out"):
        await state.run(time_out, blocking=False)
    assert trio.current_time() == STREAM_TIMEOUT
    assert not up(state)
    assert state.outages == 1
    with pytest.raises(RedisUnavailable, match="not answering"):
        await state.run(answer, blocking=False)
    assert trio.current_time() == STREAM_TIMEOUT  # not sent: no time passes


async def test_a_refused_connection_leaves_it_healthy(autojump_clock) -> None:
    state = health()
    with pytest.raises(RedisUnavailable, match="unavailable: ConnectionError: Unable"):
        await state.run(refuse, blocking=False)
    assert up(state)
    assert await state.run(answer, blocking=False) == "PONG"


async def test_a_blocking_commands_timeout_leaves_it_healthy(autojump_clock) -> None:
    state = health()
    with pytest.raises(RedisUnavailable, match="unavailable: TimeoutError"):
        await state.run(time_out, blocking=True)
    assert up(state)


async def test_a_command_its_caller_gave_up_on_after_half_the_timeout_turns_it_unhealthy(
    autojump_clock,
) -> None:
    state = health()
    with trio.move_on_after(STREAM_TIMEOUT / 2 - 0.01):
        await state.run(hang, blocking=False)
    assert up(state), "given up on before half the stream timeout: says nothing"
    with trio.move_on_after(STREAM_TIMEOUT / 2) as scope:
        await state.run(hang, blocking=False)
    assert scope.cancelled_caught, "the caller's cancellation propagates"
    assert not up(state)


async def test_giving_up_on_a_blocking_command_leaves_it_healthy(autojump_clock) -> None:
    state = health()
    with trio.move_on_after(STREAM_TIMEOUT * 10):
        await state.run(hang, blocking=True)
    assert up(state)


async def test_commands_in_flight_fail_when_one_times_out(autojump_clock) -> None:
    state = health()
    failed: list[float] = []

    async def waiting(blocking: bool) -> None:
        with pytest.raises(RedisUnavailable):
            await state.run(hang, blocking=blocking)
        failed.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiting, False)
        nursery.start_soon(waiting, True)
        await trio.testing.wait_all_tasks_blocked()
        with trio.move_on_after(1.0):
            await state.run(hang, blocking=False)  # given up on after 1 s: not half of 4 s
        assert failed == []
        with pytest.raises(RedisUnavailable):
            await state.run(time_out, blocking=False)
    assert failed == [1.0 + STREAM_TIMEOUT] * 2


async def test_waiting_until_unhealthy_ends_when_it_turns_so(autojump_clock) -> None:
    state = health()
    async with trio.open_nursery() as nursery:

        async def fail_later() -> None:
            await trio.sleep(3.0)
            state.failed("test")

        nursery.start_soon(fail_later)
        with state.until_unhealthy() as scope:
            await trio.sleep(100)
        assert scope.cancelled_caught
        assert trio.current_time() == 3.0
    with state.until_unhealthy() as scope:
        await trio.sleep(100)  # cancelled at once: unhealthy already
    assert trio.current_time() == 3.0


async def test_the_probe_backs_off_until_redis_answers_then_it_is_healthy(autojump_clock, caplog) -> None:
    caplog.set_level(logging.WARNING)
    state = health()
    pings: list[float] = []
    answers = trio.Event()

    async def ping() -> None:
        pings.append(trio.current_time())
        if not answers.is_set():
            await trio.sleep_forever()  # frozen: the probe's own bound (1 s) ends it
        await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        await nursery.start(state.probe, ping)
        await trio.sleep(10.0)
        assert pings == [], "no probe while healthy"
        state.failed("TimeoutError: test")
        # Delays 0.5, 1, 2, 2 (capped), each attempt bounded by probe_timeout (1 s).
        await trio.sleep(0.5 + 1 + 1 + 1 + 2 + 1 + 0.5)
        assert pings == [10.5, 12.5, 15.5]
        assert not up(state)
        with pytest.raises(RedisUnavailable):
            await state.run(answer, blocking=False)
        answers.set()
        await trio.sleep(1.5 + 2.0)
        assert pings == [10.5, 12.5, 15.5, 18.5]
        assert up(state)
        assert await state.run(answer, blocking=False) == "PONG"
        # A second outage starts the backoff again.
        state.failed("TimeoutError: again")
        assert not up(state)
        await trio.sleep(0.5)
        await trio.testing.wait_all_tasks_blocked()
        assert pings[-1] == 21.0
        assert up(state)
        assert state.outages == 2
        nursery.cancel_scope.cancel()
    messages = [r.getMessage() for r in caplog.records]
    assert sum("stopped answering" in m for m in messages) == 2
    assert sum("answers again (after" in m for m in messages) == 2


async def test_failing_twice_logs_once(caplog) -> None:
    caplog.set_level(logging.WARNING)
    state = health()
    state.failed("one")
    state.failed("two")
    assert state.last_error == "one"
    assert sum("stopped answering" in r.getMessage() for r in caplog.records) == 1
    await trio.lowlevel.checkpoint()


async def test_exempt_commands_neither_fail_fast_nor_change_it(autojump_clock) -> None:
    state = health()
    with state.exempt(), pytest.raises(TimeoutError):
        await state.run(time_out, blocking=False)
    assert up(state)
    state.failed("test")
    with state.exempt():
        assert await state.run(answer, blocking=False) == "PONG"


def test_timed_out_follows_causes() -> None:
    outer = ConnectionError("Unable to establish a connection")
    outer.__cause__ = TimeoutError("handshake")
    assert timed_out(outer)
    assert not timed_out(ConnectionError("lost"))
    assert not timed_out(ConnectionRefusedError("refused"))
    assert timed_out(trio.TooSlowError())


def test_coredis_tracebacks_are_demoted_to_debug() -> None:
    quiet = QuietTracebacks()
    coredis_logger = logging.getLogger("coredis")
    try:
        raise OSError("boom")
    except OSError:
        info = sys.exc_info()
    record = coredis_logger.makeRecord("coredis", logging.ERROR, __file__, 1, "Connection failed", (), info)
    coredis_logger.setLevel(logging.INFO)
    try:
        assert not quiet.filter(record), "dropped unless DEBUG is on"
        assert record.levelno == logging.DEBUG
        coredis_logger.setLevel(logging.DEBUG)
        record = coredis_logger.makeRecord(
            "coredis", logging.ERROR, __file__, 1, "Connection failed", (), info
        )
        assert quiet.filter(record)
        assert record.levelname == "DEBUG"
        plain = coredis_logger.makeRecord("coredis", logging.INFO, __file__, 1, "Retry attempt 1", (), None)
        assert quiet.filter(plain)
        assert plain.levelno == logging.INFO
    finally:
        coredis_logger.setLevel(logging.NOTSET)
