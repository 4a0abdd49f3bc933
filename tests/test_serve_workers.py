"""``trio-streams serve --workers N``: real supervisor and worker processes on one socket.

Which worker answers a connection is the kernel's choice (one shared accept
queue); every response names its worker (``X-Trio-Streams-Worker``), so a
test that needs a given worker opens connections until that worker answers
one, then keeps using that kept-alive connection (:func:`pinned`). Every
step is ordered by what the server says (a response, an event, a log line),
never by timing; deadlines only guard against hangs.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import trio

from trio_streams.bench._httpclient import HTTPConnection, SSEParser
from trio_streams.cli._plan import ServeConfigError
from trio_streams.cli._serve import serve_plan
from trio_streams.cli._serve_flags import cpu_count
from trio_streams.cli._server import serve
from trio_streams.cli._supervisor import WORKER_ID_ENV, WORKERS_DIR_ENV, restart_delay

from .redis_support import eventually

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from pathlib import Path

SERVE = [sys.executable, "-m", "trio_streams", "serve"]
HEADER = "x-trio-streams-worker"
MiB = 1024 * 1024
# Kept-alive connections outlive any pause a loaded machine makes between two requests.
COMMON = ("--bind", "127.0.0.1:0", "--keep-alive", "120s")
LONG_RUN = {"producer": "demo", "input": {"tokens": 20_000, "rate": 50}}


class Supervisor:
    """A ``serve --workers`` process: its URL, and its log lines as they come."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.url = ""
        self.lines: list[str] = []
        self._changed = trio.Event()
        self.closed = False

    async def read_stderr(self) -> None:
        assert self.process.stderr is not None
        buffer = b""
        while chunk := await self.process.stderr.receive_some():
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            self.lines.extend(line.decode(errors="replace") for line in complete)
            self._changed.set()
            self._changed = trio.Event()
        if buffer:  # a last line without its newline
            self.lines.append(buffer.decode(errors="replace"))
        self.closed = True  # every process that held the pipe has exited
        self._changed.set()

    async def all_lines(self) -> list[str]:
        """Every log line, once every process that held the pipe has exited:
        what an assertion that a line is absent must read (the process can
        exit before :meth:`read_stderr` has read its last lines)."""
        while not self.closed:
            await self._changed.wait()
        return self.lines

    async def log(self, pattern: str, *, after: int = 0) -> re.Match[str]:
        """The first log line (from index ``after``) matching ``pattern``, waiting for it."""
        regex = re.compile(pattern)
        while True:
            for line in self.lines[after:]:
                match = regex.search(line)
                if match:
                    return match
            if self.closed:
                raise AssertionError(f"no log line matches {pattern!r}:\n" + "\n".join(self.lines))
            await self._changed.wait()

    async def pid_of(self, worker: str) -> int:
        """The pid of ``worker``'s latest start (the supervisor logs each)."""
        await self.log(rf"worker {worker} started \(pid \d+\)")
        pids = [re.search(rf"worker {worker} started \(pid (\d+)\)", line) for line in self.lines]
        return int([m for m in pids if m][-1].group(1))


