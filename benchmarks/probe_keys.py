"""Black-box probe of run keys over HTTP: owners' isolation and cross-instance double starts.

Run:  python -m benchmarks.probe_keys                 (200 pairs per policy)
      python -m benchmarks.probe_keys --pairs 20      (quicker)

Starts its own ``redis-server`` (no persistence) on a free port and two
``trio-streams serve`` processes on it (tokens ``alice`` and ``bob``, one
prefix), using whatever ``trio_streams`` the ``PYTHONPATH`` imports -- so the
same probe measures any version of the code from outside.

- cross-owner effects: alice holds a key with a long run; bob starts with the
  same key (``interrupt``, ``reject``, sixteen ``enqueue``), on alice's
  instance and on the other one. An effect is anything bob's start does to, or
  tells about, alice's run: her run cancelled, bob refused or queued behind
  her, her run id in his response, her next start refused. Should be 0.
- double starts: per policy, ``--pairs`` rounds of two simultaneous POSTs with
  one fresh key, one to each server. A double start is two runs of one key
  whose producers overlapped in time (the demo's tokens carry their emission
  time ``ts``). Also counted: pairs both *reported* running at once
  (``started_at`` .. ``ended_at`` overlap), and pairs both accepted. Should be 0
  (both accepted is expected for ``interrupt`` and ``enqueue``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any

import httpx
import trio

ALICE = {"Authorization": "Bearer pa"}
BOB = {"Authorization": "Bearer pb"}
LONG = {"tokens": 100_000, "rate": 20}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _start_redis(tmp: str) -> tuple[trio.Process, str]:
    port = _free_port()
    binary = shutil.which("redis-server") or "redis-server"
    process = await trio.lowlevel.open_process(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", tmp],
        stdout=subprocess.DEVNULL,
    )
    with trio.fail_after(10):
        while True:
            try:
                stream = await trio.open_tcp_stream("127.0.0.1", port)
            except OSError:
                await trio.sleep(0.02)  # a foreign process: no readiness signal
                continue
            await stream.aclose()
            return process, f"redis://127.0.0.1:{port}/0"


async def _serve(redis_url: str, prefix: str) -> tuple[trio.Process, str]:
    process = await trio.lowlevel.open_process(
        [
            sys.executable,
            "-m",
            "trio_streams",
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--redis-url",
            redis_url,
            "--redis-prefix",
            prefix,
            "--token",
            "alice:pa",
            "--token",
            "bob:pb",
            "--log-level",
            "warning",
        ],
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None
    buffer = b""
    with trio.fail_after(30):
        while b"serving on " not in buffer or not buffer.endswith(b"\n"):
            chunk = await process.stdout.receive_some()
            if not chunk:
                raise RuntimeError("the server exited before it served")
            buffer += chunk
    return process, buffer.decode().split("serving on ", 1)[1].split()[0]


async def _post(client: httpx.AsyncClient, headers: dict[str, str], **body: Any) -> httpx.Response:
    return await client.post("/v1/runs", json={"producer": "demo", **body}, headers=headers)


async def cross_owner(a: httpx.AsyncClient, b: httpx.AsyncClient) -> list[str]:
    """The effects bob's starts had on alice's run (a list of descriptions)."""
    effects: list[str] = []
    for where, bobs in (("same instance", a), ("other instance", b)):
        for policy in ("interrupt", "reject", "enqueue"):
            key = f"conv-{uuid.uuid4().hex[:8]}"
            alice = (await _post(a, ALICE, key=key, input=LONG)).json()
            alice_id = alice["run_id"]
            texts: list[str] = []
            statuses: list[int] = []
            states: list[str] = []
            for _ in range(16 if policy == "enqueue" else 1):
                response = await _post(bobs, BOB, key=key, on_conflict=policy, input={"tokens": 1})
                statuses.append(response.status_code)
                texts.append(response.text + str(dict(response.headers)))
                if response.status_code == 201:
                    states.append(response.json()["status"])
            if any(status != 201 for status in statuses):
                effects.append(f"{where} {policy}: bob refused ({sorted(set(statuses))})")
            if any(state == "queued" for state in states):
                effects.append(f"{where} {policy}: bob queued behind alice")
            if any(alice_id in text for text in texts):
                effects.append(f"{where} {policy}: alice's run id in bob's response")
            await trio.sleep(0.5)  # let an interrupt act (black box: nothing to wait on)
            mine = (await a.get(f"/v1/runs/{alice_id}", headers=ALICE)).json()
            if mine["status"] != "running":
                effects.append(f"{where} {policy}: alice's run {mine['status']} ({mine['reason']})")
            again = await _post(a, ALICE, key=key, on_conflict="enqueue", input={"tokens": 1})
            if again.status_code != 201:
                effects.append(f"{where} {policy}: alice's next start got {again.status_code}")
            await a.post(f"/v1/runs/{alice_id}/cancel", headers=ALICE)
    return effects


async def double_starts(
    a: httpx.AsyncClient, b: httpx.AsyncClient, policy: str, pairs: int, concurrency: int
) -> tuple[int, int, int, float]:
    """For ``pairs`` rounds: producers that overlapped, runs reported running at
    once, rounds where both were accepted, and seconds."""
    limiter = trio.Semaphore(concurrency)
    runs: list[tuple[str | None, str | None]] = []
    both_accepted = 0
    began = time.monotonic()

    async def one(client: httpx.AsyncClient, key: str, out: list[str | None]) -> None:
        # Nine tokens at 10/s: the producer runs 0.8 s, longer than the two
        # starts of a round take to reach their servers, even under load.
        response = await _post(client, ALICE, key=key, on_conflict=policy, input={"tokens": 9, "rate": 10})
        out.append(response.json()["run_id"] if response.status_code == 201 else None)

    async def pair() -> None:
        nonlocal both_accepted
        async with limiter:
            key = f"pair-{uuid.uuid4().hex}"
            ids: list[str | None] = []
            async with trio.open_nursery() as nursery:  # both sent in the same scheduler tick
                nursery.start_soon(one, a, key, ids)
                nursery.start_soon(one, b, key, ids)
            if all(ids):
                both_accepted += 1
            runs.append((ids[0], ids[1]))
            for run_id in ids:
                if run_id is not None:
                    await _token_span(a, run_id)  # its event stream ends with the run

    async with trio.open_nursery() as nursery:
        for _ in range(pairs):
            nursery.start_soon(pair)
    doubles = reported = 0
    for first, second in runs:
        if first is None or second is None:
            continue
        docs = [(await a.get(f"/v1/runs/{run_id}", headers=ALICE)).json() for run_id in (first, second)]
        if all(doc["started_at"] is not None for doc in docs):
            (s1, e1), (s2, e2) = ((doc["started_at"], doc["ended_at"]) for doc in docs)
            reported += s1 < e2 and s2 < e1
        span1, span2 = await _token_span(a, first), await _token_span(a, second)
        if span1 is not None and span2 is not None:
            doubles += span1[0] <= span2[1] and span2[0] <= span1[1]
    return doubles, reported, both_accepted, time.monotonic() - began


async def _token_span(client: httpx.AsyncClient, run_id: str) -> tuple[float, float] | None:
    """When the run's producer emitted its first and last token (``ts``), if it emitted any."""
    stamps: list[float] = []
    async with client.stream("GET", f"/v1/runs/{run_id}/events", headers=ALICE) as response:
        event = ""
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                event = line.partition(":")[2].strip()
            elif line.startswith("data:") and event == "token":
                stamps.append(json.loads(line.partition(":")[2])["ts"])
    return (min(stamps), max(stamps)) if stamps else None


