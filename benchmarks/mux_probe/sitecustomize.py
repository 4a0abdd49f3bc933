"""Where a mirror's latency goes in a benchmarked server: the owner's flushes and the shared read.

Imported at interpreter start (``sitecustomize``) by every Python process
whose ``PYTHONPATH`` starts with this directory, when
``TRIO_STREAMS_BENCH_MUX_DIR`` is set: it wraps, in the checkout found next
on ``PYTHONPATH`` (this tree or a ``--before`` one: both have these methods),

- ``RedisWriter._flush``: each flush's queue wait (its oldest event's age
  when the flush starts) and its duration;
- ``TailMux._deliver``: how many streams each reply of the shared read
  brought (replies told apart by ``TailMux.reads``);
- ``decode_entries`` as the shared read calls it: each event's age when
  the mirror gets it (the owner's publish to the mirror's delivery);

and writes ``(wall-clock time, value)`` records at exit to
``$TRIO_STREAMS_BENCH_MUX_DIR/<pid>.json`` (``benchmarks/bench_workers_live.py
--mux-profile`` reads them). Records go to ``array`` buffers (no objects for
the collector to traverse). Benchmark-only: never on a served path.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import time
from array import array
from typing import Any

_DIR = os.environ.get("TRIO_STREAMS_BENCH_MUX_DIR")
METRICS = ("queue_ms", "flush_ms", "streams_per_reply", "mirror_ms")


def _install(directory: str) -> None:
    from trio_streams.log.redis import _tails, _writer

    wall = time.time
    records = {name: (array("d"), array("d")) for name in METRICS}

    def record(name: str, value: float, at: float | None = None) -> None:
        times, values = records[name]
        times.append(wall() if at is None else at)
        values.append(value)

    flush = _writer.RedisWriter._flush

    async def timed_flush(self: Any, batch: list[Any]) -> None:
        start = wall()
        oldest = next((item[1].timestamp for item in batch if isinstance(item, tuple)), None)
        if oldest is not None:
            record("queue_ms", 1000 * (start - oldest), start)
        await flush(self, batch)
        record("flush_ms", 1000 * (wall() - start))

    _writer.RedisWriter._flush = timed_flush  # type: ignore[method-assign]

    deliver = _tails.TailMux._deliver
    current: list[Any] = [None, 0]  # (mux id, reads) of the reply being counted, its streams

    def close_reply() -> None:
        if current[0] is not None:
            record("streams_per_reply", float(current[1]))

    def counted_deliver(self: Any, tail: Any, entries: Any) -> None:
        reply = (id(self), self.reads)
        if reply != current[0]:
            close_reply()
            current[0], current[1] = reply, 0
        current[1] += 1
        deliver(self, tail, entries)

    _tails.TailMux._deliver = counted_deliver  # type: ignore[method-assign]

    decode = getattr(_tails, "decode_entries")  # noqa: B009 (not re-exported)

    def aged_decode(entries: Any, after: int) -> Any:
        events = decode(entries, after)
        now = wall()
        for event in events:
            record("mirror_ms", 1000 * (now - event.timestamp), now)
        return events

    setattr(_tails, "decode_entries", aged_decode)  # noqa: B010 (as above)

    def dump() -> None:
        close_reply()
        path = os.path.join(directory, f"{os.getpid()}.json")
        with open(path, "w") as out:
            doc = {name: [list(times), list(values)] for name, (times, values) in records.items()}
            json.dump({"argv": sys.argv, **doc}, out)

    atexit.register(dump)


if _DIR:
    _install(_DIR)
