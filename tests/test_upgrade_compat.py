"""The previous release and this one on one Redis prefix: a rolling upgrade (issue 13, "Compatibility").

The previous release (:data:`PREVIOUS_RELEASE`, Redis layout 2 like this
one) runs as a real ``python -m trio_streams serve`` process from its own
source tree (``git archive`` of that commit), beside a ``serve`` process of
this checkout, both on one redis-server and one prefix. Durable Streams
written by either are read by the other with the same offsets; both append
to one stream at once; forks cross the versions; runs started on one are
followed from the other.

Real processes, sockets and Redis: the real clock, every test under a trio
deadline.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import trio

from trio_streams import open_hub
from trio_streams.log.redis import RedisStore

from .test_web_server import read_events

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

pytestmark = pytest.mark.redis  # real redis-server processes

#: The release before this one: main before issue 13's redesign of the Durable Streams Redis store.
PREVIOUS_RELEASE = "541d312"
#: The repository this test file is in (its history holds the previous release).
ROOT = Path(__file__).resolve().parents[1]
DEADLINE = 60
SERVE = [sys.executable, "-m", "trio_streams", "serve"]
OFFSET = re.compile(r"^\d{16}_\d{16}$")
BINARY = {"Content-Type": "application/octet-stream"}
JSON = {"Content-Type": "application/json"}
TEXT = {"Content-Type": "text/plain"}


def _environment(source: Path) -> dict[str, str]:
    """The environment of a server importing ``trio_streams`` from ``source`` first."""
    return {**os.environ, "PYTHONPATH": str(source)}


def _imported_from(source: Path) -> Path:
    """Where a ``python`` started like the servers (cwd and PYTHONPATH ``source``) imports the package."""
    result = subprocess.run(
        [sys.executable, "-c", "import trio_streams; print(trio_streams.__file__)"],
        cwd=source,
        env=_environment(source),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return Path(result.stdout.strip()).resolve()


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``{"old": <the previous release's tree>, "new": <this checkout>}``.

    Fails (never skips) when git or the previous release's commit is missing:
    the compatibility promise is tested on every run, and a shallow clone
    must not make it vanish silently.
    """
    git = shutil.which("git")
    if git is None:
        pytest.fail("git is not on PATH: the upgrade tests extract the previous release with `git archive`")
    found = subprocess.run(
        [git, "-C", str(ROOT), "cat-file", "-e", f"{PREVIOUS_RELEASE}^{{commit}}"],
        capture_output=True,
        timeout=60,
    )
    if found.returncode != 0:
        pytest.fail(
            f"commit {PREVIOUS_RELEASE} (the previous release) is not in the repository at {ROOT}: "
            f"the upgrade tests need its history (a full `git clone`, not a shallow one; "
            f"`git fetch --unshallow` fixes one)"
        )
    old = tmp_path_factory.mktemp(f"release-{PREVIOUS_RELEASE}")
    archive = subprocess.run(
        [git, "-C", str(ROOT), "archive", PREVIOUS_RELEASE, "trio_streams"],
        capture_output=True,
        timeout=60,
        check=True,
    )
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive.stdout, timeout=60, check=True)
    for source in (old, ROOT):
        assert _imported_from(source).is_relative_to(source.resolve()), f"not the code of {source}"
    assert not (old / "trio_streams" / "log").exists(), "the old tree predates the layout by layer"
    return {"old": old, "new": ROOT}


@dataclass
class Served:
    version: str
    process: trio.Process
    url: str


@pytest.fixture
async def serve(
    nursery: trio.Nursery, sources: dict[str, Path], redis_url: str, prefix: str
) -> AsyncIterator[Callable[..., Awaitable[Served]]]:
    """``await serve("old" | "new", *flags)``: a ``serve`` process of that version on the test's prefix."""
    started: list[trio.Process] = []

    async def drain(stream: trio.abc.ReceiveStream) -> None:
        # Keep reading the server's stdout so that it never blocks on a full pipe.
        while await stream.receive_some():
            pass

    async def start(version: str, *flags: str) -> Served:
        source = sources[version]
        process = await trio.lowlevel.open_process(
            [
                *SERVE,
                "--bind",
                "127.0.0.1:0",
                "--redis-url",
                redis_url,
                "--redis-prefix",
                prefix,
                *flags,
            ],
            cwd=source,
            env=_environment(source),
            stdout=subprocess.PIPE,
        )
        started.append(process)  # killed at the end, even if it never serves
        assert process.stdout is not None
        buffer = b""
        while b"serving on " not in buffer or not buffer.endswith(b"\n"):
            chunk = await process.stdout.receive_some()
            assert chunk, f"the {version} server exited before it served"
            buffer += chunk
        nursery.start_soon(drain, process.stdout)
        return Served(version, process, buffer.decode().split("serving on ", 1)[1].split()[0])

    yield start
    for process in started:
        if process.returncode is None:
            process.kill()
        with trio.move_on_after(10) as waited:
            waited.shield = True
            await process.wait()