@pytest.fixture
async def workers(nursery: trio.Nursery) -> AsyncIterator[Callable[..., Any]]:
    started: list[Supervisor] = []

    async def start(*args: str, wait: bool = True, **options: Any) -> Supervisor:
        process = await trio.lowlevel.open_process(
            [*SERVE, *COMMON, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, **options
        )
        server = Supervisor(process)
        started.append(server)
        nursery.start_soon(server.read_stderr)
        if wait:
            assert process.stdout is not None
            buffer = b""
            while b"serving on " not in buffer or not buffer.endswith(b"\n"):
                chunk = await process.stdout.receive_some()
                assert chunk, "the supervisor exited before it served:\n" + "\n".join(server.lines)
                buffer += chunk
            server.url = buffer.decode().split("serving on ", 1)[1].split()[0]
        return server

    yield start
    for server in started:
        if server.process.returncode is None:  # SIGTERM: the supervisor stops its Redis and workers
            server.process.send_signal(signal.SIGTERM)
            with trio.move_on_after(30):
                await server.process.wait()
            if server.process.returncode is None:
                server.process.kill()
                await server.process.wait()
        print("\n".join(server.lines))  # shown when the test failed


@asynccontextmanager
async def pinned(url: str, worker: str) -> AsyncIterator[HTTPConnection]:
    """A kept-alive connection that ``worker`` serves (new connections until it is one)."""
    while True:
        connection = HTTPConnection(url)
        try:
            probe = await connection.request("GET", "/healthz")
            if probe.headers[HEADER] == worker:
                yield connection
                return
        finally:
            await connection.aclose()


async def read_stream(
    connection: HTTPConnection,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    stop_after: int | None = None,
    on_event: Callable[[], None] | None = None,
) -> tuple[str, list[tuple[int, str, Any]]]:
    """GET an event stream: the worker that served it and its events (seq, type, data)."""
    parser = SSEParser()
    events: list[tuple[int, str, Any]] = []
    async with connection.stream("GET", path, headers=headers) as (status, response_headers, body):
        assert status == 200
        worker = response_headers[HEADER]
        async for chunk in body:
            for message in parser.feed(chunk):
                if message.comment is not None:
                    continue
                events.append((int(message.id or 0), message.event, json.loads(message.data)))
                if on_event is not None:
                    on_event()
                if stop_after is not None and len(events) >= stop_after:
                    return worker, events
    return worker, events


def other(worker: str) -> str:
    return "1" if worker == "0" else "0"


def mode_of(path: str) -> int | None:
    """The permission bits of ``path``, None if it does not exist."""
    try:
        return os.stat(path).st_mode & 0o777
    except FileNotFoundError:
        return None


def environ_of(pid: int) -> dict[str, str]:
    """The environment ``pid`` was started with (Linux /proc; our own user's process)."""
    with open(f"/proc/{pid}/environ", "rb") as file:
        entries = file.read().split(b"\0")
    return dict(entry.decode().partition("=")[::2] for entry in entries if entry)


def alive(pid: int) -> bool:
    """``pid`` is running (not gone, not a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as file:
            return file.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def port_answers(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


# -- the plan: flags, sources and refusals (no processes) -------------------------------------


def test_workers_default_is_one_process_with_the_whole_budget():
    plan = serve_plan([])
    assert plan.workers == 1
    assert plan.embedded_redis is None
    assert "max_memory" not in plan.options  # the hub's own default, as before


def test_workers_split_the_memory_budget_with_the_embedded_redis():
    plan = serve_plan(["--workers", "2", "--max-memory", "512MiB"])
    assert plan.embedded_redis is not None
    assert plan.embedded_redis.data_dir is None  # ephemeral
    assert plan.embedded_redis.maxmemory == 256 * MiB
    assert plan.options["max_memory"] == 128 * MiB
    assert plan.store_label == "embedded redis (ephemeral)"


def test_workers_on_an_external_redis_share_the_whole_budget(tmp_path: Path):
    plan = serve_plan(["--workers", "4", "--redis-url", "redis://127.0.0.1:1/0", "--max-memory", "400MiB"])
    assert plan.embedded_redis is None
    assert plan.redis_url == "redis://127.0.0.1:1/0"
    assert plan.options["max_memory"] == 100 * MiB
    persistent = serve_plan(["--workers", "2", "--data-dir", str(tmp_path)])
    assert persistent.embedded_redis is not None
    assert persistent.embedded_redis.data_dir == tmp_path


def test_workers_come_from_the_environment_and_the_config_file(tmp_path: Path):
    assert serve_plan([], environ={"TRIO_STREAMS_WORKERS": "3"}).workers == 3
    assert serve_plan([], environ={"TRIO_STREAMS_WORKERS": "auto"}).workers == cpu_count()
    config = tmp_path / "serve.toml"
    config.write_text("workers = 2\n")
    assert serve_plan(["--config", str(config)]).workers == 2
    assert serve_plan(["--config", str(config), "--workers", "1"]).workers == 1  # the flag wins


def test_workers_auto_is_the_cpus_this_process_may_use():
    assert serve_plan(["--workers", "auto"]).workers == len(os.sched_getaffinity(0))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "2", "--store", "memory"], "cannot use --store memory"),
        (["--workers", "0"], "must be at least 1"),
        (["--workers", "many"], "not an integer"),
        (["--workers", "2", "--redis-url", "redis://x", "--data-dir", "d"], "not both"),
        (["--workers", "64", "--max-memory", "512MiB"], "a worker's share breaks a rule"),
        (["--workers", "2", "--app", "tests.workers_app:create_bare_app"], "takes no options"),
    ],
)
def test_combinations_that_cannot_work_are_refused(args: list[str], message: str):
    with pytest.raises(ServeConfigError, match=re.escape(message)):
        serve_plan(args)


def test_workers_serve_subscriptions_their_state_in_the_shared_redis():
    plan = serve_plan(["--workers", "2", "--subscriptions"])
    assert plan.workers == 2
    assert plan.options["durable_subscriptions"] == {"allow_loopback_http": False}


def test_bad_workers_flags_are_one_line_errors_of_the_command():
    result = subprocess.run(
        [*SERVE, "--workers", "2", "--store", "memory"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "--store memory" in result.stderr


@pytest.mark.redis  # a real redis-server, that fails to start
def test_an_embedded_redis_that_cannot_start_is_one_line_not_a_traceback(tmp_path: Path):
    # (A --data-dir that is a file is refused before anything starts, exit 2:
    # test_serve_cli.py.) Here the redis-server itself cannot create its files.
    # Redis 7 keeps its append-only files in a directory, Redis 6.2 in one
    # file: each finds the other kind of thing in its way.
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "appendonlydir").write_text("")
    (data_dir / "appendonly.aof").mkdir()
    command = [*SERVE, "--workers", "2", "--bind", "127.0.0.1:0", "--data-dir", str(data_dir)]
    # Well under the test's timeout: a server that did start fails here, not by a hang.
    result = subprocess.run(command, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("trio-streams serve: error: the embedded redis-server: "), result.stderr
    assert "append-only" in last, last


async def test_embedded_serve_refuses_workers():
    with pytest.raises(ServeConfigError, match="--workers is the command's"):
        await serve(serve_plan(["--workers", "2"]))


def test_restart_delay_doubles_up_to_its_cap():
    assert [restart_delay(n) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]
    assert restart_delay(20) == 30.0


# -- real processes ---------------------------------------------------------------------------


@pytest.mark.redis
@pytest.mark.timeout(120)
async def test_a_run_is_followed_resumed_and_cancelled_through_another_worker(workers):
    with trio.fail_after(90):
        server = await workers("--workers", "2")
        async with httpx.AsyncClient(base_url=server.url) as client:
            started = await client.post("/v1/runs", json=LONG_RUN)
        assert started.status_code in (200, 201, 202), started.text
        owner, run_id = started.headers[HEADER], started.json()["run_id"]
        path = f"/v1/runs/{run_id}/events"

        async with pinned(server.url, other(owner)) as conn:
            worker, first = await read_stream(conn, path, stop_after=3)
        assert worker == other(owner)
        assert [seq for seq, _type, _data in first] == [1, 2, 3]

        following = trio.Event()
        resumed: list[tuple[int, str, Any]] = []

        async def follow() -> None:
            async with pinned(server.url, other(owner)) as conn:
                worker, events = await read_stream(
                    conn, path, headers={"Last-Event-ID": "3"}, on_event=following.set
                )
            assert worker == other(owner)
            resumed.extend(events)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(follow)
            await following.wait()
            async with pinned(server.url, other(owner)) as conn:
                cancel = await conn.request(
                    "POST", f"/v1/runs/{run_id}/cancel", json_body={"reason": "from the other"}
                )
            assert cancel.status in (200, 202), cancel.body
            assert cancel.headers[HEADER] == other(owner)
        seqs = [seq for seq, _type, _data in resumed]
        assert seqs == list(range(4, 4 + len(seqs))), "resumed after 3, every event once, in order"
        assert resumed[-1][1] == "cancelled"
        async with pinned(server.url, owner) as conn:
            status = (await conn.request("GET", f"/v1/runs/{run_id}")).json()
        assert status["status"] == "cancelled"
        assert status["last_seq"] == resumed[-1][0]


@pytest.mark.redis
@pytest.mark.timeout(120)
async def test_a_killed_worker_is_replaced_and_its_runs_end_dead(workers):
    with trio.fail_after(90):
        server = await workers("--workers", "2", "--redis-lease", "1s")
        async with httpx.AsyncClient(base_url=server.url) as client:
            started = await client.post("/v1/runs", json=LONG_RUN)
        owner, run_id = started.headers[HEADER], started.json()["run_id"]
        victim = await server.pid_of(owner)
        following = trio.Event()
        followed: list[tuple[int, str, Any]] = []

        async def follow() -> None:
            async with pinned(server.url, other(owner)) as conn:
                _worker, events = await read_stream(conn, f"/v1/runs/{run_id}/events", on_event=following.set)
            followed.extend(events)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(follow)
            await following.wait()
            os.kill(victim, signal.SIGKILL)
        assert followed[-1][1] == "dead", "the other worker ended the dead owner's run"
        assert followed[-1][2]["error"]["code"] == "owner_lost"

        await server.log(
            rf"worker {owner} \(pid {victim}\) exited unexpectedly \(killed by SIGKILL\); "
            r"restarting it in 0.5s"
        )
        replaced = await server.log(
            rf"worker {owner} started \(pid (\d+)\), replacing one that exited \(killed by SIGKILL\)"
        )
        assert int(replaced.group(1)) != victim
        async with pinned(server.url, owner) as conn:  # the replacement serves in the slot
            status = (await conn.request("GET", f"/v1/runs/{run_id}")).json()
        assert status["status"] == "dead"


@pytest.mark.redis
@pytest.mark.timeout(120)
async def test_sigterm_drains_every_worker_and_the_supervisor_exits_0(workers):
    with trio.fail_after(90):
        server = await workers("--workers", "2", "--shutdown-grace", "1s")
        directory = (await server.log(r"workers' directory (\S+)\)")).group(1)
        assert mode_of(directory) == 0o700
        for worker in ("0", "1"):  # the metrics contract: each worker's slot and the shared directory
            environ = environ_of(await server.pid_of(worker))
            assert environ[WORKER_ID_ENV] == worker
            assert environ[WORKERS_DIR_ENV] == directory
        redis_port = int((await server.log(r"embedded redis-server on port (\d+)")).group(1))
        runs: dict[str, str] = {}
        for worker in ("0", "1"):
            async with pinned(server.url, worker) as conn:
                started = await conn.request("POST", "/v1/runs", json_body=LONG_RUN)
            assert started.headers[HEADER] == worker
            runs[worker] = started.json()["run_id"]
        streams: dict[str, list[tuple[int, str, Any]]] = {}
        following = {worker: trio.Event() for worker in runs}

        async def follow(worker: str) -> None:
            async with pinned(server.url, worker) as conn:
                _worker, streams[worker] = await read_stream(
                    conn, f"/v1/runs/{runs[worker]}/events", on_event=following[worker].set
                )

        async with trio.open_nursery() as nursery:
            for worker in runs:
                nursery.start_soon(follow, worker)
            for event in following.values():
                await event.wait()
            server.process.send_signal(signal.SIGTERM)
        assert await server.process.wait() == 0
        for worker in runs:
            assert streams[worker][-1][1] == "cancelled", "each stream ended with its terminal event"
            assert streams[worker][-1][2]["reason"] == "shutdown"
            await server.log(rf"worker {worker} \(pid \d+\) exited \(status 0\)")
        await server.log("stopped cleanly")
        assert mode_of(directory) is None, "the workers' directory is removed"
        assert not port_answers(redis_port), "the embedded redis-server is stopped"


@pytest.mark.redis
@pytest.mark.timeout(120)
async def test_sigterm_ends_a_stream_followed_through_another_worker_with_the_terminal(workers):
    # The run is worker 0's; worker 1, with no runs of its own, serves a
    # follower through its mirror of the run. Its drain must wait for the
    # owner's terminal rather than end the stream as it exits.
    with trio.fail_after(90):
        server = await workers("--workers", "2", "--shutdown-grace", "1s", "--token", "alice:sa")
        auth = {"Authorization": "Bearer sa"}
        async with pinned(server.url, "0") as conn:
            started = await conn.request("POST", "/v1/runs", json_body=LONG_RUN, headers=auth)
        assert started.headers[HEADER] == "0"
        run_id = started.json()["run_id"]
        streams: dict[str, list[tuple[int, str, Any]]] = {}
        following = {worker: trio.Event() for worker in ("0", "1")}

        async def follow(worker: str) -> None:
            async with pinned(server.url, worker) as conn:
                served_by, streams[worker] = await read_stream(
                    conn, f"/v1/runs/{run_id}/events", headers=auth, on_event=following[worker].set
                )
            assert served_by == worker

        async with trio.open_nursery() as nursery:
            for worker in following:
                nursery.start_soon(follow, worker)
            for event in following.values():
                await event.wait()
            server.process.send_signal(signal.SIGTERM)
        assert await server.process.wait() == 0
        for worker in ("1", "0"):
            last = streams[worker][-1]
            assert last[1] == "cancelled", f"the stream through worker {worker} ended with the terminal event"
            assert last[2]["reason"] == "shutdown"
        assert streams["1"][-1][0] == streams["0"][-1][0], "the same terminal event (seq) through both"
        await server.log("stopped cleanly")


@pytest.mark.redis
@pytest.mark.timeout(120)
async def test_workers_auto_starts_one_worker_per_cpu(workers):
    cpus = sorted(os.sched_getaffinity(0))[:2]
    if len(cpus) < 2:
        pytest.skip("needs two CPUs: auto on one is the single process")
    with trio.fail_after(90):
        server = await workers(
            "--workers", "auto", "--log-format", "json", preexec_fn=lambda: os.sched_setaffinity(0, cpus)
        )
        await server.log(r"store: embedded redis \(ephemeral\); starting 2 workers")
        await server.log(r"2 workers serving")
        for slot in (0, 1):  # the supervisor's record of a start, and a worker's own records
            started = json.loads((await server.log(rf'"message": "worker {slot} started ')).string)
            assert started["worker"] == slot
            assert started["pid"] == await server.pid_of(str(slot))
            assert started["logger"] == "trio_streams.serve"
            own = json.loads((await server.log(rf'"message": "hub started.*"worker": {slot}')).string)
            assert own["logger"] == "trio_streams.web"
        for worker in ("0", "1"):
            async with pinned(server.url, worker) as conn:
                assert (await conn.request("GET", "/healthz")).status == 200
        assert os.environ.get(WORKERS_DIR_ENV) is None  # the contract is the workers', not ours


@pytest.mark.redis
@pytest.mark.timeout(120)
async def test_a_worker_that_cannot_start_ends_the_server_with_status_1(workers, monkeypatch):
    monkeypatch.setenv("WORKERS_TEST_FAIL_ALWAYS", "1")
    with trio.fail_after(90):
        server = await workers("--workers", "2", "--app", "tests.workers_app:create_app", wait=False)
        assert await server.process.wait() == 1
        await server.log(r"error: worker \d could not start \(status 1; see its error above\)")
        assert not any("serving" in line for line in await server.all_lines())


@pytest.mark.redis
@pytest.mark.timeout(120)
async def test_a_replacement_that_fails_to_start_is_retried_after_a_longer_delay(
    workers, monkeypatch, tmp_path: Path
):
    flag = tmp_path / "fail-once"
    monkeypatch.setenv("WORKERS_TEST_FAIL_ONCE", str(flag))
    with trio.fail_after(90):
        server = await workers("--workers", "2", "--app", "tests.workers_app:create_app")
        victim = await server.pid_of("0")
        flag.touch()  # the next worker to start fails, once
        os.kill(victim, signal.SIGKILL)
        await server.log(rf"worker 0 \(pid {victim}\) exited unexpectedly .*restarting it in 0.5s")
        failed = await server.log(
            r"worker 0 \(pid (\d+)\) exited unexpectedly \(status 1\); restarting it in 1s"
        )
        assert int(failed.group(1)) != victim
        await server.log(r"worker 0 started \(pid \d+\), replacing one that exited \(status 1\)")
        assert not flag.exists()
        async with pinned(server.url, "0") as conn:
            assert (await conn.request("GET", "/healthz")).status == 200


@pytest.mark.redis
@pytest.mark.timeout(120)
async def test_workers_shut_down_when_the_supervisor_is_killed(workers, redis_url: str, prefix: str):
    with trio.fail_after(90):
        server = await workers("--workers", "2", "--redis-url", redis_url, "--redis-prefix", prefix)
        pids = [await server.pid_of(worker) for worker in ("0", "1")]
        server.process.kill()  # no drain, no goodbye: the workers' lifeline ends
        await server.process.wait()
        for worker in ("0", "1"):  # they still write to the stderr they inherited
            await server.log(rf"\[worker {worker}\]: the supervisor is gone: shutting down")
            await server.log(rf"trio_streams.serve\[worker {worker}\]: stopped cleanly")

        async def all_gone() -> bool:
            await trio.lowlevel.checkpoint()
            return not any(alive(pid) for pid in pids)

        await eventually(all_gone)  # not our children: nothing to wait() on


@pytest.mark.redis
@pytest.mark.timeout(120)
async def test_a_scrape_through_either_worker_describes_the_whole_server(workers):
    """/metrics is one view of every worker (issue 14 item 2, issue 15 item 8): the
    runs each worker started, exact and labelled by worker, whichever answers."""
    from .metrics_support import families, value

    with trio.fail_after(90):
        server = await workers("--workers", "2")
        short = {"producer": "demo", "input": {"tokens": 2, "rate": None}}
        for worker, runs in (("0", 2), ("1", 3)):
            async with pinned(server.url, worker) as conn:
                for _ in range(runs):
                    started = await conn.request("POST", "/v1/runs", json_body=short)
                    assert started.status == 201, started.body
                    assert started.headers[HEADER] == worker
        for worker in ("0", "1"):
            async with pinned(server.url, worker) as conn:
                scrape = await conn.request("GET", "/metrics")
            assert scrape.status == 200
            text = scrape.body.decode()
            families(text)  # parses, and no family appears twice
            started_by = {w: value(text, "trio_streams_runs_started_total", worker=w) for w in ("0", "1")}
            assert started_by == {"0": 2.0, "1": 3.0}, (worker, started_by)
            read = {
                state: value(text, "trio_streams_metrics_workers", state=state, worker=worker)
                for state in ("scraped", "unreachable")
            }
            assert read == {"scraped": 2.0, "unreachable": 0.0}  # itself and the other


@pytest.mark.redis
async def test_workers_share_subscriptions_a_wake_is_claimed_once_across_them(workers):
    """``--workers 2 --subscriptions``: the state is in the embedded Redis. A
    subscription made through worker 0 is woken by data appended through worker 1,
    one of two claims racing through both workers wins, and the winner's token
    acks through the other worker."""
    pull = {"type": "pull-wake", "pattern": "events/*", "wake_stream": "wake/pool", "lease_ttl_ms": 30000}
    as_json = {"Content-Type": "application/json"}
    base = "/v1/stream"
    with trio.fail_after(90):
        server = await workers("--workers", "2", "--subscriptions")
        async with pinned(server.url, "0") as zero, pinned(server.url, "1") as one:
            assert (await zero.request("PUT", f"{base}/wake/pool", headers=as_json)).status == 201
            put = await zero.request("PUT", f"{base}/__ds/subscriptions/s1", json_body=pull)
            assert put.status == 201, put.body
            assert (await one.request("GET", f"{base}/__ds/subscriptions/s1")).status == 200

            async def woken() -> bool:
                # Data through worker 1 (again until its index has the subscription:
                # the change feed may take a moment), the wake event read through 0.
                await one.request("POST", f"{base}/events/x", json_body={"n": 1})
                events = (await zero.request("GET", f"{base}/wake/pool?offset=-1")).json()
                return bool(events) and events[0]["generation"] == 1

            assert (await one.request("PUT", f"{base}/events/x", headers=as_json)).status == 201
            await eventually(woken, interval=0.1)
            answers: list[Any] = []

            async def claim(connection: HTTPConnection, worker: str) -> None:
                path = f"{base}/__ds/subscriptions/s1/claim"
                answers.append(
                    (connection, await connection.request("POST", path, json_body={"worker": worker}))
                )

            async with trio.open_nursery() as nursery:
                nursery.start_soon(claim, zero, "wa")
                nursery.start_soon(claim, one, "wb")
            assert sorted(answer.status for _, answer in answers) == [200, 409]
            won_on, won = next((conn, answer) for conn, answer in answers if answer.status == 200)
            assert next(a for _, a in answers if a.status == 409).json()["error"]["code"] == "ALREADY_CLAIMED"
            claimed = won.json()
            elsewhere = one if won_on is zero else zero
            ack = {"wake_id": claimed["wake_id"], "generation": claimed["generation"], "done": True}
            acked = await elsewhere.request(
                "POST",
                f"{base}/__ds/subscriptions/s1/ack",
                json_body=ack,
                headers={"Authorization": f"Bearer {claimed['token']}"},
            )
            assert acked.status == 200, acked.body


@pytest.mark.redis
async def test_workers_publish_one_signing_key_the_one_kept_in_redis(workers):
    """``--workers 2 --subscriptions`` with no key file: every worker signs with
    the key kept in the embedded Redis, so both publish the same JWK Set (one
    ``kid``): a receiver verifies a delivery whichever worker it asks."""
    with trio.fail_after(90):
        server = await workers("--workers", "2", "--subscriptions")
        published: dict[str, Any] = {}
        async with pinned(server.url, "0") as zero, pinned(server.url, "1") as one:
            for worker, connection in (("0", zero), ("1", one)):
                answer = await connection.request("GET", "/v1/stream/__ds/jwks.json")
                assert answer.status == 200, answer.body
                assert answer.headers[HEADER] == worker
                published[worker] = answer.json()
        kids = {worker: [key["kid"] for key in jwks["keys"]] for worker, jwks in published.items()}
        assert len(kids["0"]) == 1, kids
        assert kids["0"] == kids["1"], f"the workers sign with different keys: {kids}"
        assert published["0"] == published["1"]
