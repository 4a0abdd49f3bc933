"""What an idle SSE connection costs ``serve``: the slope of its RSS, and what Python holds for it.

Run:  python -m benchmarks.bench_idle_sse                       (3 servers per kind, 500..4000 connections)
      python -m benchmarks.bench_idle_sse --kind durable --rounds 1 --counts 500,1000

Per kind, a fresh ``serve`` (memory store) per round; connections are added
in steps (``--counts``, cumulative) and, after each step has settled, the
server's RSS is read (``VmRSS``). The figure is the **slope** (least squares
over the steps: bytes per added connection), which averages over the
allocator's coarse growth (an arena or a heap extension at a time) that made
single before/after deltas split into ~14 and ~32 KiB groups.

Kinds:
  - ``durable``: ``GET /v1/stream/<name>?offset=-1&live=sse`` on a stream
    holding one message; a connection is idle once its data and control
    frames arrived (the reader then waits at the tail);
  - ``runs``: ``GET /v1/runs/<id>/events`` on 10 live runs of the demo
    producer that emit nothing for the measurement's length.

Then one server under ``tracemalloc`` (``--breakdown N`` connections of the
first kind, its allocations after minus before, by file): what Python
objects one idle connection holds (Hypercorn's, trio's, ours). tracemalloc
counts Python allocations only (not the allocator's slack or the kernel's
socket buffers), so the two figures differ by design. ``BENCH_IDLE_SSE_BY=traceback``
(``BENCH_IDLE_SSE_FRAMES``, ``BENCH_IDLE_SSE_TOP``) groups it by traceback, ``types`` by the type
of the gc-tracked objects (coroutines, generators and bound methods also by their code's name);
the server mode's ``why T`` command says what keeps the newest ``T`` alive (``dict:key``: a dict
with that key).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RUNS = 10


def rss_bytes(pid: int) -> int:
    """The process's resident set (``VmRSS``), in bytes."""
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    assert found is not None
    return int(found.group(1)) * 1024


class Server:
    """``python -m benchmarks.bench_idle_sse --serve`` (this file's server mode) in a process of its own."""

    def __init__(self, *, trace: bool, repo: Path = ROOT) -> None:
        # (This file by path, importing ``repo``'s trio_streams.)
        command = [sys.executable, str(Path(__file__).resolve()), "--serve"]
        if trace:
            command.append("--trace")
        self.proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=repo,
            env={**os.environ, "PYTHONPATH": str(repo)},
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        found = re.match(r"^serving on http://([\d.]+):(\d+)$", line.strip())
        if found is None:
            raise RuntimeError(f"the server did not start: {line!r}")
        self.address = (found.group(1), int(found.group(2)))

    def command(self, text: str) -> Any:
        """Send one control command; its JSON answer."""
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


def request(address: tuple[str, int], method: str, path: str, body: bytes = b"", **headers: str) -> bytes:
    """One request on a connection of its own; the whole response."""
    with socket.create_connection(address, timeout=30) as sock:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {address[0]}", "Connection: close"]
        lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
        lines.append(f"Content-Length: {len(body)}")
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def targets(server: Server, kind: str) -> list[str]:
    """The paths the idle connections read."""
    if kind == "durable":
        response = request(server.address, "PUT", "/v1/stream/idle-sse", content_type="text/plain")
        assert response.startswith(b"HTTP/1.1 201"), response
        response = request(server.address, "POST", "/v1/stream/idle-sse", b"hello", content_type="text/plain")
        assert response.startswith(b"HTTP/1.1 204"), response
        return ["/v1/stream/idle-sse?offset=-1&live=sse"]
    paths = []
    for _ in range(RUNS):
        # Two tokens at 0.001/s: live, and silent for the measurement's length.
        body = json.dumps({"producer": "demo", "input": {"tokens": 2, "rate": 0.001}}).encode()
        response = request(server.address, "POST", "/v1/runs", body, content_type="application/json")
        assert response.startswith(b"HTTP/1.1 201"), response
        run_id = json.loads(response.partition(b"\r\n\r\n")[2])["run_id"]
        paths.append(f"/v1/runs/{run_id}/events")
    return paths


def open_idle(address: tuple[str, int], path: str, kind: str) -> socket.socket:
    """A connection reading ``path`` as SSE, returned once it is idle (see the module docstring)."""
    sock = socket.create_connection(address, timeout=30)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {address[0]}\r\nAccept: text/event-stream\r\n\r\n".encode())
    received = b""
    # (Chunked: the control frame's end is followed by the chunk's CRLF.)
    done = (lambda data: b"\n\n" in data.partition(b"event: control")[2]) if kind == "durable" else None
    while True:
        received += sock.recv(65536)
        if not received.startswith(b"HTTP/1.1 200"):
            if b"\r\n\r\n" in received:
                raise RuntimeError(f"{path}: {received[:300]!r}")
            continue
        if done is None and b"\r\n\r\n" in received:
            return sock
        if done is not None and done(received):
            return sock


