"""Durable Streams appends and live reads: the memory store against the Redis store, side by side.

Run:  python -m benchmarks.bench_durable_stores              (3 rounds, 5 s per measurement)
      python -m benchmarks.bench_durable_stores --quick      (1 round, 2 s)
      python -m benchmarks.bench_durable_stores --repo /path/to/other/checkout   (its code)
      python -m benchmarks.bench_durable_stores --before /path/to/main   (its stores beside)
      python -m benchmarks.bench_durable_stores --in-process [--before ...]   (the stores alone)

Servers, each ``python -m trio_streams serve`` in its own process on a free
port, started once and measured in interleaved rounds:
  - ``memory``: the in-memory Durable Streams store;
  - ``redis``: ``--redis-url`` to a scratch ``redis-server`` of this script
    (no persistence), so runs and Durable Streams are in Redis.

Measurements:
  - append throughput, by autocannon (``npx --yes autocannon@7``, the same
    load tool for both): ``-c`` connections POSTing 64-byte
    ``application/octet-stream`` bodies to one fresh stream (created with a
    PUT just before), for ``--duration`` seconds; requests/s and latency p50/p99;
  - append -> live read latency on each store, long-poll and SSE: one
    reader waits at the tail, one append is sent, and the time is taken from
    just before the append is sent until the reader has the data (``--samples``
    appends, one at a time, in ``--rounds`` interleaved rounds; both modes idle
    ``--pause`` before each timed append, so they compare like with like).

Prints the tables (medians over rounds) for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

ROOT = Path(__file__).resolve().parent.parent
BODY = b"x" * 64
CONCURRENCY = (1, 10, 75)
SERVE_FLAGS = ("--log-level", "warning", "--long-poll-timeout", "10s")
REDIS_FLAGS = ("--save", "", "--appendonly", "no", "--loglevel", "warning")


def start_redis(scratch: str) -> tuple[subprocess.Popen[bytes], str]:
    from trio_streams.log.redis._server import find_redis_binary, free_port

    port = free_port()
    proc = subprocess.Popen(
        [find_redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", scratch, *REDIS_FLAGS],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with http.client.socket.create_connection(("127.0.0.1", port), timeout=1):  # type: ignore[attr-defined]
                return proc, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("redis-server did not start")


def start_server(
    repo: Path, *extra: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], str]:
    """``serve`` from ``repo`` on a free port (its output drained); ``env`` adds to (or
    overrides) the environment, ``PYTHONPATH`` included."""
    env = {**os.environ, "PYTHONPATH": str(repo), **(env or {})}
    proc = subprocess.Popen(
        [sys.executable, "-m", "trio_streams", "serve", "--bind", "127.0.0.1:0", *SERVE_FLAGS, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=repo,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        found = re.match(r"^trio-streams serving on (http://\S+)$", line.strip())
        if found:
            # Keep draining its output so the server never blocks on a full pipe.
            threading.Thread(target=proc.stdout.read, daemon=True).start()
            return proc, found.group(1)
    raise RuntimeError(f"the server did not start (exit {proc.wait()})")


def create(base: str, content_type: str = "application/octet-stream") -> str:
    """A fresh stream; its URL."""
    url = f"{base}/v1/stream/bench-{uuid.uuid4().hex}"
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("PUT", url, headers={"Content-Type": content_type})
    response = conn.getresponse()
    response.read()
    conn.close()
    assert response.status in (200, 201), response.status
    return url


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process ``pid`` so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def autocannon(url: str, connections: int, duration: int, pids: tuple[int, ...] = ()) -> dict[str, float]:
    """autocannon's figures; with ``pids`` (the server's, then redis-server's),
    also their CPU time per request."""
    post = ("-m", "POST", "-H", "content-type=application/octet-stream", "-b", BODY.decode())
    cpu_before = [cpu_seconds(pid) for pid in pids]
    out = subprocess.run(
        ["npx", "--yes", "autocannon@7", "-j", "-c", str(connections), "-d", str(duration), *post, url],
        capture_output=True,
        text=True,
        check=True,
    )
    cpu = [cpu_seconds(pid) - before for pid, before in zip(pids, cpu_before, strict=True)]
    result = json.loads(out.stdout)
    total = max(result["requests"]["total"], 1)
    bad = result.get("non2xx", 0) + result.get("errors", 0)
    return {
        "rps": result["requests"]["average"],
        "p50": result["latency"]["p50"],
        "p99": result["latency"]["p99"],
        "bad": bad,
        # The server's CPU per request (the machine's load moves it much less than req/s).
        "cpu_us": 1e6 * cpu[0] / total if cpu else 0.0,
        "redis_cpu_us": 1e6 * cpu[1] / total if len(cpu) > 1 else 0.0,
    }


def _http_request(method: str, path: str, host: str, body: bytes = b"") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n"
    if body or method == "POST":
        head += f"Content-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
    return (head + "\r\n").encode() + body


def _read_until(sock: socket.socket, buffer: bytearray, done: Callable[[bytes], int]) -> bytes:
    """Receive into ``buffer`` until ``done(buffer)`` returns the end of what is wanted (> 0);
    returns that much, leaving the rest in ``buffer``."""
    while (end := done(bytes(buffer))) <= 0:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        buffer += chunk
    wanted = bytes(buffer[:end])
    del buffer[:end]
    return wanted


def _response_end(data: bytes) -> int:
    """The end of the first complete ``Content-Length`` (or bodiless) response in ``data``; 0 if none yet."""
    head_end = data.find(b"\r\n\r\n")
    if head_end < 0:
        return 0
    found = re.search(rb"\r\ncontent-length: *(\d+)", data[:head_end], re.IGNORECASE)
    end = head_end + 4 + (int(found.group(1)) if found else 0)
    return end if len(data) >= end else 0


def _data_line_end(data: bytes) -> int:
    """The end of the SSE line carrying the appended bytes in ``data``; 0 if not all in yet."""
    at = data.find(b"x" * 8)
    return 0 if at < 0 else data.find(b"\n", at) + 1


def live_latency(base: str, mode: str, samples: int, pause: float = 0.01) -> list[float]:
    """Seconds from just before an append is sent until a waiting reader has it.

    The same client for both modes: raw sockets (``TCP_NODELAY``), one
    thread, no HTTP library parsing on the timed path. Each sample: idle
    ``pause`` seconds (the long-poll's request is sent before it, so it is
    parked at the tail by then; the SSE reader waits at the tail all along),
    then the append is sent and its 204 read, then the reader's socket is
    read until the appended bytes are in (a long-poll: its whole response;
    SSE: its data line).
    """
    # Text, so that SSE carries it as it is (binary streams go base64-encoded).
    url = create(base, "text/plain")
    host, port = base.removeprefix("http://").split(":")
    path = url.removeprefix(base)
    writer = socket.create_connection((host, int(port)), timeout=10)
    reader = socket.create_connection((host, int(port)), timeout=10)
    for sock in (writer, reader):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    wbuf, rbuf = bytearray(), bytearray()
    append = _http_request("POST", path, host, BODY)
    marker = b"x" * 8
    times: list[float] = []
    offset = "-1"
    if mode == "sse":
        reader.sendall(_http_request("GET", f"{path}?offset=-1&live=sse", host))
        # Up to the first control event: the reader then waits at the tail.
        _read_until(reader, rbuf, lambda data: data.find(b"event: control") + 1)
        time.sleep(0.2)
        rbuf.clear()
    else:
        # Catch up to the (empty) tail first, so the timed reads wait live.
        reader.sendall(_http_request("GET", f"{path}?offset=-1", host))
        first = _read_until(reader, rbuf, _response_end)
        found = re.search(rb"\r\nstream-next-offset: *([^\r]+)", first, re.IGNORECASE)
        assert found is not None, first[:300]
        offset = found.group(1).decode()
    for _ in range(samples):
        if mode != "sse":
            reader.sendall(_http_request("GET", f"{path}?offset={offset}&live=long-poll", host))
        time.sleep(pause)  # idle (not timed); a long-poll parks at the tail meanwhile
        started = time.perf_counter()
        writer.sendall(append)
        answer = _read_until(writer, wbuf, _response_end)
        if mode == "sse":
            _read_until(reader, rbuf, _data_line_end)
            times.append(time.perf_counter() - started)
            rbuf.clear()
        else:
            got = _read_until(reader, rbuf, _response_end)
            times.append(time.perf_counter() - started)
            assert got.startswith(b"HTTP/1.1 200"), got[:300]
            assert marker in got, got[:300]
            found = re.search(rb"\r\nstream-next-offset: *([^\r]+)", got, re.IGNORECASE)
            assert found is not None
            offset = found.group(1).decode()
        assert answer.startswith(b"HTTP/1.1 204"), answer[:300]
    writer.close()
    reader.close()
    return times


def in_process(redis_url: str, concurrency: int, count: int) -> dict[str, float]:
    """The stores alone, in this process (no HTTP): CPU µs per append of
    ``count`` 64-byte appends to one fresh stream by ``concurrency`` tasks,
    memory store and Redis store (on ``redis_url``), and the Redis store's
    appends per commit. Imports ``trio_streams`` from ``sys.path`` (so from
    the ``PYTHONPATH`` this process was started with)."""
    import coredis
    import trio

    from trio_streams.durable import CreateRequest, DurableStreamStore, RedisDurableStore
    from trio_streams.durable._stream import AppendRequest

    coredis.Config.optimized = True  # as RedisStore (so serve) sets it
    content_type = "application/octet-stream"
    figures: dict[str, float] = {}

    async def run() -> None:
        memory = DurableStreamStore()
        name = f"bench-{uuid.uuid4().hex}"
        memory.create(name, CreateRequest(content_type))
        started = time.process_time()
        for _ in range(count):
            memory.append(name, AppendRequest(BODY, content_type))
        figures["memory"] = 1e6 * (time.process_time() - started) / count
        async with RedisDurableStore().connect(redis_url, prefix=f"bench-{uuid.uuid4().hex}:") as store:
            await store.create(name, CreateRequest(content_type))
            left = [count]

            async def appender() -> None:
                while left[0] > 0:
                    left[0] -= 1
                    await store.append(name, AppendRequest(BODY, content_type))

            before = store.group_commit.statistics()
            started = time.process_time()
            async with trio.open_nursery() as nursery:
                for _ in range(concurrency):
                    nursery.start_soon(appender)
            figures["redis"] = 1e6 * (time.process_time() - started) / count
            after = store.group_commit.statistics()
            figures["batch"] = (after.appends - before.appends) / max(after.batches - before.batches, 1)

    trio.run(run)
    return figures


def in_process_table(repos: dict[str, Path], redis_url: str, rounds: int) -> None:
    """Print :func:`in_process`'s figures for each checkout in ``repos``
    (label: path), each in its own process, in interleaved rounds."""
    got: dict[tuple[str, int], list[dict[str, float]]] = {}
    for _ in range(rounds):
        for c, count in ((1, 2_000), (10, 5_000)):
            for label, repo in repos.items():
                out = subprocess.run(
                    [sys.executable, __file__, "--in-process-worker", redis_url, str(c), str(count)],
                    env={**os.environ, "PYTHONPATH": str(repo)},
                    capture_output=True,
                    text=True,
                    check=True,
                )
                got.setdefault((label, c), []).append(json.loads(out.stdout))
    print("\nthe stores alone, in process: CPU per 64-byte append to one stream, median of", rounds, "\n")
    print("| checkout | appenders | memory store µs | Redis store µs | appends per commit |")
    print("|---|---|---|---|---|")
    for (label, c), xs in got.items():
        cells = [statistics.median(x[key] for x in xs) for key in ("memory", "redis", "batch")]
        print(f"| {label} | {c} | {cells[0]:.1f} | {cells[1]:.1f} | {cells[2]:.2f} |")


def main() -> None:
    if sys.argv[1:2] == ["--in-process-worker"]:
        url, appenders, count = sys.argv[2:5]
        print(json.dumps(in_process(url, int(appenders), int(count))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument(
        "--pause",
        type=float,
        default=0.01,
        help="seconds idle before each timed append, long-poll and SSE alike (default 0.01)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        nargs="+",
        default=list(CONCURRENCY),
        help=f"autocannon's connections, each in turn (default {' '.join(map(str, CONCURRENCY))})",
    )
    parser.add_argument("--live-only", action="store_true", help="only the live read latency")
    parser.add_argument(
        "--in-process", action="store_true", help="only the stores alone, in process (no HTTP)"
    )
    parser.add_argument("--repo", type=Path, default=ROOT, help="the checkout whose trio_streams is served")
    parser.add_argument(
        "--before",
        type=Path,
        help="another checkout (e.g. main) measured in the same rounds: its Redis store, on a"
        " redis-server of its own (row redis-before), and its memory store (row memory-before)",
    )
    args = parser.parse_args()
    rounds, duration = (1, 2) if args.quick else (args.rounds, args.duration)
    scratch = tempfile.mkdtemp(prefix="bench-durable-stores-")
    redis, redis_url = start_redis(scratch)
    if args.in_process:
        repos = {"this": args.repo, **({} if args.before is None else {"before": args.before})}
        try:
            in_process_table(repos, redis_url, rounds)
        finally:
            redis.terminate()
            redis.wait(10)
        return
    servers = {"memory": start_server(args.repo), "redis": start_server(args.repo, "--redis-url", redis_url)}
    redises = {"redis": redis}
    if args.before is not None:
        redises["redis-before"], before_url = start_redis(tempfile.mkdtemp(prefix="bench-durable-stores-"))
        servers["redis-before"] = start_server(args.before, "--redis-url", before_url)
        servers["memory-before"] = start_server(args.before)
    results: dict[tuple[str, int], list[dict[str, float]]] = {}
    try:
        for round_ in range(0 if args.live_only else rounds):
            load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
            print(
                f"round {round_ + 1}: load average {load} ({time.strftime('%H:%M:%S')} UTC)", file=sys.stderr
            )
            for c in args.concurrency:
                for store, (proc, base) in servers.items():
                    pids = (proc.pid, redises[store].pid) if store in redises else (proc.pid,)
                    figures = autocannon(create(base), c, duration, pids)
                    results.setdefault((store, c), []).append(figures)
                    print(f"round {round_ + 1} c={c} {store}: {figures}", file=sys.stderr)
        # In interleaved rounds too (each a share of the samples), so that a
        # change in the machine's load falls on every row alike.
        live: dict[tuple[str, str], list[float]] = {}
        share = max(args.samples // rounds, 1)
        for _ in range(rounds):
            for store, (_proc, base) in servers.items():
                for mode in ("long-poll", "sse"):
                    live.setdefault((store, mode), []).extend(live_latency(base, mode, share, args.pause))
    finally:
        for proc, _base in servers.values():
            proc.terminate()
            proc.wait(10)
        for redis_proc in redises.values():
            redis_proc.terminate()
            redis_proc.wait(10)

    def med(store: str, c: int, key: str) -> float:
        return statistics.median(r[key] for r in results[(store, c)])

    if not args.live_only:
        print(
            f"\nappends: 64-byte POSTs to one fresh stream, autocannon@7, {duration} s, median of {rounds}\n"
        )
        print("(ratio: the median of each round's redis/memory, the two measured back to back)\n")
        print(
            "| c | memory req/s | redis req/s | redis/memory | memory p50/p99 ms | redis p50/p99 ms | bad"
            " | server CPU/append memory / redis (+ redis-server) µs |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for c in args.concurrency:
            m, r = med("memory", c, "rps"), med("redis", c, "rps")
            pairs = zip(results[("memory", c)], results[("redis", c)], strict=True)
            ratio = statistics.median(b["rps"] / a["rps"] for a, b in pairs)
            bad = sum(x["bad"] for key in (("memory", c), ("redis", c)) for x in results[key])
            print(
                f"| {c} | {m:,.0f} | {r:,.0f} | {ratio:.2f}x | {med('memory', c, 'p50'):.1f}/"
                f"{med('memory', c, 'p99'):.1f} | {med('redis', c, 'p50'):.1f}/{med('redis', c, 'p99'):.1f}"
                f" | {bad:.0f} | {med('memory', c, 'cpu_us'):.0f} / {med('redis', c, 'cpu_us'):.0f}"
                f" (+ {med('redis', c, 'redis_cpu_us'):.0f}) |"
            )
        if args.before is not None:
            print(f"\nthe Redis store of {args.before} (redis-before) in the same rounds\n")
            print(
                "| c | redis-before req/s | redis req/s | redis-before/memory | redis/memory"
                " | CPU/append before / now µs |"
            )
            print("|---|---|---|---|---|---|")
            for c in args.concurrency:
                ratios = [
                    statistics.median(
                        b["rps"] / a["rps"]
                        for a, b in zip(results[("memory", c)], results[(name, c)], strict=True)
                    )
                    for name in ("redis-before", "redis")
                ]
                print(
                    f"| {c} | {med('redis-before', c, 'rps'):,.0f} | {med('redis', c, 'rps'):,.0f}"
                    f" | {ratios[0]:.2f}x | {ratios[1]:.2f}x"
                    f" | {med('redis-before', c, 'cpu_us'):.0f} / {med('redis', c, 'cpu_us'):.0f} |"
                )
    print(
        f"\nappend -> live read, one append at a time, {share * rounds} samples in {rounds}"
        f" interleaved rounds, {args.pause * 1000:g} ms idle before each\n"
    )
    print("| store | long-poll p50 | long-poll p99 | SSE p50 | SSE p99 |")
    print("|---|---|---|---|---|")
    for store in servers:
        cells = []
        for mode in ("long-poll", "sse"):
            xs = sorted(live[(store, mode)])
            cells += [
                f"{statistics.median(xs) * 1000:.2f} ms",
                f"{xs[int(len(xs) * 0.99) - 1] * 1000:.2f} ms",
            ]
        print(f"| {store} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
