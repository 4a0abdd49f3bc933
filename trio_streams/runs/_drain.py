"""A run's drain task: run its producer, then finalize it.

Theory of operation
-------------------
``Hub.start`` spawns :func:`drain_run` in the hub's runs nursery, one task
per run (not to be confused with ``Hub.drain``, the graceful shutdown). The
task saves the run's metadata, waits for its turn if it is queued behind its
key (with a shared store: until the store's key slot gives it the key,
wherever the run ahead ran), runs the producer inside the run's cancel
scope, and finally calls :func:`finalize`:
hooks, terminal event, durable end, then :func:`retire`, the hub's
synchronous bookkeeping (free the key, promote the next queued run, arm the
grace-period eviction). The task sees the hub's
:class:`~._hub_state.HubState` (services and bookkeeping), not the hub.

Drain tasks never raise: producer errors become ``error`` events, and
finalization runs shielded, each step under a deadline. A producer that
runs its own nursery raises a group: exactly one ``RunFailed`` or
``StoreOverflow`` in it (``Cancelled`` set aside, see
:mod:`.._exception_groups`) ends the run as that error would alone; several
errors end it with the generic ``producer_error``, every one logged.
Cancellation from outside the run (the hub closing) still propagates.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeAlias, cast

import trio

from .._errors import RunFailed, StoreOverflow
from .._exception_groups import collapse, leaves, only_exceptions
from ..log._budget import EventTooLarge, MemoryBudgetExceeded, mib
from ..log._events import encode_json
from ..log._run_info import ROLLED_BACK
from ..log._sizes import json_bytes
from ..log._store import SharedStore
from ._key_claims import wait_for_turn
from ._retention import arm_eviction
from ._run import Run, RunContext, RunOutcome, RunStatus

if TYPE_CHECKING:
    from ._config import OnFinish
    from ._hub_state import HubState

logger = logging.getLogger("trio_streams")

# Room a terminal event keeps for its fields besides the result.
_TERMINAL_SLACK = 1024

#: A producer: an async function taking a :class:`RunContext` (its return
#: value becomes the result), or an async iterable of events -- each item a
#: ``(type, data)`` tuple, or any other JSON value published as ``message``.
#:
#: Cleanup after a cancel: a producer function awaits inside
#: ``with ctx.cleanup():`` (shielded, under the finalize deadline). An async
#: generator's ``finally`` runs while ``Cancelled`` unwinds through its own
#: frame, so it must shield its awaits itself:
#: ``with trio.move_on_after(5, shield=True): await upstream.aclose()``.
#: Either way the terminal event is published only after the cleanup ends.
Producer: TypeAlias = (
    Callable[[RunContext], Awaitable[Any]] | Callable[[RunContext], AsyncIterable[Any]] | AsyncIterable[Any]
)


async def drain_run(
    hub: HubState,
    run: Run,
    producer: Producer,
    ctx: RunContext,
    on_finish: OnFinish | None,
) -> None:
    # If the hub's own nursery is cancelled, Cancelled passes through the
    # run's scope; the run then ends as closed by the hub.
    status = RunStatus.CANCELLED
    error: dict[str, str] | None = None
    try:
        with run._scope:
            try:
                await hub.store.save_run(run.info())
            finally:
                run._saved.set()
            if run.status is RunStatus.QUEUED:
                await _wait_for_turn(hub, run)
                run.status = RunStatus.RUNNING
                run.started_at = hub.wall_clock()
                logger.info("run %s running (its turn for key=%s)", run.id, run.key)
                await hub.store.save_run(run.info())
            if hub.config.max_age is not None:
                run._scope.deadline = trio.current_time() + hub.config.max_age
            run._arm_watchdog()
            with run._watchdog:
                await _run_producer(run, producer, ctx)
            status = RunStatus.DEAD if run._watchdog.cancelled_caught else RunStatus.DONE
            if status is RunStatus.DEAD:
                error = {"code": "no_events", "message": f"no event for {hub.config.no_event_timeout}s"}
        if run._scope.cancelled_caught:
            # Caught by the run's own scope: a cancel request, or else its deadline.
            status = RunStatus.CANCELLED
            if run.reason is None:
                run.reason = "max_age"
    except BaseExceptionGroup as group:
        # The producer's own nursery (or the store's) raised. Only what is
        # left after setting Cancelled aside decides the outcome; the
        # Cancelled part (the hub is closing) still propagates.
        if not only_exceptions(group):
            raise  # KeyboardInterrupt, SystemExit...: never turned into an error event
        cancelled, rest = group.split(trio.Cancelled)
        if rest is None:
            raise  # only Cancelled: as a bare Cancelled, the run ends cancelled
        sole = collapse(rest)
        status, error = _failure(run, rest if sole is None else sole)
        if cancelled is not None:
            raise cancelled from None
    except Exception as exc:
        status, error = _failure(run, exc)
    finally:
        if status is not RunStatus.CANCELLED:
            run.reason = None
        elif run.reason is None:
            run.reason = "hub_closed"
        await finalize(hub, run, status, error, on_finish)


async def _wait_for_turn(hub: HubState, run: Run) -> None:
    """Until the queued run holds its key.

    Its turn may already have come (the run ahead of it finalized before this
    task started): the wait then returns at once. A key the shared store
    decides comes from the store, whichever instance ran the run ahead; there
    is no deadline after which it starts anyway (the run ahead ends within its
    finalize deadlines, or its owner is declared dead once its lease expired).
    """
    store = hub.store
    if run.id in hub.shared_keys and isinstance(store, SharedStore):
        await wait_for_turn(hub, run, store)
    else:
        await run._turn.wait()


def _failure(run: Run, exc: BaseException) -> tuple[RunStatus, dict[str, str]]:
    """The outcome of a run whose producer raised ``exc`` (one error, or a group of several)."""
    if isinstance(exc, RunFailed):
        return RunStatus.ERROR, {"code": exc.code, "message": exc.message}
    if isinstance(exc, StoreOverflow):
        logger.error(
            "run %s failed: the store's write buffer is full",
            run.id,
            extra={"run_id": run.id, "owner": run.owner, "event": "store_overflow"},
        )
        return RunStatus.ERROR, {"code": "store_overflow", "message": "the store could not keep up"}
    if isinstance(exc, MemoryBudgetExceeded):
        logger.error("run %s failed: %s", run.id, exc)
        return RunStatus.ERROR, {"code": "memory_budget", "message": str(exc)}
    if isinstance(exc, EventTooLarge):
        logger.error("run %s failed: %s", run.id, exc)
        return RunStatus.ERROR, {"code": "event_too_large", "message": str(exc)}
    if isinstance(exc, BaseExceptionGroup):
        # Several errors: none of them speaks for the run, all are logged.
        names = ", ".join(type(leaf).__name__ for leaf in leaves(exc))
        logger.error(
            "run %s: producer raised several errors: %s",
            run.id,
            names,
            exc_info=exc,
            extra={"run_id": run.id, "owner": run.owner, "event": "producer_error"},
        )
        return RunStatus.ERROR, {"code": "producer_error", "message": "the producer failed (several errors)"}
    name = type(exc).__name__
    logger.error(
        "run %s: producer raised %s",
        run.id,
        name,
        exc_info=exc,
        extra={"run_id": run.id, "owner": run.owner, "event": "producer_error"},
    )
    return RunStatus.ERROR, {"code": "producer_error", "message": f"the producer failed ({name})"}


async def finalize(
    hub: HubState, run: Run, status: RunStatus, error: dict[str, str] | None, on_finish: OnFinish | None
) -> None:
    """Hooks, terminal event, durable end, bookkeeping -- shielded, each under a deadline."""
    config = hub.config
    with trio.CancelScope(shield=True):
        run.error = error
        run.partial = status is not RunStatus.DONE and run.result is not None
        outcome = RunOutcome(status, run.result, run.partial, run.reason, error)
        for hook in (config.on_finish, on_finish):
            if hook is None:
                continue
            with trio.move_on_after(config.finalize_timeout) as hook_scope:
                try:
                    await hook(run, outcome)
                except Exception as exc:
                    logger.exception(
                        "run %s: on_finish hook raised %s",
                        run.id,
                        type(exc).__name__,
                        extra={"run_id": run.id, "owner": run.owner, "event": "on_finish_error"},
                    )
                    run.finalize_error = f"on_finish raised {type(exc).__name__}: {exc}"
            if hook_scope.cancelled_caught:
                logger.error("run %s: on_finish hook exceeded %ss", run.id, config.finalize_timeout)
                run.finalize_error = f"on_finish did not finish within {config.finalize_timeout}s"
        status = _check_result(run, status, hub.budget.max_event_bytes)
        run.ended_at = hub.wall_clock()
        # The terminal event is durable before anyone sees the run end:
        # staged to the store, recorded with the final metadata, and only
        # then put in the log (subscribers) and the status set.
        terminal = run._stage(status.value, _terminal_data(run))
        final = replace(
            run.info(),
            status=status,
            last_seq=terminal.seq,
            ended_at=run.ended_at,
            partial=run.partial,
            error=run.error,
            finalize_error=run.finalize_error,
        )
        with trio.move_on_after(config.store_timeout) as store_scope:
            try:
                await hub.store.finish_run(final)
            except Exception as exc:
                logger.exception("run %s: the store could not record its end", run.id)
                run.finalize_error = run.finalize_error or f"store: {type(exc).__name__}: {exc}"
        if store_scope.cancelled_caught:
            logger.error("run %s: the store did not record its end within %ss", run.id, config.store_timeout)
            run.finalize_error = (
                run.finalize_error or f"store: did not record the run's end within {config.store_timeout}s"
            )
        run.status = status
        run._reveal(terminal)
        if status is RunStatus.CANCELLED and run.reason == ROLLED_BACK:
            await _delete_rolled_back(hub, run)
        retire(hub, run)
        run._finished.set()
        started = run.started_at or run.created_at
        logger.info(
            "run %s %s after %.3fs, %d events%s%s",
            run.id,
            status.value,
            run.ended_at - started,
            run.last_seq,
            f" reason={run.reason}" if run.reason else "",
            f" finalize_error={run.finalize_error!r}" if run.finalize_error else "",
            extra={"run_id": run.id, "owner": run.owner, "event": "run_" + status.value},
        )


async def _delete_rolled_back(hub: HubState, run: Run) -> None:
    """Delete a run that ``rollback`` replaced: from the store, then from memory.

    Called between its terminal event (durable, and delivered to its
    subscribers) and :func:`retire`, which frees its key here (a shared
    store frees it in ``delete_run``): the run that replaced it starts only
    once it is gone. It leaves memory first (readers meanwhile get its final
    record from the store), then the store. Under ``store_timeout`` (the
    caller is shielded); a store that fails is logged. Subscribers still
    attached keep reading the log they hold (its terminal event, then the end).
    """
    if hub.forget(run) and not run._subscribers:
        run.log.discard()
    with trio.move_on_after(hub.config.store_timeout):
        try:
            await hub.store.delete_run(run.id)
        except Exception as exc:
            logger.warning("run %s: the store could not delete the rolled-back run (%s)", run.id, exc)
    logger.info(
        "run %s rolled back and deleted",
        run.id,
        extra={"run_id": run.id, "owner": run.owner, "event": "run_rolled_back"},
    )


def _check_result(run: Run, status: RunStatus, max_event_bytes: int) -> RunStatus:
    """The run's final status, once its result is known to fit its terminal event.

    A result that is not JSON, or too large for an event (``max_event_bytes``,
    less room for the terminal event's other fields), ends the run in ``error``
    instead, with no result.
    """
    try:
        result_bytes = json_bytes(encode_json(run.result))
    except (TypeError, ValueError):
        logger.error("run %s: result %r is not JSON-serializable", run.id, type(run.result).__name__)
        run.error = {"code": "bad_result", "message": "the run's result is not JSON-serializable"}
    else:
        if result_bytes <= max_event_bytes - _TERMINAL_SLACK:
            return status
        message = (
            f"the run's result is {mib(result_bytes)} encoded; max_event_bytes is {mib(max_event_bytes)}"
        )
        logger.error("run %s: %s", run.id, message)
        run.error = {"code": "result_too_large", "message": message}
    run.result, run.partial, run.reason = None, False, None
    return RunStatus.ERROR


def retire(hub: HubState, run: Run) -> None:
    """Synchronous bookkeeping once a run has ended."""
    run._ledger.unreserve()
    run._ledger.finish()  # its memory may be given back from now on
    if run._timer is not None:
        run._timer.cancel()
        run._timer = None
    if hub.retire(run) and not run._subscribers:
        arm_eviction(hub, run)


async def _run_producer(run: Run, producer: Producer, ctx: RunContext) -> None:
    source: Any = producer
    if callable(producer):
        source = producer(ctx)
        if inspect.isawaitable(source):
            value = await source
            if value is not None:
                run.result = value
            return
    if not hasattr(source, "__aiter__"):
        raise TypeError(f"producer returned {type(source).__name__}, not an awaitable or async iterable")
    iterator = cast("AsyncIterator[Any]", source.__aiter__())
    try:
        async for item in iterator:
            if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
                ctx.emit_nowait(item[0], item[1])
            else:
                ctx.emit_nowait("message", item)
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            with ctx.cleanup():
                await aclose()


def _terminal_data(run: Run) -> dict[str, Any]:
    data: dict[str, Any] = {"result": run.result}
    if run.partial:
        data["partial"] = True
    if run.reason is not None:
        data["reason"] = run.reason
    if run.error is not None:
        data["error"] = run.error
    return data
