"""HTTP benchmarks: ``trio-streams serve`` on Hypercorn, loaded by
``trio-streams bench`` in separate processes, beside the ceiling (Hypercorn +
Quart-Trio writing pre-encoded bytes, ``benchmarks/ceiling_app.py``) in two
forms: the same batch size as our SSE writer (1,024 events per write, each
write's bytes joined once and cached) and the whole pre-encoded body as one
write. The ratio is taken against the stronger of the two in each round.

Run:  python -m benchmarks.bench_http            (full sizes, 3 rounds)
      python -m benchmarks.bench_http --quick    (small sizes, 1 round)
      python -m benchmarks.bench_http --replay-only --rounds 7   (only (a) by curl, tightly interleaved)

Scenarios (issue 4): (a) one client replaying a finished 50,000-event run,
ours and the ceiling, interleaved; (b) 50 clients each following a live run
of 5,000 events; (c) 1,000 idle SSE connections, server memory per
connection. Writes the table to stdout (paste into RESULTS.md) and the plots
of the last round beside this file (``http-*.png``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent


@dataclass(frozen=True)
class Sizes:
    replay_events: int
    live_runs: int
    live_events: int
    live_rates: tuple[float, ...]
    idle_connections: int
    idle_seconds: float
    rounds: int


FULL = Sizes(50_000, 50, 5_000, (50.0, 200.0), 1_000, 20.0, 3)
QUICK = Sizes(2_000, 5, 200, (50.0, 200.0), 50, 3.0, 1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A server process on a free port; ``url`` once it answers."""

    def __init__(
        self, command: list[str], port: int, ready_path: str, env: dict[str, str] | None = None
    ) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=None if env is None else {**os.environ, **env},
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{command[:3]} exited: {self.process.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                    sock.sendall(
                        f"GET {ready_path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
                    )
                    if sock.recv(12).startswith(b"HTTP/1.1 "):
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{command[:3]} did not answer on port {port} within 30 s")

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        finally:
            if self.process.stderr is not None:
                self.process.stderr.close()


def ours() -> Server:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "trio_streams",
        "serve",
        f"--bind=127.0.0.1:{port}",
        "--log-level=warning",
    ]
    return Server(command, port, "/healthz")


#: The ceilings, by label: events per write (``CEILING_CHUNK``; 0 = the whole body).
CEILINGS = {"ceiling, 1,024 events per write": 1024, "ceiling, whole body in one write": 0}


