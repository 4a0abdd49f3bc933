"""CPU per Durable Streams append through ``serve``'s fast path, in-process: our code and trio only.

``FastPaths`` (the memory store, ``create_app()``'s defaults) is called
straight with ASGI messages, as ``serve``'s Hypercorn would call it on an
HTTP/1.x connection (the ``CONNECTION_OVER`` extension offered, with
``bounded_sends``; ``receive`` a trio memory channel's, the body queued on
it): no sockets, no Hypercorn, no h11. What is left is the per-request work
of our own request path (routing, the parsed request, the handler, the store,
the metrics, the response's messages), measured as process CPU time per
append: far less noisy on a loaded machine than autocannon's requests/s.

    PYTHONPATH=. python -m benchmarks.bench_fast_path_cpu [--appends N] [--rounds R] [--before DIR]

With ``--before DIR`` (another checkout) its code is measured in the same
interleaved rounds, each in its own process; medians are printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import trio

from trio_streams.web import create_app
from trio_streams.web._asgi import CONNECTION_OVER
from trio_streams.web._asgi_routes import FastPaths

BODY = b"x" * 64
_BASE: dict[str, Any] = {
    "type": "http",
    "http_version": "1.1",
    "scheme": "http",
    "server": ("127.0.0.1", 8000),
    "root_path": "",
    "query_string": b"",
}
_POST_HEADERS = [
    (b"host", b"127.0.0.1:8000"),
    (b"user-agent", b"autocannon"),
    (b"content-type", b"application/octet-stream"),
    (b"content-length", str(len(BODY)).encode()),
]


def _when_over(callback: Any) -> Any:
    return lambda: None  # the connection never ends here


async def measure(appends: int) -> float:
    """CPU seconds per append over ``appends`` POSTs to one fresh stream.

    Raises:
        AssertionError: a response was not the protocol's (201 create, 204 each append),
            or the stream's tail does not show every append.
    """
    app = create_app()
    asgi = FastPaths(app)
    to_app, app_receive = trio.open_memory_channel[Any](4)
    from_app, lifespan_events = trio.open_memory_channel[Any](4)
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def no_body() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    def scope(method: str, headers: list[tuple[bytes, bytes]]) -> Any:
        offered = {"when_over": _when_over, "bounded_sends": True}
        return {**_BASE, "method": method, "path": "/v1/stream/bench", "headers": headers,
                "extensions": {CONNECTION_OVER: offered}}  # fmt: skip

    async with trio.open_nursery() as nursery:
        lifespan: Any = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        nursery.start_soon(app, lifespan, app_receive.receive, from_app.send)
        await to_app.send({"type": "lifespan.startup"})
        assert (await lifespan_events.receive())["type"] == "lifespan.startup.complete"
        await asgi(scope("PUT", [(b"content-type", b"application/octet-stream")]), no_body, send)
        assert sent[0]["status"] == 201, sent[0]
        sent.clear()
        started = time.process_time()
        for _ in range(appends):
            # As Hypercorn's trio worker: the body queued on a memory channel before the app receives.
            tx, rx = trio.open_memory_channel[Any](10)
            tx.send_nowait({"type": "http.request", "body": BODY, "more_body": False})
            await asgi(scope("POST", _POST_HEADERS), rx.receive, send)
        cpu = time.process_time() - started
        statuses = [message["status"] for message in sent if message["type"] == "http.response.start"]
        assert statuses == [204] * appends, set(statuses)
        tail = dict(sent[-2]["headers"])[b"stream-next-offset"]
        assert int(tail.split(b"_")[1]) == appends * len(BODY), tail
        await to_app.send({"type": "lifespan.shutdown"})
        assert (await lifespan_events.receive())["type"] == "lifespan.shutdown.complete"
    return cpu / appends


def _in_process(repo: Path, appends: int) -> float:
    out = subprocess.run(
        # By path, not -m: the checkout's trio_streams comes first (PYTHONPATH), not the current directory's.
        [sys.executable, __file__, "--one", str(appends)],
        env={**os.environ, "PYTHONPATH": str(repo)},
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--appends", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--before", type=Path, help="another checkout, measured in the same rounds")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # one measurement, for a subprocess
    args = parser.parse_args()
    if args.one:
        print(trio.run(measure, args.one))
        return
    here = Path(__file__).resolve().parent.parent
    rows = {"now": here, **({} if args.before is None else {"before": args.before})}
    results: dict[str, list[float]] = {name: [] for name in rows}
    for round_ in range(args.rounds):
        for name, repo in rows.items():
            results[name].append(_in_process(repo, args.appends))
            print(f"round {round_ + 1} {name}: {1e6 * results[name][-1]:.1f} µs per append", flush=True)
    medians = {name: statistics.median(values) for name, values in results.items()}
    print(f"load average {os.getloadavg()[0]:.2f}")
    for name, value in medians.items():
        print(f"{name}: median {1e6 * value:.1f} µs CPU per append")
    if "before" in medians:
        print(f"now / before: {medians['now'] / medians['before']:.2f}x")


if __name__ == "__main__":
    main()
