"""One subscription's state: links, wakes, generations, leases, fencing (sans-I/O).

Theory of operation
-------------------
A :class:`Subscription` links streams (``explicit`` and/or ``glob``), each
with its ``acked`` offset (last processed, inclusive) and the ``tail`` last
seen. It has *pending work* when some link's tail is past its acked offset.

At most one :class:`Wake` is in flight. :meth:`Subscription.wake_if_pending`
makes one when none is and work is pending: ``generation`` + 1 (never
reused), a fresh random ``wake_id``, a snapshot of every link's tail. A
webhook wake gets its callback token and lease at once; a pull-wake wake
gets them when a worker claims it. Every request about a wake (callback,
ack, release) must name the current ``wake_id`` and ``generation`` and carry
its token (:meth:`Subscription.fence`), else 409 ``FENCED``; ending a wake
(done, release, lease expiry, deletion) clears all three, so a repeated or
late request is fenced too.

Times are seconds passed in (``now``: the state store's clock, see
:mod:`._sub_store`); the caller keeps the lease as a trio deadline and ends
the wake when it passes.
Nothing here awaits: every method is one step, so in one process a check
and the change it guards are atomic.
"""

from __future__ import annotations

import hmac
import secrets
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._errors import DurableStreamError
from ._offsets import START, Offset
from ._sub_config import invalid

if TYPE_CHECKING:
    from ._sub_config import SubscriptionConfig


@dataclass(slots=True)
class Link:
    """A stream of the subscription: how it is linked, and its cursor."""

    explicit: bool
    glob: bool
    acked: Offset
    tail: Offset

    @property
    def link_type(self) -> str:
        # The protocol: `explicit` wins when a stream is linked both ways.
        return "explicit" if self.explicit else "glob"


@dataclass(slots=True)
class Wake:
    """A wake in flight."""

    wake_id: str
    generation: int
    #: The stream whose data made the wake.
    stream: str
    #: Each link's tail when the wake was made (what a webhook's `done` acks).
    snapshot: dict[str, Offset]
    token: str | None = None
    holder: str | None = None
    #: The lease's end, in the state store's clock (:attr:`~._sub_store.SubscriptionState.now`:
    #: trio time in process, Redis ``TIME`` on Redis); ``None``: no lease yet (an unclaimed pull-wake).
    lease_deadline: float | None = None
    #: The instance that runs this wake's lease task (and delivers a webhook wake):
    #: the one whose update made it, or claimed it.
    deliverer: str | None = None


@dataclass(slots=True)
class Retry:
    """A webhook subscription's delivery schedule after failed attempts.

    Stored with the wake and its lease (one change, one save: on Redis the
    same compare-and-set), so that whichever instance delivers next -- after
    the last deliverer died, stopped or its lease ran out -- keeps the
    schedule: it waits for ``next_attempt_at`` and counts on from ``attempts``.
    A delivered attempt (2xx) or an acked wake clears it.
    """

    #: Failed attempts since the last delivered one (the backoff's exponent).
    failures: int = 0
    #: Attempts of the current round (at most ``max_attempts``): a wake made when a
    #: round is unfinished (the last wake's lease ended first) continues it.
    attempts: int = 0
    #: When the next attempt is due, in the store's clock (``None``: none failed).
    next_attempt_at: float | None = None
    #: Why the last attempt failed (for operators; bounded).
    error: str = ""

    def failed(self, now: float, delay: float, error: str) -> None:
        """An attempt failed at ``now``; the next is due ``delay`` later."""
        self.failures += 1
        self.attempts += 1
        self.next_attempt_at = now + delay
        self.error = error[:200]

    def clear(self) -> None:
        self.failures = self.attempts = 0
        self.next_attempt_at = None
        self.error = ""


def fenced(message: str) -> DurableStreamError:
    return DurableStreamError(409, "FENCED", message)


#: Ended wakes' tokens a subscription remembers (each ~43 bytes).
ENDED_TOKENS_KEPT = 16


def _new_token() -> str:
    return secrets.token_urlsafe(32)


