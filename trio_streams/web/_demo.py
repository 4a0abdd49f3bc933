"""The built-in ``demo`` producer: synthetic tokens at a given rate and size."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import trio

if TYPE_CHECKING:
    from .._run import RunContext

_WORDS = ("lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit", "sed", "do")
# Unpaced tokens are published this many at a time between checkpoints: what
# a fast model streaming chunks looks like, and what lets the hub coalesce.
_BURST = 64


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
    def parse(cls, raw: Any, *, max_tokens: int | None = None) -> DemoInput:
        """Validate a request's ``input`` (``tokens`` at most ``max_tokens``).

        Raises:
            ValueError: with a message naming the bad field.
        """
        if raw is None:
            return cls()
        if not isinstance(raw, dict):
            raise ValueError("demo input must be an object")
        unknown = set(raw) - {"tokens", "rate", "size", "fail_at", "await_input_at"}
        if unknown:
            raise ValueError(f"unknown demo input field(s): {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {}
        for name in ("tokens", "size"):
            if name in raw:
                low, high = cls.LIMITS[name]
                if name == "tokens" and max_tokens is not None:
                    high = min(high, max_tokens)
                values[name] = _int(raw[name], name, low, high)
        for name in ("fail_at", "await_input_at"):
            if raw.get(name) is not None:
                values[name] = _int(raw[name], name, 1, cls.LIMITS["tokens"][1])
        if "rate" in raw:
            rate = raw["rate"]
            if rate is not None:
                if isinstance(rate, bool) or not isinstance(rate, int | float) or not math.isfinite(rate):
                    raise ValueError("rate must be a positive number or null")
                if not 0 < rate <= 1_000_000:
                    raise ValueError("rate must be in (0, 1000000] tokens per second, or null")
                rate = float(rate)
            values["rate"] = rate
        return cls(**values)


def demo_input_schema(max_tokens: int | None = None) -> dict[str, Any]:
    """The JSON Schema of the demo's input (for the OpenAPI document)."""
    tokens = (
        DemoInput.LIMITS["tokens"][1]
        if max_tokens is None
        else min(max_tokens, DemoInput.LIMITS["tokens"][1])
    )
    index = {"type": ["integer", "null"], "minimum": 1, "maximum": DemoInput.LIMITS["tokens"][1]}
    return {
        "type": ["object", "null"],
        "additionalProperties": False,
        "properties": {
            "tokens": {"type": "integer", "minimum": 0, "maximum": tokens, "default": 20},
            "rate": {"type": ["number", "null"], "exclusiveMinimum": 0, "maximum": 1_000_000, "default": 10},
            "size": {"type": "integer", "minimum": 1, "maximum": DemoInput.LIMITS["size"][1], "default": 8},
            "fail_at": index,
            "await_input_at": index,
        },
    }


def _int(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # JSON Schema's "integer" includes 5.0
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer")
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}")
    return value


def token_text(i: int, size: int) -> str:
    """Token ``i``'s text: a word and a space, padded or cut to exactly ``size`` characters."""
    return (_WORDS[i % len(_WORDS)] + " ").ljust(size)[:size]


async def demo_producer(ctx: RunContext, spec: DemoInput) -> dict[str, Any]:
    """Emit ``token`` events ``{"i", "text", "ts"}``; return ``{"text", "tokens"}``.

    ``ts`` is the wall clock at emission (for latency measurements). On
    cancel the text so far is saved as the partial result.
    """
    parts: list[str] = []
    interval = None if spec.rate is None else 1.0 / spec.rate
    started = trio.current_time()
    try:
        for i in range(1, spec.tokens + 1):
            if spec.fail_at == i:
                raise DemoFailure(f"demo failure injected at token {i}")
            if spec.await_input_at == i:
                with ctx.awaiting_input():
                    await trio.sleep_forever()
            text = token_text(i, spec.size)
            data = {"i": i, "text": text, "ts": time.time()}
            if interval is not None:
                # Paced against the start, so the rate does not drift.
                await trio.sleep_until(started + (i - 1) * interval)
                data["ts"] = time.time()
                await ctx.emit("token", data)
            elif i % _BURST == 0:
                await ctx.emit("token", data)
            else:
                ctx.emit_nowait("token", data)
            parts.append(text)
    except trio.Cancelled:
        ctx.result = {"text": "".join(parts), "tokens": len(parts)}
        raise
    return {"text": "".join(parts), "tokens": len(parts)}
