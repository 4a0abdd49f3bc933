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
from typing import Any, TextIO

import trio

from ._load import BenchOptions, Load
from ._plot import missing_reason
from ._stats import VIOLATION_KINDS, BenchStats

#: Version of the ``--json`` document (see docs/bench.md and bench.schema.json).
JSON_VERSION = 1

DESCRIPTION = """\
Load-test a trio_streams deployment (or anything serving the same run API).

Starts RUNS runs with the demo producer (POST /v1/runs), follows each with
SUBSCRIBERS SSE subscribers (GET /v1/runs/{id}/events), and measures events/s
delivered, per-event latency (the producer's timestamp to receipt: p50, p90,
p99, max), time to first event and run start latency. While loaded it checks
every stream: ids contiguous from 1, no duplicate, no hole, across forced
reconnects and cancels, ending with the right terminal event. Any violation
is reported and makes the exit status 1.
"""

EPILOG = """\
examples:
  trio-streams bench http://127.0.0.1:8000 --runs 50 --tokens 2000 --rate 200
  trio-streams bench URL --runs 10 --subscribers-per-run 20 --reconnect-every 100
  trio-streams bench URL --duration 30 --cancel-fraction 0.2 --json out.json --plot out.png

exit status: 0 all streams correct; 1 a violation was seen; 2 bad arguments.
"""


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, not {text}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, not {text}")
    return value


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    return value


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
    parser.add_argument("url", help="base URL of the server, e.g. http://127.0.0.1:8000")
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
        help="demo tokens per second per run; 0 = as fast as possible",
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
        help="drop and resume (Last-Event-ID) every K events",
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
        help="subscribe only after each run has finished: measures replay of finished runs",
    )
    parser.add_argument("--token", help="bearer token for a server with auth (never logged)")
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
        "--server-pid", type=_positive_int, help="a local server's pid: report its CPU seconds and peak RSS"
    )
    parser.add_argument(
        "--stream-timeout", type=_non_negative_float, default=120.0, help="per-run deadline (default 120 s)"
    )
    parser.add_argument("--seed", type=int, help="random seed (which runs are cancelled)")
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON ('-' for stdout)")
    parser.add_argument(
        "--plot",
        metavar="FILE",
        help="write a latency histogram and events/s plot: PNG, or SVG for a .svg name (needs matplotlib)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress display")
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