@dataclass
class Subscription:
    """A subscription's whole state (see the module docstring)."""

    owner: str | None
    id: str
    config: SubscriptionConfig
    created_at: str
    #: Where a webhook receiver acks (``POST .../callback``), as the creating request named it.
    callback_url: str = ""
    links: dict[str, Link] = field(default_factory=dict)
    generation: int = 0
    wake: Wake | None = None
    status: str = "active"
    #: The tokens of the last wakes that ended (bounded): a late request carrying
    #: one is this subscription's, so it is answered 409 ``FENCED`` in its owner's
    #: namespace rather than looked up elsewhere (a 404).
    ended_tokens: deque[str] = field(default_factory=lambda: deque(maxlen=ENDED_TOKENS_KEPT))
    #: A webhook's retry schedule (see :class:`Retry`).
    retry: Retry = field(default_factory=Retry)

    # -- membership ------------------------------------------------------------------

    def link(self, path: str, *, explicit: bool, tail: Offset, acked: Offset | None = None) -> None:
        """Link ``path`` (explicitly, or by the pattern) at ``acked`` (default: its tail: no replay).

        An existing link keeps its cursor and gains the link type.
        """
        if path == self.config.wake_stream:
            return  # a pull-wake subscription would wake itself forever
        existing = self.links.get(path)
        if existing is None:
            start = tail if acked is None else acked
            self.links[path] = Link(explicit, not explicit, start, max(tail, start))
            return
        if explicit:
            existing.explicit = True
        else:
            existing.glob = True
        if existing.tail < tail:  # (not max(): one comparison, no call; every match of an append)
            existing.tail = tail

    def unlink_explicit(self, path: str, *, still_matches: bool) -> None:
        """Remove the explicit link of ``path``; a glob link stays while the pattern matches."""
        existing = self.links.get(path)
        if existing is None:
            return
        existing.explicit = False
        existing.glob = existing.glob and still_matches
        if not existing.glob:
            del self.links[path]

    def forget(self, path: str) -> None:
        """The stream was deleted: drop its link."""
        self.links.pop(path, None)

    def observe(self, path: str, tail: Offset) -> None:
        """``path``'s tail is now ``tail`` (it only moves forward)."""
        existing = self.links.get(path)
        if existing is not None and tail > existing.tail:
            existing.tail = tail

    def has_pending(self) -> bool:
        return any(link.tail > link.acked for link in self.links.values())

    # -- wakes -----------------------------------------------------------------------

    def wake_if_pending(self, stream: str | None, now: float) -> Wake | None:
        """A new wake when none is in flight and work is pending, else ``None``."""
        if self.wake is not None or not self.has_pending():
            return None
        if stream is None or stream not in self.links or not self._pending(stream):
            stream = next(path for path, link in sorted(self.links.items()) if link.tail > link.acked)
        self.generation += 1
        wake = Wake(
            "w_" + secrets.token_hex(12),
            self.generation,
            stream,
            {path: link.tail for path, link in self.links.items()},
        )
        if self.config.type == "webhook":
            wake.token = _new_token()
            wake.holder = "webhook"
            wake.lease_deadline = now + self.config.lease_ttl
        self.wake = wake
        return wake

    def _pending(self, path: str) -> bool:
        link = self.links[path]
        return link.tail > link.acked

    def claim(self, worker: str, now: float) -> tuple[Wake, bool]:
        """Claim the wake for ``worker`` (making one if work is pending), lease from ``now``.

        Returns the wake and whether it is new (a new one has no wake event yet).

        Raises:
            DurableStreamError: 400 not pull-wake; 409 ``ALREADY_CLAIMED`` (with
                ``current_holder`` and ``generation``) or ``NO_PENDING_WORK``.
        """
        if self.config.type != "pull-wake":
            raise invalid("only a pull-wake subscription can be claimed")
        wake = self.wake
        if wake is not None and wake.holder is not None:
            raise ClaimedError(wake.holder, wake.generation)
        made = False
        if wake is None:
            wake = self.wake_if_pending(None, now)
            if wake is None:
                raise DurableStreamError(409, "NO_PENDING_WORK", "the subscription has no pending work")
            made = True
        wake.holder = worker
        wake.token = _new_token()
        wake.lease_deadline = now + self.config.lease_ttl
        # A new claim sees every link's tail now.
        wake.snapshot = {path: link.tail for path, link in self.links.items()}
        return wake, made

    def fence(self, token: str | None, wake_id: object, generation: object) -> Wake:
        """The current wake, if the request is about it with its token; else 409 ``FENCED``."""
        wake = self.wake
        if wake is None or wake.token is None or token is None:
            raise fenced("no wake is in flight for this token")
        if not hmac.compare_digest(token.encode(), wake.token.encode()):
            raise fenced("the token is not the current wake's")
        if generation != wake.generation or wake_id != wake.wake_id:
            raise fenced("wake_id or generation is stale")
        return wake

    def apply_acks(self, acks: object) -> None:
        """Move cursors forward: ``[{stream, offset}]``, all checked before any is applied.

        Raises:
            DurableStreamError: 400 ``INVALID_REQUEST`` for a malformed ack, an
                unlinked stream, or an offset past the stream's tail.
        """
        if acks is None:
            return
        if not isinstance(acks, list):
            raise invalid("acks must be a list of {stream, offset}")
        moves: list[tuple[Link, Offset]] = []
        for ack in acks:
            if not isinstance(ack, dict) or not isinstance(ack.get("stream"), str):
                raise invalid("each ack is {stream, offset}")
            link = self.links.get(ack["stream"])
            if link is None:
                raise invalid(f"{ack['stream']!r} is not a stream of this subscription")
            try:
                offset = START if ack.get("offset") == "-1" else Offset.parse(str(ack.get("offset")))
            except ValueError:
                raise invalid("an ack's offset must be an offset of the stream") from None
            if offset > link.tail:
                raise invalid(f"offset {offset} is past the tail of {ack['stream']!r}")
            moves.append((link, offset))
        for link, offset in moves:
            link.acked = max(link.acked, offset)

    def ack_snapshot(self, wake: Wake) -> None:
        """Ack every tail in ``wake``'s snapshot (a webhook answered ``{"done": true}``)."""
        for path, tail in wake.snapshot.items():
            link = self.links.get(path)
            if link is not None:
                link.acked = max(link.acked, min(tail, link.tail))

    def heartbeat(self, wake: Wake, now: float) -> None:
        """Extend ``wake``'s lease from ``now``."""
        wake.lease_deadline = now + self.config.lease_ttl

    def end_wake(self, wake: Wake) -> bool:
        """End ``wake`` if it is still current (its token stops working); True if it was."""
        if self.wake is not wake:
            return False
        if wake.token is not None:
            self.ended_tokens.append(wake.token)
        self.wake = None
        return True

    def knows_token(self, token: str) -> bool:
        """True if ``token`` is the current wake's or one of the last ended ones'."""
        current = self.wake.token if self.wake is not None else None
        return any(
            hmac.compare_digest(token.encode(), known.encode())
            for known in (current, *self.ended_tokens)
            if known is not None
        )

    # -- serialization ---------------------------------------------------------------

    def stream_infos(self, *, tails: bool) -> list[dict[str, Any]]:
        """The links, as the protocol lists them (with ``tail_offset``/``has_pending`` for a wake)."""
        infos: list[dict[str, Any]] = []
        for path, link in sorted(self.links.items()):
            info: dict[str, Any] = {
                "path": path,
                "link_type": link.link_type,
                "acked_offset": str(link.acked),
            }
            if tails:
                info["tail_offset"] = str(link.tail)
                info["has_pending"] = link.tail > link.acked
            infos.append(info)
        return infos


class ClaimedError(DurableStreamError):
    """409 ``ALREADY_CLAIMED``: another worker holds the lease."""

    def __init__(self, holder: str, generation: int) -> None:
        super().__init__(409, "ALREADY_CLAIMED", "another worker holds the subscription's lease")
        self.holder = holder
        self.generation = generation