async def _read(client: httpx.AsyncClient, url: str, offset: str = "-1") -> tuple[bytes, str]:
    """Everything from ``offset`` to the tail (one catch-up read after another): the bytes and the tail."""
    data = b""
    while True:
        response = await client.get(url, params={"offset": offset})
        assert response.status_code == 200, response.text
        data += response.content
        offset = response.headers["stream-next-offset"]
        assert OFFSET.match(offset), offset
        if response.headers.get("stream-up-to-date") == "true":
            return data, offset


async def _live_reads(client: httpx.AsyncClient) -> int:
    """The server's count of parked Durable Streams live reads (its ``/metrics``)."""
    text = (await client.get("/metrics")).text
    match = re.search(r"^\w*durable_live_reads(?:\{\})? (\d+)", text, re.MULTILINE)
    assert match is not None, text
    return int(match.group(1))


async def _long_poll_woken_by_the_other(
    poller: httpx.AsyncClient,
    writer: httpx.AsyncClient,
    url: str,
    tail: str,
    body: bytes,
    headers: dict[str, str],
) -> httpx.Response:
    """Park a long-poll on ``poller`` at ``tail``, append ``body`` on ``writer``; the poll's answer."""
    results: list[httpx.Response] = []

    async def poll() -> None:
        # Far sooner than the long-poll timeout: a poll that no notification wakes fails here.
        with trio.fail_after(15):
            results.append(await poller.get(url, params={"offset": tail, "live": "long-poll"}))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(poll)
        while await _live_reads(poller) < 1:  # each look is a request: it waits for the server
            pass
        assert not results
        appended = await writer.post(url, content=body, headers=headers)
        assert appended.status_code in (200, 204), appended.text
    (polled,) = results
    assert polled.status_code == 200, (
        "woken by the append (the long-poll timeout is longer than the deadline)"
    )
    assert polled.headers["stream-next-offset"] == appended.headers["stream-next-offset"]
    return polled


def _producer(seq: int, epoch: int = 0, producer: str = "p1") -> dict[str, str]:
    return {**JSON, "Producer-Id": producer, "Producer-Epoch": str(epoch), "Producer-Seq": str(seq)}