def measure(kind: str, counts: list[int], repo: Path) -> list[tuple[int, int]]:
    """(connections, server RSS) after each step, on a fresh server of ``repo``."""
    server = Server(trace=False, repo=repo)
    held: list[socket.socket] = []
    try:
        paths = targets(server, kind)
        server.command("gc")
        time.sleep(1)
        points = [(0, rss_bytes(server.proc.pid))]
        for count in counts:
            while len(held) < count:
                held.append(open_idle(server.address, paths[len(held) % len(paths)], kind))
            time.sleep(2)  # settled: every connection's task parked (a benchmark, not a test)
            server.command("gc")
            points.append((count, rss_bytes(server.proc.pid)))
        return points
    finally:
        for sock in held:
            sock.close()
        server.close()


def slope(points: list[tuple[int, int]]) -> float:
    """Least-squares bytes per connection."""
    xs = [float(x) for x, _ in points]
    ys = [float(y) for _, y in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)


def breakdown(kind: str, count: int, repo: Path = ROOT) -> dict[str, float]:
    """Bytes per connection by file, as tracemalloc sees them (after minus before ``count`` connections)."""
    server = Server(trace=True, repo=repo)
    held: list[socket.socket] = []
    try:
        paths = targets(server, kind)
        for _ in range(20):  # warm-up: caches and first-use allocations out of the figure
            held.append(open_idle(server.address, paths[len(held) % len(paths)], kind))
        time.sleep(1)
        server.command("snapshot")
        for _ in range(count):
            held.append(open_idle(server.address, paths[len(held) % len(paths)], kind))
        time.sleep(2)
        by_file: dict[str, int] = server.command(os.environ.get("BENCH_IDLE_SSE_BY", "diff"))
        return {name: size / count for name, size in by_file.items()}
    finally:
        for sock in held:
            sock.close()
        server.close()


def _short(name: str) -> str:
    """A file name from its package on (``trio/_core/_run.py``, ``trio_streams/...``)."""
    for marker in ("site-packages/", "trio_streams/", "lib/python3"):
        if marker in name:
            return name[name.index(marker) :].removeprefix("site-packages/")
    return name


def _code_of(obj: object) -> Any:
    """A frame's, a coroutine's or an async generator's code (a function: no closure over ``obj``)."""
    for name in ("f_code", "cr_code", "ag_code"):
        if hasattr(obj, name):
            return getattr(obj, name)
    return None


def _why(names: list[str], ignore: tuple[object, ...], depth: int = 6) -> list[str]:
    """What keeps the newest gc-tracked object of each type in ``names`` alive: a chain of
    referrers (type names, one per level, the first referrer of each), for ``BENCH_IDLE_SSE_BY=why T``."""
    import inspect

    gc.collect()
    chains = []
    for name in names:
        kind, _, key = name.partition(":")  # "dict:offset": a dict with that key
        found = [
            obj
            for obj in gc.get_objects()
            if type(obj).__qualname__ == kind and (not key or (isinstance(obj, dict) and key in obj))
        ]
        if not found:
            chains.append(f"{name}: none")
            continue
        obj: object = found[-1]
        size = f", {len(obj)} entries: {list(obj)[:4]}" if isinstance(obj, dict) else ""
        chain = [f"{name} ({len(found)} alive{size})"]
        here = inspect.currentframe()
        skip = {id(found), id(here), id(ignore), *map(id, ignore)}
        for _ in range(depth):
            referrers = [r for r in gc.get_referrers(obj) if id(r) not in skip and r is not chains]
            if not referrers:
                break
            obj = referrers[0]
            skip.add(id(referrers))
            label = type(obj).__qualname__
            if inspect.isframe(obj) or inspect.iscoroutine(obj) or inspect.isasyncgen(obj):
                code = _code_of(obj)
                label += f" {code.co_name}"
            elif isinstance(obj, dict):
                label += f" keys={list(obj)[:6]}"
            chain.append(f"{label} (+{len(referrers) - 1})")
        chains.append(" <- ".join(chain))
    return chains


