"""The protocol's refusals: one exception carrying its HTTP status, code and headers."""

from __future__ import annotations

from .._errors import StreamError


class DurableStreamError(StreamError):
    """A request the Durable Streams protocol refuses.

    The protocol defines the status of each refusal (404 unknown stream,
    409 conflict, 410 soft-deleted, ...), so the store raises it with the
    status and any headers the client needs (``Stream-Closed``,
    ``Producer-Epoch``, ...); the HTTP layer only renders it.

    Attributes:
        status: the HTTP status.
        code: a stable, machine-readable code.
        headers: response headers the protocol requires with this refusal.
    """

    def __init__(
        self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


#: The code of the 503 for a subscription whose stored state does not decode (damaged
#: or hand-edited): requests for it are refused; the registry's loops skip it.
SUBSCRIPTION_UNREADABLE = "subscription_unreadable"


def bad_request(code: str, message: str) -> DurableStreamError:
    return DurableStreamError(400, code, message)


def not_found(name: str) -> DurableStreamError:
    return DurableStreamError(404, "stream_not_found", f"no stream {name!r}")


def gone(name: str) -> DurableStreamError:
    return DurableStreamError(410, "stream_gone", f"stream {name!r} was deleted (its forks still read it)")


def conflict(code: str, message: str, headers: dict[str, str] | None = None) -> DurableStreamError:
    return DurableStreamError(409, code, message, headers=headers)