@pytest.mark.parametrize(("writer", "reader"), [("old", "new"), ("new", "old")])
async def test_streams_written_by_one_version_are_read_and_continued_by_the_other(
    serve: Callable[..., Awaitable[Served]], writer: str, reader: str
) -> None:
    with trio.fail_after(DEADLINE):
        first = await serve(writer, "--long-poll-timeout", "300s")
        second = await serve(reader, "--long-poll-timeout", "300s")
        async with (
            httpx.AsyncClient(timeout=30, base_url=first.url) as on_w,
            httpx.AsyncClient(timeout=30, base_url=second.url) as on_r,
        ):
            # Binary, with Stream-Seq: the offsets the writer's clients hold.
            binary = "/v1/stream/bin"
            created = await on_w.put(binary, content=b"\x00\xff", headers=BINARY)
            assert created.status_code == 201, created.text
            offsets = ["-1", created.headers["stream-next-offset"]]
            for i in range(1, 6):
                chunk = bytes([i]) * i + b"\n\r\x00"
                appended = await on_w.post(
                    binary, content=chunk, headers={**BINARY, "Stream-Seq": f"{i:04d}"}
                )
                assert appended.status_code == 204, appended.text
                offsets.append(appended.headers["stream-next-offset"])
            assert all(OFFSET.match(offset) for offset in offsets[1:]), offsets
            for offset in offsets:
                assert await _read(on_r, binary, offset) == await _read(on_w, binary, offset), offset
            everything, tail = await _read(on_r, binary)
            assert everything == b"\x00\xff" + b"".join(bytes([i]) * i + b"\n\r\x00" for i in range(1, 6))
            assert tail == offsets[-1]
            # The reader knows the writer's Stream-Seq and goes on after it.
            regressed = await on_r.post(binary, content=b"no", headers={**BINARY, "Stream-Seq": "0005"})
            assert regressed.status_code == 409, regressed.text
            more = await on_r.post(binary, content=b"more", headers={**BINARY, "Stream-Seq": "0006"})
            assert more.status_code == 204, more.text
            assert await _read(on_w, binary, tail) == (b"more", more.headers["stream-next-offset"])
            # A live read on each is woken by an append on the other (their notifications agree).
            polled = await _long_poll_woken_by_the_other(
                on_r, on_w, binary, more.headers["stream-next-offset"], b"woke", BINARY
            )
            assert polled.content == b"woke"
            polled = await _long_poll_woken_by_the_other(
                on_w, on_r, binary, polled.headers["stream-next-offset"], b"too", BINARY
            )
            assert polled.content == b"too"

            # JSON, with an idempotent producer.
            messages = "/v1/stream/json"
            assert (await on_w.put(messages, headers=JSON)).status_code == 201
            json_offsets = ["-1"]
            for seq in range(4):
                appended = await on_w.post(
                    messages, content=json.dumps({"n": seq}).encode(), headers=_producer(seq)
                )
                assert appended.status_code == 200, appended.text
                json_offsets.append(appended.headers["stream-next-offset"])
            for offset in json_offsets:
                from_reader = await on_r.get(messages, params={"offset": offset})
                from_writer = await on_w.get(messages, params={"offset": offset})
                assert from_reader.json() == from_writer.json(), offset
                assert from_reader.headers["stream-next-offset"] == from_writer.headers["stream-next-offset"]
            assert (await on_r.get(messages)).json() == [{"n": n} for n in range(4)]
            # The reader knows the producer's state: a retry is a duplicate, a gap refused, the next goes on.
            retried = await on_r.post(messages, content=b'{"n":3}', headers=_producer(3))
            assert retried.status_code == 204, retried.text
            assert retried.headers["stream-next-offset"] == json_offsets[-1]
            gap = await on_r.post(messages, content=b'{"n":9}', headers=_producer(5))
            assert (gap.status_code, gap.headers["producer-expected-seq"]) == (409, "4")
            nxt = await on_r.post(messages, content=b'{"n":4}', headers=_producer(4))
            assert nxt.status_code == 200, nxt.text
            stale = await on_w.post(messages, content=b'{"n":4}', headers=_producer(4))
            assert stale.status_code == 204, "the writer sees the reader's append as the producer's"
            bumped = await on_r.post(messages, content=b'{"n":0}', headers=_producer(0, epoch=1))
            assert bumped.status_code == 200, bumped.text
            fenced = await on_w.post(messages, content=b'{"n":5}', headers=_producer(5))
            assert (fenced.status_code, fenced.headers["producer-epoch"]) == (403, "1")
            expected = [{"n": n} for n in range(5)] + [{"n": 0}]
            assert (await on_w.get(messages)).json() == expected
            assert (await on_r.get(messages)).json() == expected
            # Closing on one is seen by the other.
            closed = await on_r.post(messages, headers={"Stream-Closed": "true"})
            assert closed.status_code == 204, closed.text
            refused = await on_w.post(messages, content=b'{"n":6}', headers=JSON)
            assert refused.status_code == 409, refused.text
            assert (await on_w.head(messages)).headers.get("stream-closed") == "true"