def ceiling(chunk: int = 1024) -> Server:
    """The ceiling app writing ``chunk`` events per write (0: the whole body at once)."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "hypercorn",
        "--worker-class=trio",
        f"--bind=127.0.0.1:{port}",
        "benchmarks.ceiling_app:app",
    ]
    return Server(command, port, "/v1/runs/none", env={"CEILING_CHUNK": str(chunk)})


def bench(url: str, *args: str, plot: Path | None = None) -> dict[str, Any]:
    """Run ``trio-streams bench`` as a separate process; return its JSON."""
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "out.json"
        command = [sys.executable, "-m", "trio_streams", "bench", url, "--quiet", f"--json={out}", *args]
        if plot is not None:
            command.append(f"--plot={plot}")
        result = subprocess.run(command, capture_output=True, check=False)
        if result.returncode not in (0, 1) or not out.exists():
            raise RuntimeError(f"bench failed ({result.returncode}): {result.stderr.decode()[-2000:]}")
        document: dict[str, Any] = json.loads(out.read_text())
    if not document["ok"]:
        raise RuntimeError(
            f"stream violations: {document['violations']} {document['violation_examples'][:3]}"
        )
    return document


def replay_with_curl(base_url: str, tokens: int) -> float:
    """Events/s of one finished run read by curl (a C client, so the figure is
    the server's, not a Python parser's); every id is checked afterwards."""
    request = urllib.request.Request(
        f"{base_url}/v1/runs",
        data=json.dumps({"producer": "demo", "input": {"tokens": tokens, "rate": None}}).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        run_id = json.load(response)["run_id"]
    deadline = time.monotonic() + 60
    while True:
        with urllib.request.urlopen(f"{base_url}/v1/runs/{run_id}", timeout=30) as response:
            if json.load(response)["status"] == "done":
                break
        if time.monotonic() > deadline:
            raise RuntimeError(f"run {run_id} did not finish within 60 s")
        time.sleep(0.05)
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "events.txt"
        result = subprocess.run(
            [
                "curl",
                "-sS",
                "-N",
                "-o",
                str(out),
                "-w",
                "%{time_total}",
                f"{base_url}/v1/runs/{run_id}/events",
            ],
            capture_output=True,
            check=True,
        )
        ids = [int(line[4:]) for line in out.read_bytes().splitlines() if line.startswith(b"id: ")]
    if ids != list(range(1, tokens + 2)):
        raise RuntimeError(f"curl replay of {run_id}: {len(ids)} ids, not 1..{tokens + 1} in order")
    return (tokens + 1) / float(result.stdout)


def median(values: list[float]) -> float:
    return statistics.median(values)


def measure_all(sizes: Sizes, *, plots: bool = True) -> dict[str, Any]:
    """Every scenario, ``sizes.rounds`` rounds, ours and the ceilings interleaved
    per round. Returns the samples by name (events/s, seconds, bytes)."""
    curl = shutil.which("curl") is not None
    figures: dict[str, Any] = {
        "sizes": sizes,
        "curl": curl,
        "replay": {"ours": [], **{name: [] for name in CEILINGS}},
        "curl_replay": {"ours": [], **{name: [] for name in CEILINGS}},
        # Per live rate: p50s, p99s and delivered events/s of each round.
        "live_p50": {rate: [] for rate in sizes.live_rates},
        "live_p99": {rate: [] for rate in sizes.live_rates},
        "live_rate": {rate: [] for rate in sizes.live_rates},
        "idle_per_connection": [],
    }
    for round_index in range(sizes.rounds):
        last = plots and round_index == sizes.rounds - 1
        server = ours()
        try:
            replay = bench(server.url, "--runs=1", f"--tokens={sizes.replay_events}", "--replay")
            figures["replay"]["ours"].append(replay["events"] / _stream_seconds(replay))
            if curl:
                figures["curl_replay"]["ours"].append(replay_with_curl(server.url, sizes.replay_events))
            for rate in sizes.live_rates:
                live = bench(
                    server.url,
                    f"--runs={sizes.live_runs}",
                    f"--tokens={sizes.live_events}",
                    f"--rate={rate}",
                    f"--server-pid={server.pid}",
                    plot=HERE / f"http-live-{rate:g}.png" if last else None,
                )
                figures["live_p50"][rate].append(live["latency_seconds"]["p50"])
                figures["live_p99"][rate].append(live["latency_seconds"]["p99"])
                figures["live_rate"][rate].append(live["events_per_second"])
            per_run = sizes.idle_connections // 10
            idle = bench(
                server.url,
                "--runs=10",
                f"--subscribers-per-run={per_run}",
                "--tokens=1",
                f"--rate={1 / sizes.idle_seconds}",
                f"--server-pid={server.pid}",
            )
            grown = idle["server"]["peak_rss_bytes"] - idle["server"]["start_rss_bytes"]
            figures["idle_per_connection"].append(grown / (10 * per_run))
        finally:
            server.stop()
        for name, chunk in CEILINGS.items():
            top = ceiling(chunk)
            try:
                replay = bench(top.url, "--runs=1", f"--tokens={sizes.replay_events}", "--replay")
                figures["replay"][name].append(replay["events"] / _stream_seconds(replay))
                if curl:
                    figures["curl_replay"][name].append(replay_with_curl(top.url, sizes.replay_events))
            finally:
                top.stop()
    return figures


def report(figures: dict[str, Any]) -> str:
    """The table for RESULTS.md: medians, and ours / the stronger ceiling."""
    sizes: Sizes = figures["sizes"]
    lines = [
        f"{sizes.rounds} round(s) interleaved, medians; Python {sys.version.split()[0]}, "
        f"{os.cpu_count()} CPUs; ratio = ours / the stronger ceiling",
        "",
        f"| scenario | trio_streams | {' | '.join(CEILINGS)} | ratio |",
        f"|---|---:|{'---:|' * len(CEILINGS)}---:|",
    ]
    readers = [("replay", "1 client (`trio-streams bench --replay`)")]
    if figures["curl"]:
        readers.append(("curl_replay", "read by curl (the server's rate, not the Python client's)"))
    for key, reader in readers:
        rates = {name: median(samples) for name, samples in figures[key].items()}
        best = max(rates[name] for name in CEILINGS)
        cells = " | ".join(f"{rates[name]:,.0f} events/s" for name in CEILINGS)
        lines.append(
            f"| (a) replay a finished {sizes.replay_events:,}-event run, {reader} "
            f"| {rates['ours']:,.0f} events/s | {cells} | {rates['ours'] / best:.2f}x |"
        )
    if not figures["curl"]:
        lines.append(f"| (a) the same, read by curl | curl not found |{' - |' * len(CEILINGS)} - |")
    dashes = " - |" * len(CEILINGS)
    for rate in sizes.live_rates:
        lines.append(
            f"| (b) {sizes.live_runs} clients x live run of {sizes.live_events:,} events at "
            f"{rate:g}/s ({sizes.live_runs * rate:,.0f}/s in all): latency p50 / p99 "
            f"| {median(figures['live_p50'][rate]) * 1000:.1f} / "
            f"{median(figures['live_p99'][rate]) * 1000:.1f} ms "
            f"({median(figures['live_rate'][rate]):,.0f} events/s delivered) |{dashes} - |"
        )
    lines.append(
        f"| (c) {sizes.idle_connections:,} idle SSE connections: server memory per connection "
        f"| {median(figures['idle_per_connection']) / 1024:.1f} KiB |{dashes} - |"
    )
    return "\n".join(lines)


def replay_interleaved(rounds: int, events: int) -> dict[str, list[float]]:
    """Scenario (a) read by curl, interleaved as tightly as it gets: ours and
    both ceilings up at once; each round reads one fresh ``events``-event run
    from each server in turn. Events/s per server, one sample per round."""
    servers = {"ours": ours()}
    try:
        for name, chunk in CEILINGS.items():
            servers[name] = ceiling(chunk)
        rates: dict[str, list[float]] = {name: [] for name in servers}
        for _ in range(rounds):
            for name, server in servers.items():
                rates[name].append(replay_with_curl(server.url, events))
    finally:
        for server in servers.values():
            server.stop()
    return rates


def report_replay(rates: dict[str, list[float]], events: int) -> str:
    best = max(median(rates[name]) for name in CEILINGS)
    lines = [
        f"| replay of a finished {events:,}-event run, read by curl, {len(rates['ours'])} interleaved rounds "
        "| median | ratio to the stronger ceiling |",
        "|---|---:|---:|",
    ]
    lines += [
        f"| {'trio_streams' if name == 'ours' else name} | {median(values):,.0f} events/s "
        f"| {median(values) / best:.2f}x |"
        for name, values in rates.items()
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, one round")
    parser.add_argument(
        "--replay-only",
        action="store_true",
        help="only (a) read by curl, all servers up at once, reads alternated (needs curl)",
    )
    parser.add_argument("--rounds", type=int, default=7, help="rounds of --replay-only (default 7)")
    args = parser.parse_args(argv)
    print(f"$ python -m benchmarks.bench_http {' '.join(sys.argv[1:] if argv is None else argv)}".rstrip())
    sizes = QUICK if args.quick else FULL
    if args.replay_only:
        if shutil.which("curl") is None:
            parser.error("--replay-only needs curl on PATH")
        print(report_replay(replay_interleaved(args.rounds, sizes.replay_events), sizes.replay_events))
        return 0
    print(report(measure_all(sizes)))
    return 0


def _stream_seconds(document: dict[str, Any]) -> float:
    """A replay's duration: the subscriber's first request to its terminal
    event (not the run's own production, which came before)."""
    return float(document["stream_seconds"]["max"])


if __name__ == "__main__":
    sys.exit(main())
