"""Durable Streams benchmark: our server against the Node reference server, one load generator.

Run:  python -m benchmarks.bench_durable             (3 rounds, 8 s per measurement)
      python -m benchmarks.bench_durable --quick     (1 round, 2 s)

Servers, each a separate process on a free port, interleaved per round:
  - ``trio-streams serve`` (Hypercorn trio worker, in-memory store);
  - ``@durable-streams/server`` 0.3.7 (``DurableStreamTestServer``,
    in-memory), installed with npm into ``.scratch/durable-bench/``;
  - the ceilings: Hypercorn + Quart-Trio answering appends without doing
    anything, and Hypercorn with a bare ASGI no-op
    (``benchmarks/durable_ceiling.py``), appends only.

Measurements, by the same generator (this file, ``--generate``, its own
process: raw HTTP/1.1 on trio sockets, kept-alive connections, no client
library in the way):
  - append throughput: ``--concurrency`` connections, each appending
    ``--size``-byte ``text/plain`` messages to its own stream back to back;
  - append -> long-poll latency: ``--readers`` streams, each followed by a
    long-poll reader; one writer appends to them in turn at ``--rate``
    appends/s; latency is from just before the append is sent until the
    reader has the long-poll response carrying it. After the last append the
    generator waits up to ``DELIVERY_GRACE`` seconds for the last deliveries.
    Every append must reach its reader: the table shows delivered/expected,
    and a lost delivery makes the run fail (exit status 1, a line naming the
    server), since percentiles over the delivered ones alone would flatter it.

Prints the table (medians over rounds) for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import trio

HERE = Path(__file__).parent
ROOT = HERE.parent
SCRATCH = ROOT / ".scratch" / "durable-bench"
REFERENCE = "@durable-streams/server@0.3.7"
#: Seconds the latency generator waits, after its last append, for the last deliveries.
DELIVERY_GRACE = 5.0
NODE_SERVER = """\
import { DurableStreamTestServer } from "@durable-streams/server";
const server = new DurableStreamTestServer({
  port: Number(process.argv[2]), host: "127.0.0.1", longPollTimeout: 30000,
});
await server.start();
process.on("SIGTERM", async () => { await server.stop(); process.exit(0); });
"""


# -- the load generator -------------------------------------------------------------


class Connection:
    """One kept-alive HTTP/1.1 connection, parsing just status, a header and the body."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = bytearray()

    @classmethod
    async def open(cls, port: int) -> Connection:
        connection = cls(await trio.open_tcp_stream("127.0.0.1", port))
        connection.port = port
        return connection

    port = 0
    #: Times the server ended the connection (Hypercorn: after 1000 requests) and we reconnected.
    reconnects = 0

    async def _fill(self) -> None:
        data = await self.stream.receive_some(65536)
        if not data:
            raise ConnectionError("the server closed the connection")
        self.buffer += data

    async def call(self, request: bytes) -> tuple[int, bytes, bytes]:
        """Send ``request``; return status, lower-cased head and body."""
        await self.stream.send_all(request)
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            await self._fill()
        head = bytes(self.buffer[:end]).lower()
        del self.buffer[: end + 4]
        status = int(head[9:12])
        length = header(head, b"content-length")
        if length is not None:
            while len(self.buffer) < int(length):
                await self._fill()
            body = bytes(self.buffer[: int(length)])
            del self.buffer[: int(length)]
        elif b"transfer-encoding: chunked" in head:
            body = await self._chunked()
        else:
            body = b""
        if b"\r\nconnection: close" in head:
            await self.stream.aclose()
            self.stream = await trio.open_tcp_stream("127.0.0.1", self.port)
            self.buffer.clear()
            Connection.reconnects += 1
        return status, head, body

    async def _chunked(self) -> bytes:
        parts = []
        while True:
            while (end := self.buffer.find(b"\r\n")) < 0:
                await self._fill()
            size = int(bytes(self.buffer[:end]).split(b";")[0], 16)
            del self.buffer[: end + 2]
            while len(self.buffer) < size + 2:
                await self._fill()
            parts.append(bytes(self.buffer[:size]))
            del self.buffer[: size + 2]
            if size == 0:
                return b"".join(parts)


def header(head: bytes, name: bytes) -> bytes | None:
    start = head.find(b"\r\n" + name + b":")
    if start < 0:
        return None
    start += len(name) + 3
    end = head.find(b"\r\n", start)
    return head[start : end if end >= 0 else len(head)].strip()


