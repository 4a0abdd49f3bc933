"""A subscription's configuration: parse, validate, normalize, hash (sans-I/O).

``PUT __ds/subscriptions/{id}`` carries a JSON document; :func:`parse_config`
turns it into a :class:`SubscriptionConfig` or refuses it (400
``INVALID_REQUEST``). The webhook URL's safety is checked elsewhere
(:mod:`._webhook_url`: it may need DNS). :attr:`SubscriptionConfig.digest`
is what idempotent re-confirmation compares: a sha256 of the normalized
configuration (streams sorted and deduplicated) as canonical JSON.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Literal

from ._errors import DurableStreamError

SubscriptionType = Literal["webhook", "pull-wake"]

#: Lease bounds (milliseconds), from the protocol: 1 s to 10 min, 30 s by default.
MIN_LEASE_MS = 1_000
MAX_LEASE_MS = 600_000
DEFAULT_LEASE_MS = 30_000
#: Limits on what one document may carry.
MAX_ID_LENGTH = 256
MAX_STREAMS = 1_000
MAX_PATH_LENGTH = 1024
MAX_DESCRIPTION = 1024
MAX_URL_LENGTH = 2048

_ID = re.compile(r"^[A-Za-z0-9._~:@-]+$")
_FIELDS = frozenset({"type", "pattern", "streams", "webhook", "wake_stream", "lease_ttl_ms", "description"})


def invalid(message: str) -> DurableStreamError:
    """400 ``INVALID_REQUEST`` (the protocol's code for a bad subscription request)."""
    return DurableStreamError(400, "INVALID_REQUEST", message)


@dataclass(frozen=True, slots=True)
class SubscriptionConfig:
    """A validated, normalized subscription configuration."""

    type: SubscriptionType
    pattern: str | None
    streams: tuple[str, ...]
    webhook_url: str | None
    wake_stream: str | None
    lease_ttl_ms: int
    description: str | None

    @property
    def lease_ttl(self) -> float:
        """The lease, in seconds."""
        return self.lease_ttl_ms / 1000

    @property
    def digest(self) -> str:
        """sha256 of the normalized configuration (what re-confirmation compares)."""
        canonical = json.dumps(
            [
                self.type,
                self.pattern,
                list(self.streams),
                self.webhook_url,
                self.wake_stream,
                self.lease_ttl_ms,
                self.description,
            ],
            separators=(",", ":"),
        )
        return hashlib.sha256(canonical.encode()).hexdigest()


def check_id(subscription_id: str) -> str:
    """Refuse (400) an id that is empty, too long or has characters outside ``[A-Za-z0-9._~:@-]``."""
    if len(subscription_id) > MAX_ID_LENGTH or not _ID.match(subscription_id):
        raise invalid(f"a subscription id is 1-{MAX_ID_LENGTH} of [A-Za-z0-9._~:@-]")
    return subscription_id


def check_path(path: object, what: str) -> str:
    """A stream-root-relative path: a non-empty string, no control characters, no empty/dot segments."""
    if not isinstance(path, str) or not path or len(path) > MAX_PATH_LENGTH:
        raise invalid(f"{what} must be a stream path of 1-{MAX_PATH_LENGTH} characters")
    if any(ord(char) < 0x20 or char == "\x7f" for char in path):
        raise invalid(f"{what} may not contain control characters")
    if any(segment in ("", ".", "..") for segment in path.split("/")):
        raise invalid(f"{what} may not have empty, '.' or '..' segments")
    if path.startswith("__ds/") or path == "__ds":
        raise invalid(f"{what} may not be under the reserved __ds/ prefix")
    return path


def check_paths(value: object, what: str = "streams") -> tuple[str, ...]:
    """A list of stream paths, deduplicated and sorted."""
    if not isinstance(value, list) or len(value) > MAX_STREAMS:
        raise invalid(f"{what} must be a list of at most {MAX_STREAMS} stream paths")
    return tuple(sorted({check_path(item, f"each of {what}") for item in value}))


def parse_config(document: object) -> SubscriptionConfig:
    """The configuration a ``PUT`` asks for.

    Raises:
        DurableStreamError: 400 ``INVALID_REQUEST`` for anything malformed.
    """
    if not isinstance(document, dict):
        raise invalid("a subscription is a JSON object")
    unknown = set(document) - _FIELDS
    if unknown:
        raise invalid(f"unknown fields: {', '.join(sorted(map(str, unknown)))}")
    kind = document.get("type")
    if kind not in ("webhook", "pull-wake"):
        raise invalid("type must be 'webhook' or 'pull-wake'")
    pattern = document.get("pattern")
    if pattern is not None:
        pattern = check_path(pattern, "pattern")
    streams = check_paths(document.get("streams", []))
    if pattern is None and not streams:
        raise invalid("a subscription needs a pattern or streams")
    webhook_url = wake_stream = None
    if kind == "webhook":
        webhook = document.get("webhook")
        if not isinstance(webhook, dict) or set(webhook) - {"url"}:
            raise invalid("webhook must be an object with only url")
        url = webhook.get("url")
        if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
            raise invalid("a webhook subscription needs webhook.url")
        if document.get("wake_stream") is not None:
            raise invalid("wake_stream is for pull-wake subscriptions")
        webhook_url = url
    else:
        if document.get("webhook") is not None:
            raise invalid("webhook is for webhook subscriptions")
        wake_stream = check_path(document.get("wake_stream"), "wake_stream")
    lease = document.get("lease_ttl_ms", DEFAULT_LEASE_MS)
    if isinstance(lease, bool) or not isinstance(lease, int) or not MIN_LEASE_MS <= lease <= MAX_LEASE_MS:
        raise invalid(f"lease_ttl_ms must be an integer from {MIN_LEASE_MS} to {MAX_LEASE_MS}")
    description = document.get("description")
    if description is not None and (not isinstance(description, str) or len(description) > MAX_DESCRIPTION):
        raise invalid(f"description must be a string of at most {MAX_DESCRIPTION} characters")
    return SubscriptionConfig(kind, pattern, streams, webhook_url, wake_stream, lease, description)
