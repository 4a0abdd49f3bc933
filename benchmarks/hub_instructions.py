"""Instructions per delivered event, hub against the bare channels (callgrind).

Run:  python -m benchmarks.hub_instructions [SIDE ...] [--events N] [--subscribers S] [--burst B]

Under a loaded machine wall-clock throughput swings 2-3x between rounds;
an instruction count does not. Each SIDE (``hub``, ``trio``, ``asyncio``;
all three by default) runs the fan-out scenario of ``bench_hub`` (the
batch-draining bare channels for ``trio``, ``bare_asyncio`` for
``asyncio``) twice under ``valgrind --tool=callgrind``, with ``N`` and
``2 N`` events; the difference divided by ``N * S`` is what one more
delivery costs (interpreter start-up, imports and the hub's set-up cancel
out). Prints one line per side and the hub's ratio to each.

``--one SIDE EVENTS S B`` runs one scenario without valgrind (what the
counted process runs).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile

import trio

_COLLECTED = re.compile(r"Collected : (\d+)")


def _one(side: str, events: int, subscribers: int, burst: int) -> None:
    from .bench_hub import BARE_BUFFER, fanout_bare, fanout_hub

    if side == "asyncio":
        from .bare_asyncio import run_fanout_asyncio

        _, latencies = run_fanout_asyncio(events, subscribers, burst, buffer=BARE_BUFFER)
    elif side == "hub":
        _, latencies = trio.run(fanout_hub, events, subscribers, burst)
    else:
        _, latencies = trio.run(fanout_bare, events, subscribers, burst)
    if len(latencies) != events * subscribers:
        raise SystemExit(f"{side}: delivered {len(latencies)} of {events * subscribers}")


def instructions(side: str, events: int, subscribers: int, burst: int) -> int:
    """Instructions callgrind counts for one process running the scenario."""
    with tempfile.TemporaryDirectory() as tmp:
        command = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={tmp}/out",
            sys.executable,
            "-m",
            "benchmarks.hub_instructions",
            "--one",
            side,
            str(events),
            str(subscribers),
            str(burst),
        ]
        env = dict(os.environ, PYTHONHASHSEED="0")
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    found = _COLLECTED.search(done.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count in valgrind's output:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def per_delivery(side: str, events: int, subscribers: int, burst: int) -> float:
    """Instructions one more delivery costs (the 2N run minus the N run, over N * S)."""
    small = instructions(side, events, subscribers, burst)
    large = instructions(side, 2 * events, subscribers, burst)
    return (large - small) / (events * subscribers)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("sides", nargs="*", default=["hub", "trio", "asyncio"])
    parser.add_argument("--events", type=int, default=5_000)
    parser.add_argument("--subscribers", type=int, default=1)
    parser.add_argument("--burst", type=int, default=64)
    parser.add_argument("--one", nargs=4, metavar=("SIDE", "EVENTS", "S", "B"))
    args = parser.parse_args()
    if args.one:
        side, events, subscribers, burst = args.one
        _one(side, int(events), int(subscribers), int(burst))
        return
    counts: dict[str, float] = {}
    for side in args.sides:
        counts[side] = per_delivery(side, args.events, args.subscribers, args.burst)
        print(
            f"{side} S={args.subscribers} B={args.burst}: {counts[side]:,.0f} instructions per delivery",
            flush=True,
        )
    if "hub" in counts:
        for side, count in counts.items():
            if side != "hub":
                ratio = count / counts["hub"]
                print(f"  hub / {side}: {ratio:.2f}x (the throughput ratio, at equal cost per instruction)")


if __name__ == "__main__":
    main()