def request(method: str, path: str, body: bytes = b"", content_type: str = "text/plain") -> bytes:
    return (
        f"{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def create(port: int, names: list[str]) -> None:
    connection = await Connection.open(port)
    for name in names:
        status, _, _ = await connection.call(request("PUT", f"/v1/stream/{name}"))
        if status not in (200, 201):
            raise RuntimeError(f"PUT {name}: {status}")
    await connection.stream.aclose()


async def appends(port: int, concurrency: int, seconds: float, size: int, tag: str) -> dict[str, Any]:
    names = [f"{tag}-w{index}" for index in range(concurrency)]
    await create(port, names)
    body = b"m" * size
    counts = [0] * concurrency
    errors = [0]
    measuring = trio.Event()
    done = trio.Event()

    async def writer(index: int) -> None:
        connection = await Connection.open(port)
        payload = request("POST", f"/v1/stream/{names[index]}", body)
        while not done.is_set():
            status, _, _ = await connection.call(payload)
            if status not in (200, 204):
                errors[0] += 1
            elif measuring.is_set():
                counts[index] += 1
        await connection.stream.aclose()

    async with trio.open_nursery() as nursery:
        for index in range(concurrency):
            nursery.start_soon(writer, index)
        await trio.sleep(min(2.0, seconds / 2))  # warm-up
        measuring.set()
        started = time.perf_counter()
        await trio.sleep(seconds)
        total = sum(counts)
        elapsed = time.perf_counter() - started
        done.set()
    return {
        "appends_per_second": total / elapsed,
        "appends": total,
        "errors": errors[0],
        "reconnects": Connection.reconnects,
    }


async def latency(port: int, readers: int, seconds: float, rate: float, tag: str) -> dict[str, Any]:
    names = [f"{tag}-r{index}" for index in range(readers)]
    await create(port, names)
    sent: dict[bytes, float] = {}
    samples: list[float] = []
    errors = [0]
    stop = trio.Event()
    # Set once the writer has sent everything and every message has arrived.
    sending_done = False
    all_delivered = trio.Event()

    async def reader(name: str, ready: trio.Event) -> None:
        connection = await Connection.open(port)
        offset = "-1"
        first = True
        while not stop.is_set():
            path = f"/v1/stream/{name}?offset={offset}&live=long-poll"
            if first:
                # The first poll reads the (empty) stream's tail; then wait for data.
                status, head, _ = await connection.call(request("GET", f"/v1/stream/{name}?offset=-1"))
                first = False
                ready.set()
            else:
                status, head, body = await connection.call(request("GET", path))
                arrived = time.perf_counter()
                if status == 200:
                    for message in body.split(b"|"):
                        if message in sent:
                            samples.append(arrived - sent.pop(message))
                    if sending_done and not sent:
                        all_delivered.set()
                elif status != 204:
                    errors[0] += 1
            next_offset = header(head, b"stream-next-offset")
            if next_offset is not None:
                offset = next_offset.decode()
        await connection.stream.aclose()

    async with trio.open_nursery() as nursery:
        for name in names:
            ready = trio.Event()
            nursery.start_soon(reader, name, ready)
            await ready.wait()
        await trio.sleep(0.2)  # every reader is parked in a long-poll
        writer = await Connection.open(port)
        interval = 1 / rate
        count = int(seconds * rate)
        next_at = time.perf_counter()
        for index in range(count):
            next_at += interval
            name = names[index % readers]
            message = f"{index:08d}".encode()
            sent[message] = time.perf_counter()
            status, _, _ = await writer.call(request("POST", f"/v1/stream/{name}", message + b"|"))
            if status not in (200, 204):
                errors[0] += 1
            await trio.sleep(max(0.0, next_at - time.perf_counter()))
        sending_done = True
        if not sent:
            all_delivered.set()
        with trio.move_on_after(DELIVERY_GRACE):
            await all_delivered.wait()
        stop.set()
        # Wake the parked readers so they see ``stop``.
        for name in names:
            await writer.call(request("POST", f"/v1/stream/{name}", b"end|"))
        await writer.stream.aclose()
    ordered = sorted(samples)
    return {
        "samples": len(ordered),
        "expected": count,
        "delivered": len(ordered),
        "lost": count - len(ordered),
        "p50": ordered[len(ordered) // 2] if ordered else float("nan"),
        "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else float("nan"),
        "errors": errors[0],
    }


def generate(args: argparse.Namespace) -> int:
    tag = f"b{os.getpid()}-{time.monotonic_ns()}"
    if args.generate == "append":
        result = trio.run(appends, args.port, args.concurrency, args.seconds, args.size, tag)
    else:
        result = trio.run(latency, args.port, args.readers, args.seconds, args.rate, tag)
    print(json.dumps(result))
    return 0


# -- the servers -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    def __init__(self, name: str, command: list[str], port: int, cwd: Path = ROOT) -> None:
        self.name = name
        self.port = port
        self.process = subprocess.Popen(
            command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                error = self.process.stderr.read().decode()[-2000:]  # type: ignore[union-attr]
                raise RuntimeError(f"{name} exited: {error}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{name} did not listen on {port} within 30 s")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        finally:
            if self.process.stderr is not None:
                self.process.stderr.close()


def ours() -> Server:
    port = free_port()
    command = [sys.executable, "-m", "trio_streams", "serve", f"--bind=127.0.0.1:{port}"]
    command += ["--long-poll-timeout=30s", "--log-level=warning"]
    return Server("trio-streams", command, port)


def reference() -> Server:
    if not (SCRATCH / "node_modules" / "@durable-streams" / "server").exists():
        SCRATCH.mkdir(parents=True, exist_ok=True)
        (SCRATCH / "package.json").write_text('{"private": true, "type": "module"}\n')
        subprocess.run(
            ["npm", "install", "--silent", "--no-audit", "--no-fund", REFERENCE], cwd=SCRATCH, check=True
        )
    (SCRATCH / "server.mjs").write_text(NODE_SERVER)
    port = free_port()
    return Server("reference (Node)", ["node", "server.mjs", str(port)], port, cwd=SCRATCH)


def ceiling() -> Server:
    port = free_port()
    command = [sys.executable, "-m", "hypercorn", "--worker-class=trio", f"--bind=127.0.0.1:{port}"]
    return Server("ceiling: Quart no-op", [*command, "benchmarks.durable_ceiling:app"], port)


def raw_ceiling() -> Server:
    port = free_port()
    command = [sys.executable, "-m", "hypercorn", "--worker-class=trio", f"--bind=127.0.0.1:{port}"]
    return Server("ceiling: bare ASGI no-op", [*command, "benchmarks.durable_ceiling:raw_app"], port)


def measure(server: Server, mode: str, args: argparse.Namespace) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "benchmarks.bench_durable",
        f"--generate={mode}",
        f"--port={server.port}",
    ]
    command += [f"--seconds={args.seconds}", f"--concurrency={args.concurrency}", f"--size={args.size}"]
    command += [f"--readers={args.readers}", f"--rate={args.rate}"]
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, check=False, timeout=args.seconds * 4 + 60
    )
    if result.returncode != 0:
        raise RuntimeError(f"generator failed against {server.name}: {result.stderr.decode()[-2000:]}")
    document: dict[str, Any] = json.loads(result.stdout)
    if document["errors"]:
        raise RuntimeError(f"{server.name}: {document['errors']} failed requests ({mode})")
    return document


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="one round, 2 s per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0, help="per measurement")
    parser.add_argument("--concurrency", type=int, default=75, help="append connections")
    parser.add_argument("--size", type=int, default=64, help="bytes per append")
    parser.add_argument("--readers", type=int, default=20, help="long-poll readers (one stream each)")
    parser.add_argument("--rate", type=float, default=200.0, help="appends/s in the latency test")
    parser.add_argument("--generate", choices=("append", "latency"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.generate:
        return generate(args)
    if args.quick:
        args.rounds, args.seconds = 1, 2.0
    servers = {
        "trio-streams": ours,
        "reference (Node)": reference,
        "ceiling: Quart no-op": ceiling,
        "ceiling: bare ASGI no-op": raw_ceiling,
    }
    throughput: dict[str, list[float]] = {name: [] for name in servers}
    p50: dict[str, list[float]] = {name: [] for name in servers}
    p99: dict[str, list[float]] = {name: [] for name in servers}
    delivered: dict[str, list[int]] = {name: [0, 0] for name in servers}  # delivered, expected
    for _ in range(args.rounds):
        for name, start in servers.items():
            server = start()
            try:
                throughput[name].append(measure(server, "append", args)["appends_per_second"])
                if not name.startswith("ceiling"):
                    result = measure(server, "latency", args)
                    p50[name].append(result["p50"])
                    p99[name].append(result["p99"])
                    delivered[name][0] += result["delivered"]
                    delivered[name][1] += result["expected"]
            finally:
                server.stop()
    shown = " ".join(sys.argv[1:] if argv is None else argv)
    print(f"$ python -m benchmarks.bench_durable {shown}".rstrip())
    print(
        f"{args.rounds} round(s), medians; {args.seconds:g} s per measurement; Python "
        f"{sys.version.split()[0]}, node {_node_version()}, {os.cpu_count()} CPUs (shared with the generator)"
    )
    print()
    print(
        f"| server | appends/s ({args.concurrency} connections, {args.size} B) "
        f"| append -> long-poll p50 | p99 ({args.readers} readers, {args.rate:g} appends/s) "
        "| delivered / expected |"
    )
    print("|---|---:|---:|---:|---:|")
    for name in servers:
        rate = statistics.median(throughput[name])
        if p50[name]:
            middle = f"{statistics.median(p50[name]) * 1000:.2f} ms"
            tail = f"{statistics.median(p99[name]) * 1000:.2f} ms"
            got, expected = delivered[name]
            count = f"{got:,} / {expected:,}"
        else:
            middle = tail = count = "-"
        print(f"| {name} | {rate:,.0f} | {middle} | {tail} | {count} |")
    failures = lost_deliveries(delivered)
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


def lost_deliveries(delivered: dict[str, list[int]]) -> list[str]:
    """One message per server whose readers did not get every append
    (``delivered`` maps a server to [delivered, expected])."""
    return [
        f"{name}: {expected - got:,} of {expected:,} appends never reached their long-poll reader "
        f"(within {DELIVERY_GRACE:g} s of the last append); its latency percentiles are not valid"
        for name, (got, expected) in delivered.items()
        if got != expected
    ]


def _node_version() -> str:
    try:
        return subprocess.run(
            ["node", "--version"], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        return "?"


if __name__ == "__main__":
    sys.exit(main())
