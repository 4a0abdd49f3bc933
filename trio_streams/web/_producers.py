"""``RegisteredProducer``, and the one producer form ``function(ctx)`` (the old one adapted)."""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, cast

from ..protocol._input_schema import InputSchema

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ..runs._config import OnFinish
    from ..runs._run import OnConflict, OnDisconnect, RunContext


@dataclass(frozen=True, slots=True)
class RegisteredProducer:
    """A producer the API can start by name."""

    name: str
    #: ``function(ctx)``; the parsed input is ``ctx.input``.
    function: Callable[[RunContext], Awaitable[Any]]
    #: Converts the input after the schema accepted it (its return value is ``ctx.input``).
    parse_input: Callable[[Any], Any] | None
    #: JSON Schema (2020-12) of the input: validates it, and documents it in OpenAPI (``{}``: anything).
    input_schema: dict[str, Any]
    #: Bytes of the memory budget a run needs, from its parsed input (``Hub.start(reserve=)``).
    reserve: Callable[[Any], int] | None = None
    #: A hook for this producer's runs, called after the extension-wide one (``Hub.start(on_finish=)``).
    on_finish: OnFinish | None = None
    #: The ``on_conflict`` of this producer's runs when the request gives none.
    on_conflict: OnConflict | None = None
    #: The ``on_disconnect`` of this producer's runs when the request gives none.
    on_disconnect: OnDisconnect | None = None
    #: ``input_schema`` compiled (``None``: ``{}``, anything goes); see :func:`input_validator`.
    input_validator: InputSchema | None = None


def input_validator(name: str, schema: Mapping[str, Any] | None) -> InputSchema | None:
    """Producer ``name``'s ``schema`` checked and compiled, at registration (``None``: no schema).

    Raises:
        ValueError: the schema is broken (see :class:`InputSchema`); the
            message names the producer and where in the schema.
    """
    if schema is None or (isinstance(schema, Mapping) and not schema):
        return None
    try:
        return InputSchema(schema)
    except ValueError as exc:
        raise ValueError(f"producer {name!r}: {exc}") from None


def one_argument_form(
    name: str, function: Callable[..., Awaitable[Any]]
) -> Callable[[RunContext], Awaitable[Any]]:
    """``function`` as ``function(ctx)``.

    The deprecated ``function(ctx, input)`` (two required positional
    parameters) is wrapped to receive ``ctx.input``, with one
    ``DeprecationWarning`` pointing at the caller of ``register``.
    """
    if not _takes_input(function):
        return function
    warnings.warn(
        f"producer {name!r}: function(ctx, input) is deprecated; take function(ctx) and read ctx.input",
        DeprecationWarning,
        stacklevel=_caller_stacklevel(),
    )
    legacy = cast("Callable[[RunContext, Any], Awaitable[Any]]", function)
    return partial(_call_with_input, legacy)


def _takes_input(function: Callable[..., Any]) -> bool:
    """Whether ``function`` has the deprecated ``(ctx, input)`` form: two required positionals."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):  # no signature to read (a builtin): assume the new form
        return False
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    required = [p for p in parameters if p.kind in positional and p.default is inspect.Parameter.empty]
    return len(required) >= 2


def _caller_stacklevel() -> int:
    """The warning's stack level: the first frame outside this package's web layer."""
    frame = inspect.currentframe()
    level = 1
    while frame is not None and frame.f_code.co_filename in _OWN_FILES:
        frame = frame.f_back
        level += 1
    return level - 1


async def _call_with_input(function: Callable[[RunContext, Any], Awaitable[Any]], ctx: RunContext) -> Any:
    """A deprecated ``function(ctx, input)`` called in the new form."""
    return await function(ctx, ctx.input)


_OWN_FILES = frozenset({__file__, __file__.replace("_producers.py", "_extension.py")})
