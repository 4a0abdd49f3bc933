"""CPU time per append (memory store) with 1,000 glob subscriptions, matching one or none.

Run from the tree to measure (it imports ``trio_streams`` from the current directory):

    python benchmarks/bench_subscriptions_cpu.py tenant7/s   # 1 match
    python benchmarks/bench_subscriptions_cpu.py other/s     # no match

Prints the stream and microseconds of CPU (``time.process_time``) per append,
over 20,000 appends after the first wake (the wake stays in flight: the
steady state of a busy stream). Compare two trees by interleaving runs of
each (benchmarks/RESULTS.md gives the loop).
"""

from __future__ import annotations

import sys
import time

sys.path.insert(0, ".")

import trio
import trio.testing

from trio_streams.durable import DurableStreamStore
from trio_streams.durable._backend import as_backend
from trio_streams.durable._stream import AppendRequest, CreateRequest
from trio_streams.durable._sub_backend import with_subscriptions
from trio_streams.durable._sub_config import parse_config

APPENDS = 20_000
SUBSCRIPTIONS = 1_000


async def measure(target: str) -> float:
    """Microseconds of CPU per append to ``target``."""
    store = DurableStreamStore(max_bytes=1024**3)
    backend = with_subscriptions(as_backend(store))
    async with trio.open_nursery() as nursery:
        registry = backend.registry
        await nursery.start(registry.serve)
        await backend.create("wake/pool", CreateRequest(content_type="application/json"))
        for i in range(SUBSCRIPTIONS):
            pattern = f"*/x{i}" if i % 100 == 99 else f"tenant{i}/*"
            config = {"type": "pull-wake", "pattern": pattern, "wake_stream": "wake/pool"}
            await registry.put(None, f"s{i}", parse_config(config), "http://localhost/cb")
        await backend.create(target, CreateRequest(content_type="application/octet-stream"))
        request = AppendRequest(b"x" * 64, "application/octet-stream")
        await backend.append(target, request)  # (the first wake, out of the measurement)
        await trio.testing.wait_all_tasks_blocked()
        started = time.process_time()
        for _ in range(APPENDS):
            await backend.append(target, request)
        elapsed = time.process_time() - started
        nursery.cancel_scope.cancel()
    return elapsed / APPENDS * 1e6


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else "tenant7/s"
    print(target, f"{trio.run(measure, target):.2f}")
