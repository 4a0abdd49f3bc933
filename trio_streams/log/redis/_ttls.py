"""How long the runs' Redis keys live, and the lease timing (see docs/redis.md)."""

from __future__ import annotations

import math
from dataclasses import dataclass

#: The owner renews its leases this many times per ``Ttls.lease``.
RENEWALS_PER_LEASE = 6
#: The part of ``Ttls.lease`` others wait, after the lease key is gone, before
#: they claim the run (a live owner re-creates a lease within it).
CLAIM_GRACE = 1 / 3


@dataclass(frozen=True, slots=True)
class Ttls:
    """How long keys live, in seconds (see docs/redis.md).

    Attributes:
        running: meta and events of a live run; refreshed by its owner every
            lease renewal, so they outlive a crashed owner by this much.
        finished: a finished run's meta hash (and index entries).
        events_finished: a finished run's events stream.
        lease: how long after its owner stops renewing a run is declared
            ``dead``: the lease key lives ``lease * (1 - CLAIM_GRACE)`` and is
            renewed ``RENEWALS_PER_LEASE`` times per ``lease``; others claim
            the run once they have seen the key missing for ``lease *
            CLAIM_GRACE`` (time for a live owner to re-create a lease that
            expired while Redis was down).
    """

    running: float = 24 * 3600.0
    finished: float = 7 * 24 * 3600.0
    events_finished: float = 24 * 3600.0
    lease: float = 10.0

    @property
    def lease_key(self) -> float:
        """Seconds the lease key itself lives."""
        return self.lease * (1 - CLAIM_GRACE)

    @property
    def renew_every(self) -> float:
        return self.lease / RENEWALS_PER_LEASE

    def __post_init__(self) -> None:
        for name in ("running", "finished", "events_finished", "lease"):
            if not 0 < getattr(self, name) < math.inf:
                raise ValueError(f"ttl {name} must be a positive number of seconds")
