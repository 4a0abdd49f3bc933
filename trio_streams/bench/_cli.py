"""``trio-streams bench``: the command line, workers, progress and reports."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import trio

from ._load import BenchOptions, Load, unreachable
from ._pace import DEFAULT_MAX_LAG, EXIT_USAGE, exit_status, pace
from ._report import progress, render_summary
from ._server import ServerGone, ServerSampler
from ._stats import VIOLATION_KINDS, BenchStats

#: Version of the ``--json`` document (see docs/bench.md and bench.schema.json).
#: 2: ``ok`` is also false when the load fell behind; ``pace``, the schedule
#: histograms and the server's process count were added.
JSON_VERSION = 2


class UsageError(Exception):
    """The load could not be run at all (exit status 2, one line on stderr)."""


DESCRIPTION = """\
Load-test a trio_streams deployment (or anything serving the same run API).

Starts RUNS runs with the demo producer (POST /v1/runs), follows each with
SUBSCRIBERS SSE subscribers (GET /v1/runs/{id}/events), and measures events/s
delivered, per-event latency (the producer's timestamp to receipt: p50, p90,
p99, max), time to first event and run start latency. While loaded it checks
every stream: ids contiguous from 1, no duplicate, no hole, across forced
reconnects and cancels, ending with the right terminal event.

With --rate, each token also has a scheduled time (the run was requested at
T, token n is due at T + (n-1)/rate): it reports the requested and achieved
events/s, latency from the schedule and the producer's lag behind it. A load
whose p99 latency from the schedule exceeds --max-lag fell BEHIND: the
server did not keep the pace asked of it, and the result is not ok.
"""

EPILOG = """\
examples:
  trio-streams bench http://127.0.0.1:8000 --runs 50 --tokens 2000 --rate 200
  trio-streams bench URL --runs 10 --subscribers-per-run 20 --reconnect-every 100
  trio-streams bench URL --duration 30 --cancel-fraction 0.2 --json out.json --plot out.png

exit status:
  0  ok: every stream correct, and (with --rate) the pace kept within --max-lag
  1  a stream violation was seen (hole, duplicate, wrong terminal, HTTP error, ...)
  2  usage error: bad arguments (a URL with /v1 in it, an unwritable --json or --plot
     path), the server unreachable or --server-pid not running before the load, no
     run API at the URL (404), or the server refused the runs themselves (unknown
     producer, invalid input); nothing was measured
  3  BEHIND: no violation, but the load fell behind its schedule by more than --max-lag
"""


def _number(text: str, kind: type[int] | type[float]) -> float:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not {'an integer' if kind is int else 'a number'}: {text!r}"
        ) from None


def _positive_int(text: str) -> int:
    value = int(_number(text, int))
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _non_negative_float(text: str) -> float:
    value = _number(text, float)
    if not value >= 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, not {text}")
    return value


def _positive_float(text: str) -> float:
    value = _non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, not {text}")
    return value


def _fraction(text: str) -> float:
    value = _number(text, float)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, not {text}")
    return value


def _seed(text: str) -> int:
    return int(_number(text, int))


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    return value


def _output_problem(flag: str, name: str) -> str | None:
    """Why ``name`` cannot be written (``None`` if it looks writable): checked
    before the load, so a typo does not cost a whole run's results."""
    path = Path(name)
    if path.is_dir():
        return f"{flag} {name}: is a directory"
    parent = path.parent
    if not parent.is_dir():
        return f"{flag} {name}: no directory {str(parent)!r}"
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        return f"{flag} {name}: not writable"
    return None


def _base_url_problem(url: str) -> str | None:
    """Why ``url`` is not a base URL bench can use (``None`` if it is).

    bench appends ``/v1/runs`` itself; a path in ``url`` is the prefix a
    reverse proxy mounts the server under (``serve --root-path``), so a path
    ending in ``/v1`` (or reaching into the API) is the API's own path given
    by mistake.
    """
    if not url.startswith(("http://", "https://")):
        return f"URL must start with http:// or https://, not {url!r}"
    parts = urlsplit(url)
    if not parts.hostname:
        return f"URL has no host: {url!r}"
    try:
        parts.port  # noqa: B018 (parsing it is the check)
    except ValueError:
        return f"URL has a bad port: {url!r}"
    if parts.query or parts.fragment:
        return f"URL must not have a query or fragment: {url!r}"
    segments = parts.path.split("/")
    if "v1" in segments:
        base = urlunsplit((parts.scheme, parts.netloc, "/".join(segments[: segments.index("v1")]), "", ""))
        return (
            f"URL is the server's base, without /v1 (bench adds /v1/runs itself): try {base!r}, not {url!r}"
        )
    return None


