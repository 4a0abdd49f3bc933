"""The cost of validating a run's input: ``jsonschema`` (what the server uses) vs ``fastjsonschema``.

Run:  python -m benchmarks.bench_input_schema            (7 interleaved rounds)
      python -m benchmarks.bench_input_schema --quick    (3 rounds)

Cases, each validated by both libraries in interleaved rounds (every case
once per round; medians of the rounds):
  - ``demo, valid``: the demo producer's schema and a typical input;
  - ``demo, refused``: the same schema, an input with one bad field (the
    server's path: first error, then its description);
  - ``1 MiB body, valid``: an array of 42k small objects under a permissive
    schema, just under the API's default ``max_body`` (1 MiB) -- the largest
    input a request can carry, and the worst linear case.

fastjsonschema is measured only where its draft-7 reading of the schema
agrees with 2020-12 (these schemas use no keyword whose meaning changed).

Then the event loop's stall while the 1 MiB input is validated: a task
sleeping 1 ms at a time records its longest wait, with the validation run
inline (in the loop's thread) and the way the server runs it for a body
over ``OFF_LOOP_BODY`` (a worker thread, ``trio.to_thread.run_sync``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import timeit
from typing import Any

import fastjsonschema
import trio  # type: ignore[import-not-found,unused-ignore]

from trio_streams.protocol._input_schema import InputSchema, InvalidInput
from trio_streams.web._demo import demo_input_schema, demo_limits

DEMO = demo_input_schema(1_000_000, demo_limits(256 * 2**20, 2**20))
PERMISSIVE = {
    "type": "object",
    "properties": {
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"a": {"type": "integer"}, "b": {"type": "string", "maxLength": 10}},
            },
        }
    },
}
BIG = {"items": [{"a": i, "b": "xy"} for i in range(42_000)]}


def _refused(check: Any, value: Any) -> None:
    try:
        check(value)
    except (InvalidInput, fastjsonschema.JsonSchemaValueException):
        return
    raise AssertionError("expected a refusal")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rounds = 3 if args.quick else 7
    ours_demo, ours_big = InputSchema(DEMO), InputSchema(PERMISSIVE)
    fast_demo, fast_big = fastjsonschema.compile(DEMO), fastjsonschema.compile(PERMISSIVE)
    valid, bad = {"tokens": 20, "rate": 10.0, "size": 8}, {"tokens": 20, "size": 0}
    cases: dict[tuple[str, str], tuple[Any, int]] = {
        ("demo, valid", "jsonschema"): (lambda: ours_demo.validate(valid), 2000),
        ("demo, valid", "fastjsonschema"): (lambda: fast_demo(valid), 2000),
        ("demo, refused", "jsonschema"): (lambda: _refused(ours_demo.validate, bad), 2000),
        ("demo, refused", "fastjsonschema"): (lambda: _refused(fast_demo, bad), 2000),
        ("1 MiB body, valid", "jsonschema"): (lambda: ours_big.validate(BIG), 1),
        ("1 MiB body, valid", "fastjsonschema"): (lambda: fast_big(BIG), 3),
    }
    print(f"1 MiB case: {len(json.dumps(BIG))} bytes of JSON, {len(BIG['items'])} objects")
    seconds: dict[tuple[str, str], list[float]] = {case: [] for case in cases}
    for _ in range(rounds):
        for case, (function, number) in cases.items():
            seconds[case].append(timeit.timeit(function, number=number) / number)
    print(f"{'case':20} {'jsonschema':>14} {'fastjsonschema':>16} {'ratio':>8}")
    for name in dict.fromkeys(case for case, _ in cases):
        ours = statistics.median(seconds[name, "jsonschema"])
        fast = statistics.median(seconds[name, "fastjsonschema"])
        print(f"{name:20} {_us(ours):>14} {_us(fast):>16} {ours / fast:7.1f}x")
    stalls(rounds)


async def _stall(offload: bool) -> float:
    """The longest wait of a 1 ms ticker while the 1 MiB input is validated."""
    schema = InputSchema(PERMISSIVE)
    longest = 0.0
    done = trio.Event()

    async def ticker() -> None:
        nonlocal longest
        while not done.is_set():
            before = trio.current_time()
            await trio.sleep(0.001)
            longest = max(longest, trio.current_time() - before)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        await trio.sleep(0.01)
        if offload:
            await trio.to_thread.run_sync(schema.validate, BIG)
        else:
            schema.validate(BIG)
        done.set()
    return longest


def stalls(rounds: int) -> None:
    inline, offloaded = [], []
    for _ in range(rounds):
        inline.append(trio.run(_stall, False))
        offloaded.append(trio.run(_stall, True))
    print(
        f"loop stall during the 1 MiB validation: inline {_us(statistics.median(inline))}, "
        f"worker thread {_us(statistics.median(offloaded))} (median of {rounds} rounds)"
    )


def _us(value: float) -> str:
    return f"{value * 1e6:,.1f} us" if value < 0.01 else f"{value * 1e3:,.1f} ms"


if __name__ == "__main__":
    main()
