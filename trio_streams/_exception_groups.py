"""Collapsing a nursery's exception group to the one error it stands for.

trio's guidance ("Designing for multiple errors" in the trio docs): a
library that runs a nursery as an implementation detail may re-raise the
single error a group holds, but must never unwrap a group that may hold
several -- picking one silently drops the others. ``trio.Cancelled`` leaves
are not errors: they only say a scope was cancelled, and the scope that was
cancelled catches them itself. So the rule here is: over the group minus
``Cancelled``, exactly one leaf (at any depth) is that error; several is no
one error.

Every place that looks inside a group uses :func:`collapse` (``open_hub``,
the drain task, the web extension's startup, ``serve``'s startup report), so
the rule is written once.
"""

from __future__ import annotations

import trio


def collapse(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The one exception ``group`` stands for, or ``None`` if it holds several.

    Returns:
        - the only leaf that is not ``trio.Cancelled``, however deeply it is
          nested (its ``Cancelled`` siblings are set aside: the scopes they
          belong to are still cancelled, so the next checkpoint raises again);
        - if every leaf is ``trio.Cancelled``, the first of them: they all mean
          "this scope is cancelled", and a cancel scope catches one exactly as
          it catches the group;
        - ``None`` when two or more leaves are not ``Cancelled``. The caller
          then re-raises ``group`` itself, or raises its own error
          ``from group`` -- but only if ``group.subgroup(Exception)`` covers
          every non-``Cancelled`` leaf (:func:`only_exceptions`), so that a
          ``KeyboardInterrupt`` or ``SystemExit`` inside is never turned into
          an ordinary error.
    """
    cancelled, rest = group.split(trio.Cancelled)
    if rest is None:
        assert cancelled is not None
        return _first_leaf(cancelled)
    leaf: BaseException = rest
    while isinstance(leaf, BaseExceptionGroup):
        if len(leaf.exceptions) != 1:
            return None
        leaf = leaf.exceptions[0]
    return leaf


def only_exceptions(group: BaseExceptionGroup[BaseException]) -> bool:
    """True if every leaf of ``group`` other than ``trio.Cancelled`` is an :class:`Exception`.

    False means something like ``KeyboardInterrupt`` or ``SystemExit`` is
    inside: the group must then propagate as it is, never be replaced by
    an ordinary error.
    """
    _cancelled, rest = group.split(trio.Cancelled)
    return rest is None or isinstance(rest, ExceptionGroup)


def leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    """Every leaf of ``group`` (nested groups flattened), in order; for logging and messages only."""
    found: list[BaseException] = []
    stack: list[BaseException] = [group]
    while stack:
        exc = stack.pop()
        if isinstance(exc, BaseExceptionGroup):
            stack.extend(reversed(exc.exceptions))
        else:
            found.append(exc)
    return found


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    leaf: BaseException = group
    while isinstance(leaf, BaseExceptionGroup):
        leaf = leaf.exceptions[0]
    return leaf