def add_parser(subparsers: argparse._SubParsersAction[Any]) -> argparse.ArgumentParser:
    """Register ``bench`` on a ``trio-streams`` sub-command parser."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "bench",
        help="load-test a deployment and check every stream",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    configure(parser)
    parser.set_defaults(func=main_with_args)
    return parser


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "url",
        help="base URL of the server, without /v1 (bench adds /v1/runs): e.g. http://127.0.0.1:8000, "
        "or https://host/api behind a proxy that mounts it under /api (serve --root-path /api)",
    )
    parser.add_argument("--runs", type=_positive_int, default=10, help="concurrent runs (default 10)")
    parser.add_argument(
        "--subscribers-per-run",
        type=_positive_int,
        default=1,
        metavar="S",
        help="SSE subscribers per run (default 1)",
    )
    parser.add_argument("--tokens", type=_positive_int, default=100, help="demo tokens per run (default 100)")
    parser.add_argument(
        "--rate",
        type=_non_negative_float,
        default=0.0,
        help="demo tokens per second per run; 0 = as fast as possible (default 0)",
    )
    parser.add_argument("--size", type=_positive_int, default=16, help="demo bytes per token (default 16)")
    parser.add_argument(
        "--duration",
        type=_non_negative_float,
        help="keep starting runs for this many seconds (each slot starts a new run when its run ends); "
        "default: each of the RUNS runs once",
    )
    parser.add_argument(
        "--reconnect-every",
        type=_positive_int,
        metavar="K",
        help="drop and resume (Last-Event-ID) every K events (default: never)",
    )
    parser.add_argument(
        "--cancel-fraction",
        type=_fraction,
        default=0.0,
        metavar="F",
        help="cancel each run with probability F (0..1), halfway through its tokens; "
        "a cancelled run's streams must end 'cancelled' (default 0)",
    )
    parser.add_argument(
        "--replay",
        action="store_true",
        help="subscribe only after each run has finished: measures replay of finished runs (default: off, "
        "subscribe as each run starts)",
    )
    parser.add_argument("--token", help="bearer token for a server with auth (never logged; default: none)")
    parser.add_argument("--producer", default="demo", help="producer name (default demo)")
    parser.add_argument(
        "--input",
        type=_json_object,
        help="JSON input for the producer (default: the demo input from the flags)",
    )
    parser.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        help="load-generator processes sharing the runs (default 1)",
    )
    parser.add_argument(
        "--max-lag",
        type=_non_negative_float,
        default=DEFAULT_MAX_LAG,
        metavar="SECONDS",
        help="with --rate: the load fell BEHIND (not ok, exit 3) when the p99 of latency from each "
        f"token's scheduled time exceeds this (default {DEFAULT_MAX_LAG:g} s)",
    )
    parser.add_argument(
        "--server-pid",
        type=_positive_int,
        metavar="PID",
        help="a local server's pid: report the CPU seconds and peak RSS of it and all its "
        "child processes (serve --workers) (default: none, no server figures)",
    )
    parser.add_argument(
        "--stream-timeout",
        type=_positive_float,
        default=120.0,
        metavar="SECONDS",
        help="per-run deadline (default 120 s)",
    )
    parser.add_argument(
        "--seed",
        type=_seed,
        help="random seed (which runs are cancelled; default: none, a new draw each time)",
    )
    parser.add_argument(
        "--json", metavar="FILE", help="write the results as JSON ('-' for stdout; default: none)"
    )
    parser.add_argument(
        "--plot",
        metavar="FILE",
        help="write a latency histogram and events/s plot: PNG, or SVG for a .svg name (needs matplotlib; "
        "default: none)",
    )
    parser.add_argument(
        "--quiet", action="store_true", help="no progress display (default: progress on stderr)"
    )
    # Internal: a worker process prints its raw stats as JSON on stdout.
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)


def options_from(args: argparse.Namespace) -> BenchOptions:
    return BenchOptions(
        url=args.url,
        runs=args.runs,
        subscribers_per_run=args.subscribers_per_run,
        tokens=args.tokens,
        rate=args.rate,
        size=args.size,
        duration=args.duration,
        reconnect_every=args.reconnect_every,
        cancel_fraction=args.cancel_fraction,
        token=args.token,
        producer=args.producer,
        input=args.input,
        stream_timeout=args.stream_timeout,
        seed=args.seed,
        replay=args.replay,
    )


def _usage_error(message: str) -> int:
    print(f"trio-streams bench: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def main_with_args(args: argparse.Namespace) -> int:
    """Run the benchmark; return the exit status (see ``EPILOG``)."""
    problem = _base_url_problem(args.url)
    if problem is not None:
        return _usage_error(problem)
    for flag, name in (("--json", args.json), ("--plot", args.plot)):
        problem = None if not name or name == "-" or args.worker else _output_problem(flag, name)
        if problem is not None:
            return _usage_error(problem)
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            return _usage_error("--plot needs matplotlib: pip install 'trio-streams[plot]'")
    options = options_from(args)
    if args.worker:
        load = Load(options)
        stats = trio.run(load.run)
        if load.usage_error is not None:
            return _usage_error(load.usage_error)
        print(json.dumps(stats.to_json()))
        return 0
    try:
        result = trio.run(_orchestrate, options, args)
    except UsageError as exc:
        return _usage_error(str(exc))
    if not args.quiet or args.json != "-":
        print(render_summary(result), file=sys.stderr if args.json == "-" else sys.stdout)
    try:
        if args.json:
            text = json.dumps(result, indent=2)
            if args.json == "-":
                print(text)
            else:
                Path(args.json).write_text(text + "\n")
        if args.plot:
            from ._plot import write_plot

            write_plot(result, args.plot)
    except OSError as exc:  # checked before the load, but the disk may fill or a directory go
        return _usage_error(f"cannot write the results: {exc}")
    return int(result["exit_status"])


async def _orchestrate(options: BenchOptions, args: argparse.Namespace) -> dict[str, Any]:
    """Check the server is there, run the load, build the result.

    Raises:
        UsageError: the server is unreachable, ``--server-pid`` is not running,
            or the server refused the runs themselves.
    """
    server = ServerSampler(args.server_pid) if args.server_pid else None
    if server is not None:
        try:
            server.begin()
        except ServerGone as exc:
            raise UsageError(f"--server-pid {args.server_pid}: {exc}") from None
    reason = await unreachable(options)
    if reason is not None:
        raise UsageError(reason)
    started = time.perf_counter()
    stats = BenchStats()
    refused: str | None = None
    async with trio.open_nursery() as nursery:
        if server is not None:
            nursery.start_soon(server.sample_forever)
        if args.workers == 1:
            load = Load(options)
            if not args.quiet:
                nursery.start_soon(progress, load, sys.stderr)
            stats = await load.run()
            refused = load.usage_error
        else:
            stats, refused = await _run_workers(options, args)
        nursery.cancel_scope.cancel()
    if refused is not None:
        raise UsageError(refused)
    elapsed = time.perf_counter() - started
    return build_result(
        options, stats, elapsed, args.workers, server.result() if server else None, max_lag=args.max_lag
    )


async def _run_workers(options: BenchOptions, args: argparse.Namespace) -> tuple[BenchStats, str | None]:
    """Split the runs over ``--workers`` processes; their merged stats, and a
    worker's usage error (the server refused the runs) if one had one."""
    workers = min(args.workers, options.runs)
    shares = [options.runs // workers + (1 if i < options.runs % workers else 0) for i in range(workers)]
    merged = BenchStats()
    refused: list[str] = []

    async def one(share: int, index: int) -> None:
        worker_options = replace(
            options, runs=share, seed=None if options.seed is None else options.seed + index
        )
        command = [sys.executable, "-m", "trio_streams.bench._cli", *_argv_for(worker_options), "--worker"]
        result = await trio.run_process(command, capture_stdout=True, capture_stderr=True, check=False)
        if result.returncode == EXIT_USAGE:
            lines = result.stderr.decode().strip().splitlines() or [f"worker {index}: usage error"]
            refused.append(lines[-1].removeprefix("trio-streams bench: error: "))
            return
        if result.returncode != 0:
            merged.violation(
                "http_error", f"worker {index} exited {result.returncode}: {result.stderr.decode()[-300:]}"
            )
            return
        merged.merge(BenchStats.from_json(json.loads(result.stdout)))

    async with trio.open_nursery() as nursery:
        for index, share in enumerate(shares):
            nursery.start_soon(one, share, index)
    return merged, (refused[0] if refused else None)


def _argv_for(options: BenchOptions) -> list[str]:
    argv = [
        options.url,
        f"--runs={options.runs}",
        f"--subscribers-per-run={options.subscribers_per_run}",
        f"--tokens={options.tokens}",
        f"--rate={options.rate}",
        f"--size={options.size}",
        f"--cancel-fraction={options.cancel_fraction}",
        f"--producer={options.producer}",
        f"--stream-timeout={options.stream_timeout}",
    ]
    if options.duration is not None:
        argv.append(f"--duration={options.duration}")
    if options.reconnect_every is not None:
        argv.append(f"--reconnect-every={options.reconnect_every}")
    if options.token is not None:
        argv.append(f"--token={options.token}")
    if options.input is not None:
        argv.append(f"--input={json.dumps(options.input)}")
    if options.seed is not None:
        argv.append(f"--seed={options.seed}")
    if options.replay:
        argv.append("--replay")
    return argv


def build_result(
    options: BenchOptions,
    stats: BenchStats,
    elapsed: float,
    workers: int,
    server: dict[str, Any] | None,
    *,
    max_lag: float = DEFAULT_MAX_LAG,
) -> dict[str, Any]:
    """The ``--json`` document (schema: trio_streams/bench/bench.schema.json).

    ``ok`` is false on any stream violation *and* when the load fell behind
    its schedule by more than ``max_lag`` (``pace.behind``); ``exit_status``
    says which.
    """
    public_options = asdict(options)
    public_options["token"] = None if options.token is None else "***"
    achieved = stats.events / elapsed if elapsed > 0 else 0.0
    schedule = stats.schedule_latency.summary()
    p99 = schedule["p99"]
    pace_result = pace(public_options, achieved, None if p99 is None else float(p99), max_lag)
    status = exit_status(stats.failed, pace_result["behind"])
    return {
        "version": JSON_VERSION,
        "ok": status == 0,
        "exit_status": status,
        "options": public_options,
        "workers": workers,
        "elapsed_seconds": elapsed,
        "events": stats.events,
        "events_per_second": achieved,
        "pace": pace_result,
        "bytes": stats.bytes,
        "runs": {
            "started": stats.runs_started,
            "finished": stats.runs_finished,
            "cancelled": stats.runs_cancelled,
        },
        "reconnects": stats.reconnects,
        "heartbeats": stats.heartbeats,
        "latency_seconds": stats.latency.summary(),
        "first_event_seconds": stats.first_event.summary(),
        "start_latency_seconds": stats.start_latency.summary(),
        "stream_seconds": stats.stream_duration.summary(),
        "latency_from_schedule_seconds": schedule,
        "producer_lag_seconds": stats.producer_lag.summary(),
        "violations": {kind: stats.violations.get(kind, 0) for kind in VIOLATION_KINDS},
        "violation_examples": stats.examples,
        "events_per_second_timeline": stats.timeline,
        "server": server,
        "raw": stats.to_json(),
    }


def main(argv: list[str] | None = None) -> int:
    """``trio-streams bench`` on its own (also how worker processes start)."""
    parser = argparse.ArgumentParser(
        prog="trio-streams bench",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    configure(parser)
    return main_with_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
