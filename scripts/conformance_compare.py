"""Summarize a vitest JSON report of the Durable Streams suite; fail on a regression.

Usage: python scripts/conformance_compare.py RESULTS.json EXPECTED.json [--record]

A regression is fewer passing tests than recorded, or a failure that is not
on the recorded list of known failures (each of which CONFORMANCE.md explains).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path


def summarize(report: dict) -> tuple[Counter[str], list[str]]:
    counts: Counter[str] = Counter()
    failed: list[str] = []
    for file_result in report.get("testResults", []):
        for test in file_result.get("assertionResults", []):
            status = test.get("status", "unknown")
            status = "skipped" if status in ("pending", "todo", "skipped", "disabled") else status
            counts[status] += 1
            if status == "failed":
                failed.append(test.get("fullName") or test.get("title", "?"))
    return counts, sorted(failed)


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    results, expected_path = Path(argv[0]), Path(argv[1])
    if not results.exists():
        print(f"conformance: no report at {results} (the suite did not run)", file=sys.stderr)
        return 1
    counts, failed = summarize(json.loads(results.read_text()))
    print(
        f"conformance: passed {counts['passed']}, failed {counts['failed']}, skipped {counts['skipped']}"
        f" (total {sum(counts.values())})"
    )
    for name in failed:
        print(f"  FAILED: {name}")
    if "--record" in argv[2:]:
        record = {
            "suite": "@durable-streams/server-conformance-tests@0.3.6",
            "passed": counts["passed"],
            "failed": counts["failed"],
            "skipped": counts["skipped"],
            "known_failures": failed,
        }
        expected_path.write_text(json.dumps(record, indent=2) + "\n")
        print(f"conformance: recorded in {expected_path}")
        return 0
    expected = json.loads(expected_path.read_text())
    known = set(expected.get("known_failures", []))
    new_failures = [name for name in failed if name not in known]
    if counts["passed"] < expected["passed"] or new_failures:
        print(
            f"conformance: REGRESSION: {counts['passed']} passed (recorded {expected['passed']});"
            f" new failures: {new_failures or 'none'}",
            file=sys.stderr,
        )
        return 1
    if counts["passed"] > expected["passed"]:
        print("conformance: better than recorded; run with --record to update the expected counts")
    print("conformance: OK (no regression from the recorded result)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