def _serve(trace: bool) -> None:
    """The server mode: ``serve`` (memory store) plus control commands on stdin (gc, snapshot, diff)."""
    import trio

    from trio_streams.cli._main import build_parser
    from trio_streams.cli._plan import ServePlan
    from trio_streams.cli._server import serve

    if trace:
        tracemalloc.start(int(os.environ.get("BENCH_IDLE_SSE_FRAMES", "1")))
    plan = ServePlan.from_args(build_parser().parse_args(["serve", "--bind", "127.0.0.1:0"]))
    snapshots: list[tracemalloc.Snapshot] = []
    types_before: list[Counter[str]] = []

    def type_sizes() -> Counter[str]:
        """Bytes (``sys.getsizeof``) of the gc-tracked objects alive, by type (and a count of each)."""
        sizes: Counter[str] = Counter()
        for obj in gc.get_objects():
            name = type(obj).__qualname__
            sizes[name] += sys.getsizeof(obj)
            sizes["#" + name] += 1
            # Which code: coroutines, generators, bound methods and functions by their name.
            code = None
            if name in ("coroutine", "generator", "async_generator"):
                code = getattr(obj, "cr_code", None) or getattr(obj, "gi_code", None) or obj.ag_code
            elif name in ("method", "function"):
                code = getattr(getattr(obj, "__func__", obj), "__code__", None)
            if code is not None:
                sizes[f"#{name} {code.co_qualname}"] += 1
        return sizes

    def answer(line: str) -> Any:
        command = line.strip()
        if command == "gc":
            gc.collect()
            return "ok"
        if command == "snapshot":
            gc.collect()
            types_before.append(type_sizes())  # (first: in both snapshots, out of the diff)
            snapshots.append(tracemalloc.take_snapshot())
            return "ok"
        if command == "types":
            gc.collect()
            now = type_sizes()
            now.subtract(types_before[-1])
            return {name: size for name, size in now.most_common() if size > 0}
        if command == "traceback":
            gc.collect()
            stats = tracemalloc.take_snapshot().compare_to(snapshots[-1], "traceback")
            return {
                " <- ".join(
                    _short(f"{f.filename}:{f.lineno}") for f in reversed(stat.traceback)
                ): stat.size_diff
                for stat in stats[: int(os.environ.get("BENCH_IDLE_SSE_TOP", "25"))]
            }
        if command.startswith("why "):
            return _why(command.split()[1:], ignore=(snapshots, types_before))
        if command in ("diff", "lines"):
            gc.collect()
            after = tracemalloc.take_snapshot()
            sizes: Counter[str] = Counter()
            by = "filename" if command == "diff" else "lineno"
            for stat in after.compare_to(snapshots[-1], by):
                frame = stat.traceback[0]
                name = frame.filename if by == "filename" else f"{frame.filename}:{frame.lineno}"
                for marker in ("site-packages/", "trio_streams/", "lib/python3"):
                    if marker in name:
                        name = name[name.index(marker) :].removeprefix("site-packages/")
                        break
                sizes[name] += stat.size_diff
            return {"(all)": sum(sizes.values()), **dict(sizes.most_common(60))}
        raise ValueError(command)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            (url,) = await nursery.start(serve, plan)
            print(f"serving on {url}", flush=True)
            while line := await trio.to_thread.run_sync(sys.stdin.readline):
                print(json.dumps(answer(line)), flush=True)
            nursery.cancel_scope.cancel()

    trio.run(main)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kind", choices=("durable", "runs", "both"), default="both")
    parser.add_argument("--counts", default="500,1000,2000,4000", help="cumulative connection counts")
    parser.add_argument("--rounds", type=int, default=3, help="fresh servers per kind")
    parser.add_argument("--breakdown", type=int, default=1000, help="connections under tracemalloc (0: none)")
    parser.add_argument(
        "--before", type=Path, help="another checkout (e.g. main), measured in the same rounds"
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve(args.trace)
        return
    counts = [int(x) for x in args.counts.split(",")]
    kinds = ["durable", "runs"] if args.kind == "both" else [args.kind]
    repos = {"": ROOT, **({} if args.before is None else {" (before)": args.before})}
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average {os.getloadavg()[0]:.1f}")
    slopes: dict[str, list[float]] = {}
    for round_ in range(args.rounds):
        for kind in kinds:  # interleaved: each round measures every kind (and checkout) once
            for label, repo in repos.items():
                points = measure(kind, counts, repo)
                row = kind + label
                slopes.setdefault(row, []).append(slope(points))
                steps = ", ".join(f"{n}: {rss / 2**20:.1f} MiB" for n, rss in points)
                figure = f"{slopes[row][-1] / 1024:.1f} KiB/connection"
                print(f"round {round_ + 1} {row}: {figure} ({steps})", flush=True)
    print("\n| kind | KiB per idle connection (slope), median | rounds |")
    print("|---|---|---|")
    for row, values in slopes.items():
        per_round = ", ".join(f"{s / 1024:.1f}" for s in values)
        print(f"| {row} | {statistics.median(values) / 1024:.1f} | {per_round} |")
    if args.breakdown:
        for kind in kinds:
            tables = {
                label or " (now)": breakdown(kind, args.breakdown, repo) for label, repo in repos.items()
            }
            totals = {label: table.pop("(all)", sum(table.values())) for label, table in tables.items()}
            print(f"\ntracemalloc, {kind}, {args.breakdown} connections: B per connection (after - before)\n")
            print("| file |" + "".join(f" {label.strip(' ()')} |" for label in tables))
            print("|---|" + "---:|" * len(tables))
            print("| **all** |" + "".join(f" **{total:,.0f}** |" for total in totals.values()))
            first = next(iter(tables.values()))
            names = sorted(
                {name for table in tables.values() for name in table}, key=lambda n: -first.get(n, 0)
            )
            for name in names[:25]:
                print(f"| {name} |" + "".join(f" {table.get(name, 0):,.0f} |" for table in tables.values()))
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
