"""Webhook delivery attempts: sign, POST to the checked address, bound the time, back off.

:class:`WebhookDelivery` is the registry's webhook side: it holds the
signing key and the URL rules' options, and makes one attempt at a time
(:meth:`WebhookDelivery.attempt`). When to attempt (retries inside a wake,
the next wake after a backoff) is the registry's decision
(:mod:`._sub_wakes`), from the subscription's stored schedule
(:class:`~._sub_state.Retry`: failures, attempts, ``next_attempt_at``).

Backoff after ``n`` failed attempts: ``min(60, 2 ** (n - 1))`` seconds,
times ``1 + jitter(-0.2, 0.2)`` (the protocol's numbers).
"""

from __future__ import annotations

import json
import logging
import random
from typing import TYPE_CHECKING

import trio

from ._errors import DurableStreamError
from ._sub_index import key_for_logs
from ._webhook_client import WebhookDeliveryError, post_webhook
from ._webhook_url import check_webhook_url

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from ._sub_index import SubscriptionKey
    from ._webhook_signing import WebhookSigner

logger = logging.getLogger("trio_streams.durable.subscriptions")

#: Webhook retries: first delay, cap, jitter fraction.
RETRY_FIRST = 1.0
RETRY_MAX = 60.0
RETRY_JITTER = 0.2


class WebhookDelivery:
    """Signed webhook POSTs (see the module docstring).

    Args: as :class:`~._subscriptions.SubscriptionRegistry` (``signer``,
    ``allow_loopback_http``, ``post``, ``attempt_timeout``, ``jitter``, ``resolve``).
    """

    def __init__(
        self,
        signer: WebhookSigner | None,
        *,
        allow_loopback_http: bool = False,
        post: Callable[[str, bytes, dict[str, str]], Awaitable[tuple[int, bytes]]] | None = None,
        attempt_timeout: float = 10.0,
        jitter: Callable[[float, float], float] = random.uniform,
        resolve: Callable[[str, int], Awaitable[Sequence[str]]] | None = None,
    ) -> None:
        self.signer = signer
        self.allow_loopback_http = allow_loopback_http
        self.attempt_timeout = attempt_timeout
        self._post = post or self._post_checked
        self._jitter = jitter
        self._resolve = {} if resolve is None else {"resolve": resolve}

    async def check_url(self, url: str) -> None:
        """Refuse (400 ``WEBHOOK_URL_REJECTED``) a URL the rules do not allow.

        Cancellation: cancels the DNS lookup.
        """
        await check_webhook_url(url, allow_loopback_http=self.allow_loopback_http, **self._resolve)

    def retry_delay(self, failures: int) -> float:
        """The wait before the next attempt after ``failures`` failed ones (0 for none)."""
        if failures <= 0:
            return 0.0
        base = min(RETRY_MAX, RETRY_FIRST * 2 ** (failures - 1))
        return float(base * (1 + self._jitter(-RETRY_JITTER, RETRY_JITTER)))

    async def attempt(self, key: SubscriptionKey, url: str, body: bytes) -> tuple[bool, bool, str]:
        """One signed POST of ``body``, at most ``attempt_timeout`` long.

        Returns ``(delivered, done, error)``: a 2xx, whether it answered
        ``{"done": true}``, and why it failed (``""`` when delivered).

        Cancellation: abandons the attempt (the connection closes) and propagates.
        """
        assert self.signer is not None
        headers = {"Webhook-Signature": self.signer.signature_header(body)}
        status, answer, error = 0, b"", f"no answer in {self.attempt_timeout:g} s"
        with trio.move_on_after(self.attempt_timeout):
            try:
                status, answer = await self._post(url, body, headers)
            except (WebhookDeliveryError, DurableStreamError) as exc:
                logger.info("subscription %s: webhook attempt failed: %s", key_for_logs(key), exc)
                error = str(exc)
            except Exception as exc:
                # Not the receiver's doing (a bug below): a failed attempt, loudly,
                # rather than a delivery task that dies and leaves the wake to its lease.
                logger.exception(
                    "subscription %s: webhook attempt failed unexpectedly: %r", key_for_logs(key), exc
                )
                error = f"unexpected: {exc!r}"
        if 200 <= status < 300:
            return True, _is_done(answer), ""
        return False, False, f"HTTP {status}" if status else error

    async def _post_checked(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        # Checked again at each attempt (resolved once, connected to that address).
        target = await check_webhook_url(url, allow_loopback_http=self.allow_loopback_http, **self._resolve)
        return await post_webhook(target, body, headers)


def _is_done(answer: bytes) -> bool:
    try:
        document = json.loads(answer) if answer.strip() else None
    except ValueError:
        return False
    return isinstance(document, dict) and document.get("done") is True