def main_with_args(args: argparse.Namespace) -> int:
    """Run the benchmark; return the exit status."""
    if not args.url.startswith(("http://", "https://")):
        print(
            f"trio-streams bench: error: URL must start with http:// or https://, not {args.url!r}",
            file=sys.stderr,
        )
        return 2
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print(
                "trio-streams bench: error: --plot needs matplotlib: pip install 'trio-streams[plot]'",
                file=sys.stderr,
            )
            return 2
    options = options_from(args)
    if args.worker:
        stats = trio.run(Load(options).run)
        print(json.dumps(stats.to_json()))
        return 0
    result = trio.run(_orchestrate, options, args)
    if not args.quiet or args.json != "-":
        print(render_summary(result), file=sys.stderr if args.json == "-" else sys.stdout)
    if args.json:
        text = json.dumps(result, indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
    if args.plot:
        from ._plot import write_plot

        write_plot(result, args.plot)
    return 1 if not result["ok"] else 0


async def _orchestrate(options: BenchOptions, args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    server = _ServerSampler(args.server_pid) if args.server_pid else None
    stats = BenchStats()
    async with trio.open_nursery() as nursery:
        if server is not None:
            server.begin()
            nursery.start_soon(server.sample_forever)
        if args.workers == 1:
            load = Load(options)
            if not args.quiet:
                nursery.start_soon(_progress, load, sys.stderr)
            stats = await load.run()
        else:
            stats = await _run_workers(options, args)
        nursery.cancel_scope.cancel()
    elapsed = time.perf_counter() - started
    return build_result(options, stats, elapsed, args.workers, server.result() if server else None)


async def _run_workers(options: BenchOptions, args: argparse.Namespace) -> BenchStats:
    """Split the runs over ``--workers`` processes and merge their stats."""
    workers = min(args.workers, options.runs)
    shares = [options.runs // workers + (1 if i < options.runs % workers else 0) for i in range(workers)]
    merged = BenchStats()

    async def one(share: int, index: int) -> None:
        worker_options = replace(
            options, runs=share, seed=None if options.seed is None else options.seed + index
        )
        command = [sys.executable, "-m", "trio_streams.bench._cli", *_argv_for(worker_options), "--worker"]
        result = await trio.run_process(command, capture_stdout=True, capture_stderr=True, check=False)
        if result.returncode != 0:
            merged.violation(
                "http_error", f"worker {index} exited {result.returncode}: {result.stderr.decode()[-300:]}"
            )
            return
        merged.merge(BenchStats.from_json(json.loads(result.stdout)))

    async with trio.open_nursery() as nursery:
        for index, share in enumerate(shares):
            nursery.start_soon(one, share, index)
    return merged


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


async def _progress(load: Load, out: TextIO) -> None:
    """A live line on a terminal; a plain line every 5 s otherwise."""
    tty = out.isatty()
    interval = 0.5 if tty else 5.0
    previous = 0
    last = time.perf_counter()
    while True:
        await trio.sleep(interval)
        stats = load.stats
        now = time.perf_counter()
        rate = (stats.events - previous) / (now - last)
        previous, last = stats.events, now
        p99 = stats.latency.percentile(0.99)
        violations = sum(stats.violations.values())
        line = (
            f"[{now - load.started_at:6.1f}s] runs {stats.runs_started} started, "
            f"{stats.runs_finished} finished, {load.live_runs} live | {rate:,.0f} events/s "
            f"| p99 {_ms(p99)} | violations {violations}"
        )
        print(f"\r{line}\x1b[K" if tty else line, end="" if tty else "\n", file=out, flush=True)


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None or math.isnan(seconds) else f"{seconds * 1000:.1f} ms"


class _ServerSampler:
    """CPU seconds and peak RSS of a local process, from /proc."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_rss = 0
        self.start_rss = 0
        self._cpu_start = 0.0
        self.error: str | None = None

    def _cpu(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def _rss(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def begin(self) -> None:
        try:
            self._cpu_start = self._cpu()
            self.peak_rss = self.start_rss = self._rss()
        except OSError as exc:
            self.error = f"cannot read /proc/{self.pid}: {exc}"

    async def sample_forever(self) -> None:
        while self.error is None:
            try:
                self.peak_rss = max(self.peak_rss, self._rss())
            except OSError as exc:
                self.error = f"server process {self.pid} went away: {exc}"
            await trio.sleep(0.25)

    def result(self) -> dict[str, Any]:
        if self.error is not None:
            return {"pid": self.pid, "error": self.error}
        try:
            cpu = self._cpu() - self._cpu_start
            self.peak_rss = max(self.peak_rss, self._rss())
        except OSError as exc:
            return {"pid": self.pid, "error": f"server process {self.pid} went away: {exc}"}
        return {
            "pid": self.pid,
            "cpu_seconds": round(cpu, 3),
            "start_rss_bytes": self.start_rss,
            "peak_rss_bytes": self.peak_rss,
        }


def build_result(
    options: BenchOptions, stats: BenchStats, elapsed: float, workers: int, server: dict[str, Any] | None
) -> dict[str, Any]:
    """The ``--json`` document (schema: trio_streams/bench/bench.schema.json)."""
    public_options = asdict(options)
    public_options["token"] = None if options.token is None else "***"
    return {
        "version": JSON_VERSION,
        "ok": not stats.failed,
        "options": public_options,
        "workers": workers,
        "elapsed_seconds": elapsed,
        "events": stats.events,
        "events_per_second": stats.events / elapsed if elapsed > 0 else 0.0,
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
        "violations": {kind: stats.violations.get(kind, 0) for kind in VIOLATION_KINDS},
        "violation_examples": stats.examples,
        "events_per_second_timeline": stats.timeline,
        "server": server,
        "raw": stats.to_json(),
    }


def render_summary(result: dict[str, Any]) -> str:
    """The human-readable table printed at the end."""
    runs = result["runs"]
    rows = [
        ("elapsed", f"{result['elapsed_seconds']:.2f} s"),
        (
            "runs started / finished / cancelled",
            f"{runs['started']} / {runs['finished']} / {runs['cancelled']}",
        ),
        ("events delivered", f"{result['events']:,}"),
        ("events/s", f"{result['events_per_second']:,.0f}"),
        ("reconnects", f"{result['reconnects']:,}"),
    ]
    for label, key in (
        ("latency", "latency_seconds"),
        ("time to first event", "first_event_seconds"),
        ("run start latency", "start_latency_seconds"),
        ("whole stream", "stream_seconds"),
    ):
        summary = result[key]
        missing = missing_reason(result, key)
        rows.append(
            (
                f"{label} p50 / p90 / p99 / max",
                f"none: {missing}"
                if missing is not None
                else " / ".join(_ms(summary[q]) for q in ("p50", "p90", "p99", "max")),
            )
        )
    server = result["server"]
    if server is not None:
        if "error" in server:
            rows.append(("server", server["error"]))
        else:
            rows.append(("server CPU seconds", f"{server['cpu_seconds']:.2f}"))
            rows.append(
                (
                    "server RSS at start / peak",
                    f"{server['start_rss_bytes'] / 2**20:.1f} / {server['peak_rss_bytes'] / 2**20:.1f} MiB",
                )
            )
    violations = {k: v for k, v in result["violations"].items() if v}
    rows.append(("violations", ", ".join(f"{k}={v}" for k, v in violations.items()) or "none"))
    width = max(len(label) for label, _ in rows)
    lines = [f"{label:<{width}}  {value}" for label, value in rows]
    lines += [f"  {example}" for example in result["violation_examples"][:10]]
    lines.append("RESULT: " + ("ok" if result["ok"] else "FAILED (stream violations above)"))
    return "\n".join(lines)


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
