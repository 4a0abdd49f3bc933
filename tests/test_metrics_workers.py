"""One ``/metrics`` across workers: each worker's socket, the merge, and two real ``serve`` processes.

The supervisor's contract (``TRIO_STREAMS_WORKER_ID``, ``TRIO_STREAMS_WORKERS_DIR``)
is set by hand here: the test needs no supervisor. Real sockets and
processes: the real clock, under deadlines; ordered by observable state.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from typing import TYPE_CHECKING

import httpx
import pytest
import trio
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from trio_streams.web._metrics_workers import (
    SCRAPE_TIMEOUT,
    WorkerMetrics,
    merge_expositions,
    read_worker,
    scrape_workers,
    serve_worker_metrics,
)

from .metrics_support import families, value

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from pathlib import Path

DEADLINE = 20
SERVE = [sys.executable, "-m", "trio_streams", "serve"]


def exposition(started: int, seconds: list[float]) -> bytes:
    registry = CollectorRegistry()
    Counter("trio_streams_runs_started", "Runs started.", registry=registry).inc(started)
    histogram = Histogram("trio_streams_wait_seconds", "Waits.", buckets=(1, 2), registry=registry)
    for amount in seconds:
        histogram.observe(amount)
    return generate_latest(registry)


def test_the_merge_labels_every_series_and_keeps_one_family_per_name():
    merged = generate_latest(
        _Collected(merge_expositions({"1": exposition(2, [1.5]), "0": exposition(2**24 + 1, [])}))
    )
    text = merged.decode()
    found = families(text)  # fails on a family seen twice
    assert text.count("# TYPE trio_streams_runs_started_total counter\n") == 1
    assert value(text, "trio_streams_runs_started_total", worker="0") == 2**24 + 1
    assert value(text, "trio_streams_runs_started_total", worker="1") == 2
    assert value(text, "trio_streams_wait_seconds_bucket", le="2.0", worker="1") == 1
    assert value(text, "trio_streams_wait_seconds_count", worker="0") == 0
    for family in found.values():
        assert all("worker" in sample.labels for sample in family.samples), family.name


def test_a_family_of_another_type_is_left_out_not_mislabelled():
    registry = CollectorRegistry()
    Gauge("trio_streams_runs_started", "Once a gauge.", registry=registry).set(7)
    text = generate_latest(
        _Collected(merge_expositions({"0": exposition(3, []), "1": generate_latest(registry)}))
    )
    assert value(text.decode(), "trio_streams_runs_started_total", worker="0") == 3
    assert "trio_streams_runs_started{" not in text.decode()


class _Collected:
    def __init__(self, families):  # type: ignore[no-untyped-def]
        self._families = families

    def collect(self):  # type: ignore[no-untyped-def]
        return iter(self._families)


def test_the_environment_names_the_worker(tmp_path: Path):
    assert WorkerMetrics.from_environment({}) is None
    assert WorkerMetrics.from_environment({"TRIO_STREAMS_WORKER_ID": "0"}) is None
    worker = WorkerMetrics.from_environment(
        {"TRIO_STREAMS_WORKER_ID": "3", "TRIO_STREAMS_WORKERS_DIR": str(tmp_path)}
    )
    assert worker is not None
    assert worker.socket_path == tmp_path / "metrics-3.sock"
    with pytest.raises(ValueError, match="non-negative integer"):
        WorkerMetrics.from_environment(
            {"TRIO_STREAMS_WORKER_ID": "-1", "TRIO_STREAMS_WORKERS_DIR": str(tmp_path)}
        )
    with pytest.raises(ValueError, match="not a directory"):
        WorkerMetrics.from_environment(
            {"TRIO_STREAMS_WORKER_ID": "0", "TRIO_STREAMS_WORKERS_DIR": str(tmp_path / "none")}
        )


async def test_a_worker_serves_its_exposition_and_removes_its_socket(tmp_path: Path):
    worker = WorkerMetrics("1", tmp_path)
    body = exposition(5, [])
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_worker_metrics, worker, lambda: body)
            assert worker.socket_path.exists()
            assert await read_worker(worker.socket_path) == body
            nursery.cancel_scope.cancel()
    assert not worker.socket_path.exists()


async def test_a_dead_workers_socket_is_skipped_and_counted(tmp_path: Path):
    # A socket file nobody listens on: what a worker killed with SIGKILL leaves.
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(os.fspath(tmp_path / "metrics-2.sock"))
    dead.close()
    me = WorkerMetrics("0", tmp_path)
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_worker_metrics, WorkerMetrics("1", tmp_path), lambda: exposition(4, []))
            text = (await scrape_workers(me, exposition(3, []))).decode()
            nursery.cancel_scope.cancel()
    families(text)
    assert value(text, "trio_streams_runs_started_total", worker="0") == 3
    assert value(text, "trio_streams_runs_started_total", worker="1") == 4
    assert value(text, "trio_streams_metrics_workers", state="scraped", worker="0") == 2
    assert value(text, "trio_streams_metrics_workers", state="unreachable", worker="0") == 1


@pytest.fixture
async def worker_process(
    nursery: trio.Nursery, redis_url: str, prefix: str, tmp_path: Path
) -> AsyncIterator[Callable[[int], trio.Process]]:
    """``await start(worker_id)``: a ``serve`` process on the test's Redis, as worker ``worker_id``."""
    started: list[trio.Process] = []
    directory = tmp_path / "workers"
    directory.mkdir(mode=0o700)

    async def drain(stream: trio.abc.ReceiveStream) -> None:
        while await stream.receive_some():  # never let the server block on a full pipe
            pass

    async def start(worker_id: int) -> tuple[trio.Process, str]:
        env = {
            **os.environ,
            "TRIO_STREAMS_WORKER_ID": str(worker_id),
            "TRIO_STREAMS_WORKERS_DIR": str(directory),
        }
        args = ["--bind", "127.0.0.1:0", "--redis-url", redis_url, "--redis-prefix", prefix]
        process = await trio.lowlevel.open_process([*SERVE, *args], env=env, stdout=subprocess.PIPE)
        started.append(process)
        assert process.stdout is not None
        buffer = b""
        while b"serving on " not in buffer or not buffer.endswith(b"\n"):
            chunk = await process.stdout.receive_some()
            assert chunk, "the server exited before it served"
            buffer += chunk
        nursery.start_soon(drain, process.stdout)
        return process, buffer.decode().split("serving on ", 1)[1].split()[0]

    yield start  # type: ignore[misc]
    for process in started:
        if process.returncode is None:
            process.kill()
        with trio.move_on_after(10) as waited:
            waited.shield = True
            await process.wait()


