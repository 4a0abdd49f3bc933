"""The built-in ``demo`` producer: synthetic tokens at a given rate and size.

Its limits follow from the hub's memory budget (:func:`demo_limits`): one run's
tokens (``tokens * size`` bytes of text) may take at most an eighth of
``max_memory`` -- about a quarter of it in memory, where each event keeps its
data and its JSON -- a token fits ``max_event_bytes``, and the result keeps
the text only up to half of ``max_event_bytes`` (``"truncated": true`` past
it), so its terminal event fits too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, ClassVar

import trio

from ..log._events import Event
from ..log._sizes import event_cost
from ..protocol._input_schema import InputSchema

if TYPE_CHECKING:
    from ..runs._run import RunContext

_WORDS = ("lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit", "sed", "do")
# Unpaced tokens are published this many at a time between checkpoints: what
# a fast model streaming chunks looks like, and what lets the hub coalesce.
_BURST = 64
# A token event's JSON besides its text: {"i":..,"text":"..","ts":..}.
_TOKEN_FRAME = 256
#: One demo run's text may take this part of the memory budget.
BUDGET_SHARE = 8


@dataclass(frozen=True, slots=True)
class DemoLimits:
    """What one demo run may ask for, from the memory budget (see :func:`demo_limits`).

    Attributes:
        max_bytes: ``tokens * size`` at most.
        max_size: ``size`` at most.
        max_text: the result keeps this many characters of text at most.
    """

    max_bytes: int
    max_size: int
    max_text: int


def demo_limits(max_memory: int, max_event_bytes: int) -> DemoLimits:
    """The demo's limits for a hub with this ``max_memory`` and ``max_event_bytes``."""
    return DemoLimits(
        max_bytes=max_memory // BUDGET_SHARE,
        max_size=max(1, min(DemoInput.LIMITS["size"][1], max_event_bytes - _TOKEN_FRAME)),
        max_text=max(1, max_event_bytes // 2),
    )


class DemoFailure(Exception):
    """Raised by the demo producer at ``fail_at`` (becomes the run's ``error``)."""


@dataclass(frozen=True, slots=True)
class DemoInput:
    """The demo's input, validated.

    Attributes:
        tokens: how many ``token`` events to emit.
        rate: tokens per second; ``None`` emits as fast as the hub takes them.
        size: bytes of text per token.
        fail_at: raise :class:`DemoFailure` instead of emitting token ``i``.
        await_input_at: before token ``i``, wait for input that never comes
            (marked as awaiting input: the hub's ``input_timeout`` applies).
    """

    tokens: int = 20
    rate: float | None = 10.0
    size: int = 8
    fail_at: int | None = None
    await_input_at: int | None = None

    LIMITS: ClassVar[dict[str, tuple[int, int]]] = {"tokens": (0, 1_000_000), "size": (1, 65_536)}

    @classmethod
    def parse(cls, raw: Any, *, max_tokens: int | None = None, limits: DemoLimits | None = None) -> DemoInput:
        """Validate a request's ``input`` (``tokens`` at most ``max_tokens``,
        ``size`` and ``tokens * size`` within ``limits``) and convert it.

        The check is :func:`demo_input_schema` (the one the API validates
        with), then :meth:`from_valid`.

        Raises:
            ValueError: with a message naming the bad field (or the budget).
        """
        _schema(max_tokens, limits).validate(raw)
        return cls.from_valid(raw, limits=limits)

    @classmethod
    def from_valid(cls, raw: Any, *, limits: DemoLimits | None = None) -> DemoInput:
        """An input :func:`demo_input_schema` accepted, converted (the demo's ``parse_input``).

        Defaults for what is absent, integral floats as ints, ``rate`` as a
        float; and the one rule a JSON Schema cannot say: ``tokens * size``
        within ``limits.max_bytes``.

        Raises:
            ValueError: ``tokens * size`` is over the budget.
        """
        if raw is None:
            return cls()
        values: dict[str, Any] = {name: int(raw[name]) for name in _INTEGERS if raw.get(name) is not None}
        if "rate" in raw:
            values["rate"] = None if raw["rate"] is None else float(raw["rate"])
        spec = cls(**values)
        if limits is not None and spec.tokens * spec.size > limits.max_bytes:
            raise ValueError(
                f"tokens * size is {spec.tokens * spec.size} bytes; one demo run may have at most "
                f"{limits.max_bytes} (1/{BUDGET_SHARE} of the server's memory budget, max_memory)"
            )
        return spec


_INTEGERS = ("tokens", "size", "fail_at", "await_input_at")


@lru_cache(maxsize=16)
def _schema(max_tokens: int | None, limits: DemoLimits | None) -> InputSchema:
    """The demo's schema compiled, once per limits (``DemoInput.parse`` is called per request)."""
    return InputSchema(demo_input_schema(max_tokens, limits))


def demo_input_schema(max_tokens: int | None = None, limits: DemoLimits | None = None) -> dict[str, Any]:
    """The JSON Schema of the demo's input: what the API validates it with, and documents."""
    tokens = (
        DemoInput.LIMITS["tokens"][1]
        if max_tokens is None
        else min(max_tokens, DemoInput.LIMITS["tokens"][1])
    )
    size = (
        DemoInput.LIMITS["size"][1] if limits is None else min(limits.max_size, DemoInput.LIMITS["size"][1])
    )
    product = (
        ""
        if limits is None
        else f" tokens * size may be at most {limits.max_bytes} (the memory budget's share)."
    )
    index = {"type": ["integer", "null"], "minimum": 1, "maximum": DemoInput.LIMITS["tokens"][1]}
    return {
        "type": ["object", "null"],
        "description": f"Synthetic tokens.{product}",
        "additionalProperties": False,
        "properties": {
            "tokens": {"type": "integer", "minimum": 0, "maximum": tokens, "default": 20},
            "rate": {"type": ["number", "null"], "exclusiveMinimum": 0, "maximum": 1_000_000, "default": 10},
            "size": {"type": "integer", "minimum": 1, "maximum": size, "default": 8},
            "fail_at": index,
            "await_input_at": index,
        },
    }


def demo_reserve(spec: DemoInput) -> int:
    """Bytes of the memory budget a demo run's tokens will take (``Hub.start(reserve=)``)."""
    sample = {"i": spec.tokens, "text": token_text(1, spec.size), "ts": time.time()}
    return spec.tokens * event_cost(Event.create(spec.tokens, "token", sample, 0.0))


def token_text(i: int, size: int) -> str:
    """Token ``i``'s text: a word and a space, padded or cut to exactly ``size`` characters."""
    return (_WORDS[i % len(_WORDS)] + " ").ljust(size)[:size]


async def demo_producer(ctx: RunContext, spec: DemoInput, *, max_text: int | None = None) -> dict[str, Any]:
    """Emit ``token`` events ``{"i", "text", "ts"}``; return ``{"text", "tokens"}``.

    ``ts`` is the wall clock at emission (for latency measurements). On
    cancel the text so far is saved as the partial result. The result keeps
    at most ``max_text`` characters of text (then ``"truncated": true``), so
    the producer itself holds no more than that.
    """
    text = _Text(max_text)
    interval = None if spec.rate is None else 1.0 / spec.rate
    started = trio.current_time()
    try:
        for i in range(1, spec.tokens + 1):
            if spec.fail_at == i:
                raise DemoFailure(f"demo failure injected at token {i}")
            if spec.await_input_at == i:
                with ctx.awaiting_input():
                    await trio.sleep_forever()
            token = token_text(i, spec.size)
            data = {"i": i, "text": token, "ts": time.time()}
            if interval is not None:
                # Paced against the start, so the rate does not drift.
                await trio.sleep_until(started + (i - 1) * interval)
                data["ts"] = time.time()
                await ctx.emit("token", data)
            elif i % _BURST == 0:
                await ctx.emit("token", data)
            else:
                ctx.emit_nowait("token", data)
            text.add(token)
    except trio.Cancelled:
        ctx.result = text.result()
        raise
    return text.result()


class _Text:
    """The tokens' text so far, kept up to a cap."""

    __slots__ = ("_cap", "_parts", "_size", "tokens", "truncated")

    def __init__(self, cap: int | None) -> None:
        self._cap = cap
        self._parts: list[str] = []
        self._size = 0
        self.tokens = 0
        self.truncated = False

    def add(self, token: str) -> None:
        self.tokens += 1
        if self._cap is not None and self._size + len(token) > self._cap:
            if not self.truncated:
                self._parts.append(token[: self._cap - self._size])
                self._size = self._cap
                self.truncated = True
            return
        self._parts.append(token)
        self._size += len(token)

    def result(self) -> dict[str, Any]:
        result: dict[str, Any] = {"text": "".join(self._parts), "tokens": self.tokens}
        if self.truncated:
            result["truncated"] = True
        return result
