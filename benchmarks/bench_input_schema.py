"""The cost of validating a run's input: ``jsonschema`` (what the server uses) vs ``fastjsonschema``.

Run:  python -m benchmarks.bench_input_schema            (7 interleaved rounds)
      python -m benchmarks.bench_input_schema --quick    (3 rounds)

Cases, each validated by both libraries in interleaved rounds (every case
once per round; medians of the rounds):
  - ``demo, valid``: the demo producer's schema and a typical input;
  - ``demo, refused``: the same schema, an input with one bad field (the
    server's path: first error, then its description);
  - ``1 MiB body, valid``: an array of 48k small objects under a permissive
    schema, just under the API's default ``max_body`` (1 MiB) -- the largest
    input a request can carry, and the worst linear case.

fastjsonschema is measured only where its draft-7 reading of the schema
agrees with 2020-12 (these schemas use no keyword whose meaning changed).
"""

from __future__ import annotations

import argparse
import json
import statistics
import timeit
from typing import Any

import fastjsonschema  # type: ignore[import-not-found,unused-ignore]

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
BIG = {"items": [{"a": i, "b": "xy"} for i in range(48_000)]}


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


def _us(value: float) -> str:
    return f"{value * 1e6:,.1f} us" if value < 0.01 else f"{value * 1e3:,.1f} ms"


if __name__ == "__main__":
    main()