async def main(pairs: int, concurrency: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        redis, url = await _start_redis(tmp)
        servers: list[trio.Process] = []
        try:
            prefix = f"probe{uuid.uuid4().hex[:6]}:"
            server_a, url_a = await _serve(url, prefix)
            servers.append(server_a)
            server_b, url_b = await _serve(url, prefix)
            servers.append(server_b)
            limits = httpx.Limits(max_connections=2 * concurrency + 4)
            async with (
                httpx.AsyncClient(base_url=url_a, limits=limits, timeout=60) as a,
                httpx.AsyncClient(base_url=url_b, limits=limits, timeout=60) as b,
            ):
                effects = await cross_owner(a, b)
                print(
                    f"cross-owner effects: {len(effects)} (6 scenarios: 3 policies, same and other instance)"
                )
                for effect in effects:
                    print(f"  - {effect}")
                for policy in ("reject", "interrupt", "enqueue"):
                    found = await double_starts(a, b, policy, pairs, concurrency)
                    doubles, reported, accepted, seconds = found
                    print(
                        f"{policy:9}: {doubles} double starts (producers overlapped) of {pairs} pairs; "
                        f"reported running at once: {reported}; both accepted: {accepted}; {seconds:.1f}s"
                    )
        finally:
            for process in (*servers, redis):
                process.terminate()
                with trio.move_on_after(10, shield=True):
                    await process.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=20, help="pairs in flight at once")
    options = parser.parse_args()
    print(f"trio_streams from {os.environ.get('PYTHONPATH', '(installed)')}")
    trio.run(main, options.pairs, options.concurrency)