@pytest.mark.parametrize("producer_on", ["old", "new"])
async def test_both_versions_append_to_one_stream_at_once(
    serve: Callable[..., Awaitable[Served]], producer_on: str
) -> None:
    with trio.fail_after(DEADLINE * 3):
        servers = {"old": await serve("old"), "new": await serve("new")}
        plain_on = "new" if producer_on == "old" else "old"
        async with (
            httpx.AsyncClient(timeout=30, base_url=servers["old"].url) as on_old,
            httpx.AsyncClient(timeout=30, base_url=servers["new"].url) as on_new,
        ):
            clients = {"old": on_old, "new": on_new}
            url = "/v1/stream/busy"
            assert (await on_old.put(url, headers=TEXT)).status_code == 201
            returned: dict[str, str] = {}  # token -> the Stream-Next-Offset its append got
            statuses: list[int] = []

            async def plain(task: int) -> None:
                # 4 tasks x 50 sequential appends: 200 without a producer, concurrently.
                for i in range(50):
                    token = f"<a:{task * 50 + i:03d}>"
                    response = await clients[plain_on].post(url, content=token.encode(), headers=TEXT)
                    statuses.append(response.status_code)
                    assert response.status_code == 204, response.text
                    returned[token] = response.headers["stream-next-offset"]

            async def produced() -> None:
                # 200 appends of one producer (in seq order, as a producer sends); every
                # 25th retried on the other version, which must call it a duplicate.
                for seq in range(200):
                    token = f"<p:{seq:03d}>"
                    headers = {**_producer(seq), "Content-Type": "text/plain"}
                    response = await clients[producer_on].post(url, content=token.encode(), headers=headers)
                    statuses.append(response.status_code)
                    assert response.status_code == 200, response.text
                    returned[token] = response.headers["stream-next-offset"]
                    if seq % 25 == 0:
                        retry = await clients[plain_on].post(url, content=token.encode(), headers=headers)
                        statuses.append(retry.status_code)
                        assert retry.status_code == 204, retry.text
                        # A duplicate answers with the producer's last seq and the tail at the time.
                        assert retry.headers["producer-seq"] == str(seq)
                        assert retry.headers["stream-next-offset"] >= returned[token]

            followed: dict[str, bytes] = {}

            async def follow(version: str) -> None:
                # A live reader on each version, long-polling along while both write (on the new
                # one, woken reads may be served from its cache of its own last commit).
                data, offset = b"", "-1"
                while len(data) < 7 * 400:
                    response = await clients[version].get(url, params={"offset": offset, "live": "long-poll"})
                    assert response.status_code in (200, 204), response.text
                    data += response.content
                    offset = response.headers["stream-next-offset"]
                followed[version] = data

            async with trio.open_nursery() as nursery:
                nursery.start_soon(follow, "old")
                nursery.start_soon(follow, "new")
                for task in range(4):
                    nursery.start_soon(plain, task)
                nursery.start_soon(produced)
            assert not [status for status in statuses if status >= 500]
            body, tail = await _read(on_old, url)
            assert (body, tail) == await _read(on_new, url), "both versions read the same stream"
            assert followed == {"old": body, "new": body}, "live readers on both saw every append once"
            tokens = [body[i : i + 7].decode() for i in range(0, len(body), 7)]
            assert len(body) == 7 * 400
            assert sorted(tokens) == sorted(returned), "every append exactly once"
            assert [t for t in tokens if t.startswith("<p:")] == [f"<p:{seq:03d}>" for seq in range(200)]
            for task in range(4):
                mine = [f"<a:{task * 50 + i:03d}>" for i in range(50)]
                assert [t for t in tokens if t in set(mine)] == mine, "a client's appends stay in its order"
            # Offsets: distinct, ordered like the data, and each one (from either version) leads
            # both versions to the data after its append.
            by_position = [returned[token] for token in tokens]
            assert by_position == sorted(by_position)
            assert len(set(by_position)) == 400
            assert by_position[-1] == tail
            for position in range(0, 400, 9):
                offset = by_position[position]
                after = body[7 * (position + 1) :]
                assert await _read(on_old, url, offset) == (after, tail), offset
                assert await _read(on_new, url, offset) == (after, tail), offset


@pytest.mark.parametrize(
    ("source_on", "fork_on", "delete_on"),
    [("old", "new", "old"), ("old", "new", "new"), ("new", "old", "new"), ("new", "old", "old")],
)
async def test_forks_across_versions(
    serve: Callable[..., Awaitable[Served]], source_on: str, fork_on: str, delete_on: str
) -> None:
    with trio.fail_after(DEADLINE):
        servers = {"old": await serve("old"), "new": await serve("new")}
        async with (
            httpx.AsyncClient(timeout=30, base_url=servers["old"].url) as on_old,
            httpx.AsyncClient(timeout=30, base_url=servers["new"].url) as on_new,
        ):
            clients = {"old": on_old, "new": on_new}
            source, fork = "/v1/stream/src", "/v1/stream/fork"
            assert (await clients[source_on].put(source, content=b"abc", headers=TEXT)).status_code == 201
            middle = (await clients[source_on].post(source, content=b"def", headers=TEXT)).headers[
                "stream-next-offset"
            ]
            assert (await clients[source_on].post(source, content=b"ghi", headers=TEXT)).status_code == 204
            created = await clients[fork_on].put(
                fork,
                headers={
                    **TEXT,
                    "Stream-Forked-From": source,
                    "Stream-Fork-Offset": middle,
                    "Stream-Fork-Sub-Offset": "1",
                },
            )
            assert created.status_code == 201, created.text
            for client in (on_old, on_new):
                assert (await client.get(fork)).text == "abcdefg"
            appended = await clients[source_on].post(fork, content=b"!", headers=TEXT)
            assert appended.status_code == 204, appended.text
            for client in (on_old, on_new):
                assert await _read(client, fork) == (b"abcdefg!", appended.headers["stream-next-offset"])
                assert (await client.get(fork, params={"offset": middle})).text == "g!"
                assert (await client.get(source)).text == "abcdefghi", "the source is untouched"
            assert (await clients[delete_on].delete(source)).status_code == 204
            for client in (on_old, on_new):
                assert (await client.get(source)).status_code == 410, "soft-deleted while the fork reads it"
                assert (await client.get(fork)).text == "abcdefg!", "the fork stays readable"
                assert (await client.put(source, headers=TEXT)).status_code == 409, "the name is not free yet"
            other = "new" if delete_on == "old" else "old"
            assert (await clients[other].delete(fork)).status_code == 204
            for client in (on_old, on_new):
                assert (await client.get(fork)).status_code == 404
                assert (await client.get(source)).status_code == 404, "gone with its last fork"
            assert (await clients[source_on].put(source, content=b"new", headers=TEXT)).status_code == 201
            for client in (on_old, on_new):
                assert (await client.get(source)).text == "new"