async def test_a_scrape_of_either_worker_shows_both(worker_process):
    with trio.fail_after(60):
        (_, first), (second_process, second) = [await worker_process(n) for n in (0, 1)]
        demo = {"producer": "demo", "input": {"tokens": 1, "rate": None}}
        async with httpx.AsyncClient() as client:
            for url, runs in ((first, 3), (second, 2)):
                for _ in range(runs):
                    assert (await client.post(f"{url}/v1/runs", json=demo)).status_code == 201
            for url in (first, second):
                text = (await client.get(f"{url}/metrics")).text
                families(text)
                assert value(text, "trio_streams_runs_started_total", worker="0") == 3
                assert value(text, "trio_streams_runs_started_total", worker="1") == 2
                assert value(text, "process_resident_memory_bytes", worker="1") > 0
            # Worker 1 dies without cleaning up: its socket stays, and is skipped.
            second_process.kill()
            await second_process.wait()
            text = (await client.get(f"{first}/metrics")).text
        assert value(text, "trio_streams_runs_started_total", worker="0") == 3
        assert 'worker="1"' not in text
        assert value(text, "trio_streams_metrics_workers", state="unreachable", worker="0") == 1


async def test_a_worker_that_never_answers_is_skipped_after_the_timeout(tmp_path: Path, autojump_clock):
    # Listening but never accepting (a worker stuck in a long computation): the
    # connect succeeds into the backlog, the read waits, and the clock jumps.
    stuck = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stuck.bind(os.fspath(tmp_path / "metrics-1.sock"))
    stuck.listen()
    try:
        text = (await scrape_workers(WorkerMetrics("0", tmp_path), exposition(3, []))).decode()
    finally:
        stuck.close()
    assert trio.current_time() == SCRAPE_TIMEOUT
    assert value(text, "trio_streams_metrics_workers", state="unreachable", worker="0") == 1
    assert value(text, "trio_streams_runs_started_total", worker="0") == 3
