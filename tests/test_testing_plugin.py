"""The user-facing pytest plugin: fixtures, scripted producers, assertions."""

from __future__ import annotations

import pytest

from trio_streams import Event, Gap
from trio_streams.testing import assert_well_formed


def test_plugin_gives_a_mock_clock_hub(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ntrio_mode = true\n")
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
    result = pytester.runpytest("-q")  # the plugin is loaded by its entry point
    result.assert_outcomes(passed=1, failed=1)  # pytest-trio reports fixture errors as failures
    result.stdout.fnmatch_lines(["*must also take the autojump_clock fixture*"])


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