def _ids(events: list[tuple[int | None, str, Any]]) -> list[int | None]:
    return [event[0] for event in events]


@pytest.mark.parametrize(("start_on", "follow_on"), [("old", "new"), ("new", "old")])
async def test_runs_started_on_one_version_are_followed_from_the_other(
    serve: Callable[..., Awaitable[Served]], start_on: str, follow_on: str
) -> None:
    with trio.fail_after(DEADLINE):
        servers = {"old": await serve("old"), "new": await serve("new")}
        starter, follower = servers[start_on], servers[follow_on]
        async with (
            httpx.AsyncClient(timeout=30, base_url=starter.url) as on_start,
            httpx.AsyncClient(timeout=30, base_url=follower.url) as on_follow,
        ):
            live = await on_start.post(
                "/v1/runs", json={"producer": "demo", "input": {"tokens": 40, "rate": 50}}
            )
            assert live.status_code == 201, live.text
            run_id = live.json()["run_id"]
            path = f"/v1/runs/{run_id}/events"
            head = await read_events(follower.url, path, stop_after=5)
            assert _ids(head) == [1, 2, 3, 4, 5]
            rest = await read_events(follower.url, path, headers={"Last-Event-ID": "5"})
            events = head + rest
            assert _ids(events) == list(range(1, 42)), "no event lost or repeated across the resume"
            assert events[-1][1] == "done"
            assert [e[1] for e in events[:-1]] == ["token"] * 40
            # The whole run, replayed from each version, is the same.
            assert await read_events(starter.url, path) == events
            assert await read_events(follower.url, path) == events
            doc = (await on_follow.get(f"/v1/runs/{run_id}")).json()
            assert (doc["run_id"], doc["status"]) == (run_id, "done")
            assert (await on_start.get(f"/v1/runs/{run_id}")).json()["status"] == "done"


@pytest.mark.parametrize(("first", "other"), [("old", "new"), ("new", "old")])
async def test_a_stream_deleted_and_created_again_by_the_other_version_is_the_new_one(
    serve: Callable[..., Awaitable[Served]], first: str, other: str
) -> None:
    with trio.fail_after(DEADLINE):
        servers = {"old": await serve("old"), "new": await serve("new")}
        async with (
            httpx.AsyncClient(timeout=30, base_url=servers[first].url) as on_first,
            httpx.AsyncClient(timeout=30, base_url=servers[other].url) as on_other,
        ):
            url = "/v1/stream/again"
            created = await on_first.put(url, content=b"one", headers={**TEXT, "Stream-TTL": "3600"})
            assert created.status_code == 201, created.text
            assert (await on_first.post(url, content=b"two", headers=TEXT)).status_code == 204
            head = await on_other.head(url)
            assert (head.status_code, head.headers["stream-ttl"]) == (200, "3600"), "its lifetime is shared"
            read = await on_other.get(url)
            assert (await on_first.get(url)).text == read.text == "onetwo"
            etag = read.headers["etag"]
            # The other version deletes it and creates it again, as JSON; the first one (which read
            # and wrote the old one) must see the new incarnation, never the one it knew.
            assert (await on_other.delete(url)).status_code == 204
            assert (await on_first.get(url)).status_code == 404
            assert (await on_other.put(url, content=b'{"x":1}', headers=JSON)).status_code == 201
            again = await on_first.get(url)
            assert again.json() == [{"x": 1}]
            assert again.headers["etag"] != etag, "a new stream, a new ETag"
            assert "stream-ttl" not in (await on_first.head(url)).headers
            refused = await on_first.post(url, content=b"three", headers=TEXT)
            assert refused.status_code == 409, "the new stream holds JSON"
            assert (await on_first.post(url, content=b'{"x":2}', headers=JSON)).status_code == 204
            for client in (on_first, on_other):
                assert (await client.get(url)).json() == [{"x": 1}, {"x": 2}]


