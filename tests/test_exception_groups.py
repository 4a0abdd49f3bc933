"""The one rule for looking inside exception groups: collapse exactly one, never several."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trio_streams import RunFailed, TrioStreamsInternalError, open_hub
from trio_streams._exception_groups import collapse, leaves, only_exceptions


def _cancelled() -> trio.Cancelled:
    # Cancelled cannot be constructed directly; catch a real one.
    async def main() -> trio.Cancelled:
        with trio.CancelScope() as scope:
            scope.cancel()
            try:
                await trio.lowlevel.checkpoint()
            except trio.Cancelled as exc:
                return exc
        raise AssertionError("not cancelled")

    return trio.run(main)


def test_one_error_is_itself_however_deeply_nested() -> None:
    error = RunFailed("x", code="c")
    assert collapse(ExceptionGroup("a", [error])) is error
    assert collapse(ExceptionGroup("a", [ExceptionGroup("b", [ExceptionGroup("c", [error])])])) is error


def test_cancelled_is_set_aside_when_one_error_remains() -> None:
    error = ValueError("v")
    cancelled = _cancelled()
    group = BaseExceptionGroup("a", [cancelled, BaseExceptionGroup("b", [error, _cancelled()])])
    assert collapse(group) is error
    assert only_exceptions(group)


def test_only_cancelled_collapses_to_a_cancelled() -> None:
    first, second = _cancelled(), _cancelled()
    assert collapse(BaseExceptionGroup("a", [BaseExceptionGroup("b", [first]), second])) is first


def test_several_errors_are_never_unwrapped() -> None:
    group = ExceptionGroup("a", [RunFailed("x"), ExceptionGroup("b", [ValueError("v")])])
    assert collapse(group) is None
    # Even when a nested group holds the second one, and Cancelled sits beside them.
    nested = BaseExceptionGroup("a", [_cancelled(), ExceptionGroup("b", [KeyError(1), KeyError(2)])])
    assert collapse(nested) is None
    assert only_exceptions(nested)


def test_keyboard_interrupt_is_never_mistaken_for_an_ordinary_error() -> None:
    interrupt = KeyboardInterrupt()
    alone = BaseExceptionGroup("a", [_cancelled(), interrupt])
    assert collapse(alone) is interrupt  # returned to be raised as itself
    assert not only_exceptions(alone)
    beside = BaseExceptionGroup("a", [RunFailed("x"), BaseExceptionGroup("b", [SystemExit(3)])])
    assert collapse(beside) is None
    assert not only_exceptions(beside)  # so the caller re-raises the group, not its own Exception


def test_leaves_lists_every_leaf_in_order() -> None:
    a, b, c = ValueError("a"), KeyError("b"), RunFailed("c")
    assert leaves(ExceptionGroup("g", [a, ExceptionGroup("h", [b, c])])) == [a, b, c]


async def test_open_hub_raises_several_errors_as_one_internal_error(autojump_clock) -> None:
    async def boom(exc: Exception) -> None:
        await trio.sleep(1)
        raise exc

    with trio.fail_after(60), pytest.raises(TrioStreamsInternalError, match=r"^2 errors escaped") as info:
        async with open_hub() as hub:
            # The hub's nurseries raise both: the block's error and a service's.
            hub._nursery.start_soon(boom, ValueError("in the runs nursery"))
            try:
                await trio.sleep_forever()
            finally:  # cancelled by the nursery's error, the block fails too
                raise KeyError("in the block")
    cause = info.value.__cause__
    assert isinstance(cause, BaseExceptionGroup)
    assert {type(leaf) for leaf in leaves(cause) if not isinstance(leaf, trio.Cancelled)} == {
        ValueError,
        KeyError,
    }


async def test_open_hub_lets_keyboard_interrupt_beside_an_error_propagate_as_a_group(
    autojump_clock,
) -> None:
    async def interrupt() -> None:
        await trio.sleep(1)
        raise KeyboardInterrupt

    with trio.fail_after(60), pytest.RaisesGroup(KeyboardInterrupt, KeyError, flatten_subgroups=True):
        async with open_hub() as hub:
            hub._nursery.start_soon(interrupt)
            try:
                await trio.sleep_forever()
            finally:
                raise KeyError("in the block")