@pytest.mark.parametrize("version", ["old", "new"])
async def test_each_version_refuses_a_prefix_of_another_layout(
    sources: dict[str, Path], redis_url: str, prefix: str, version: str
) -> None:
    """Both releases check the layout key, so a future layout bump makes a mixed pair refuse to run."""
    with trio.fail_after(DEADLINE):
        helper = RedisStore(redis_url, prefix=prefix + "x")
        async with open_hub(helper):
            await helper.client.set(f"{prefix}layout", "3")
        source = sources[version]
        # A refusing server exits within seconds (after its imports); one that serves never exits.
        with trio.fail_after(20):
            result = await trio.run_process(
                [*SERVE, "--bind", "127.0.0.1:0", "--redis-url", redis_url, "--redis-prefix", prefix],
                cwd=source,
                env=_environment(source),
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
        stderr = result.stderr.decode()
        assert result.returncode == 1, stderr
        assert "Traceback" not in stderr
        (line,) = [line for line in stderr.splitlines() if line.startswith("trio-streams serve: error:")]
        assert line.startswith("trio-streams serve: error: startup failed: ")
        assert f"redis prefix {prefix!r} holds data of layout 3; this trio-streams uses layout 2" in line


@pytest.mark.parametrize(("holder", "other"), [("old", "new"), ("new", "old")])
async def test_run_keys_and_cancels_cross_versions(
    serve: Callable[..., Awaitable[Served]], holder: str, other: str
) -> None:
    """A key held by a run on one version is held for the other; the other cancels and interrupts it."""
    with trio.fail_after(DEADLINE):
        # Long leases: their renewal (which also reads a cancel's intent) comes too late for the
        # deadlines below, so the cancels must travel the control stream the versions share.
        servers = {version: await serve(version, "--redis-lease", "300s") for version in ("old", "new")}
        async with (
            httpx.AsyncClient(timeout=30, base_url=servers[holder].url) as on_holder,
            httpx.AsyncClient(timeout=30, base_url=servers[other].url) as on_other,
        ):
            long = {"tokens": 100_000, "rate": 20}
            started = await on_holder.post(
                "/v1/runs", json={"producer": "demo", "key": "conv", "input": long}
            )
            assert started.status_code == 201, started.text
            held = started.json()["run_id"]
            refused = await on_other.post(
                "/v1/runs", json={"producer": "demo", "key": "conv", "on_conflict": "reject"}
            )
            assert refused.status_code == 409, refused.text
            assert refused.json()["error"]["run_id"] == held
            with trio.fail_after(10):
                cancelled = await on_other.post(f"/v1/runs/{held}/cancel?wait=true")
            assert cancelled.status_code == 200, cancelled.text
            assert cancelled.json()["status"] == "cancelled"
            assert (await read_events(servers[holder].url, f"/v1/runs/{held}/events"))[-1][1] == "cancelled"
            # The key is free for the other version now; the holder's version sees it taken.
            taken = await on_other.post(
                "/v1/runs", json={"producer": "demo", "key": "conv", "on_conflict": "reject", "input": long}
            )
            assert taken.status_code == 201, taken.text
            again = await on_holder.post(
                "/v1/runs", json={"producer": "demo", "key": "conv", "on_conflict": "reject"}
            )
            assert again.status_code == 409, again.text
            assert again.json()["error"]["run_id"] == taken.json()["run_id"]
            # The holder's version interrupts the other's run and takes the key back.
            interrupting = await on_holder.post(
                "/v1/runs",
                json={"producer": "demo", "key": "conv", "on_conflict": "interrupt", "input": {"tokens": 0}},
            )
            assert interrupting.status_code == 201, interrupting.text
            with trio.fail_after(10):
                ended = await read_events(servers[other].url, f"/v1/runs/{taken.json()['run_id']}/events")
            assert ended[-1][1] == "cancelled"
