"""The load itself: start runs over the run API, follow each with SSE
subscribers, and check every stream while measuring it.

Each run is started with ``POST /v1/runs`` and followed by ``S`` subscribers
on ``GET /v1/runs/{id}/events``. A subscriber checks that ids arrive
contiguous from 1 with no duplicate and no hole -- across its forced
reconnects (``Last-Event-ID``) too -- and that the stream ends with a
terminal event that matches the run's final status. Latency is the event's
``ts`` (the producer's wall clock, seconds) to the time it was parsed here;
for a paced run also from the token's *scheduled* time (``_pace.py``), and
the producer's own lag behind that schedule.

A server that refuses the load itself -- it cannot be reached, or it does
not know the producer or its input -- is not measured at all: :class:`Load`
stops and says why in ``usage_error`` (the command's usage exit status).
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass
from typing import Any

import trio

from ._httpclient import HTTPConnection, HTTPError, SSEParser
from ._pace import schedule_interval, scheduled_at
from ._stats import BenchStats

TERMINAL = frozenset({"done", "error", "cancelled", "dead"})

#: Error codes of a ``POST /v1/runs`` refusal that no amount of load changes:
#: the command was wrong, not the server. (So is a ``401``: the ``--token``.)
USAGE_ERROR_CODES = frozenset({"unknown_producer", "invalid_input"})


@dataclass(frozen=True, slots=True)
class BenchOptions:
    """What to run; see ``trio-streams bench --help`` for each field."""

    url: str
    runs: int = 10
    subscribers_per_run: int = 1
    tokens: int = 100
    rate: float = 0.0
    size: int = 16
    duration: float | None = None
    reconnect_every: int | None = None
    cancel_fraction: float = 0.0
    token: str | None = None
    producer: str = "demo"
    input: dict[str, Any] | None = None
    stream_timeout: float = 120.0
    seed: int | None = None
    replay: bool = False

    def run_input(self) -> dict[str, Any]:
        if self.input is not None:
            return self.input
        # The run API spells "as fast as it can" as a null rate.
        return {"tokens": self.tokens, "rate": self.rate or None, "size": self.size}

    def interval(self) -> float | None:
        """Seconds between a run's scheduled tokens (``None``: no schedule)."""
        return schedule_interval(
            {"replay": self.replay, "producer": self.producer, "input": self.input, "rate": self.rate}
        )

    def expected_events(self) -> int | None:
        """Events a demo run emits before its terminal, if known."""
        if self.input is None and self.producer == "demo":
            return self.tokens
        return None


#: How long the check before the load waits for an HTTP answer.
REACH_TIMEOUT = 10.0


async def unreachable(options: BenchOptions) -> str | None:
    """Why the server cannot be load-tested at all (``None`` if it answers HTTP).

    One ``GET /healthz`` before the load: any HTTP answer, even a 404 from a
    server without that endpoint, means it is there. Refused, reset, not HTTP
    or no answer within :data:`REACH_TIMEOUT` seconds: the reason, on one line.
    """
    headers = {"authorization": f"Bearer {options.token}"} if options.token else {}
    connection = HTTPConnection(options.url, headers)
    try:
        with trio.move_on_after(REACH_TIMEOUT):
            await connection.request("GET", "/healthz")
            return None
        return f"cannot reach {options.url}: no HTTP answer within {REACH_TIMEOUT:g} s"
    except HTTPError as exc:
        return f"cannot reach {options.url}: {exc}"
    finally:
        await connection.aclose()


class Load:
    """One load generator: ``await Load(options).run()`` returns its stats.

    Cancellation: stops the load; what was measured so far stays in ``stats``.
    """

    def __init__(self, options: BenchOptions) -> None:
        self.options = options
        self.stats = BenchStats()
        self._random = random.Random(options.seed)
        self._headers = {"authorization": f"Bearer {options.token}"} if options.token else {}
        self.started_at = time.perf_counter()
        self.live_runs = 0
        #: Why the load was refused as a whole (then nothing was measured).
        self.usage_error: str | None = None
        self._nursery: trio.Nursery | None = None

    async def run(self) -> BenchStats:
        """Run the load; return its stats (check ``usage_error`` first).

        Cancellation: stops every slot; what was measured so far stays in ``stats``.
        """
        options = self.options
        self.started_at = time.perf_counter()
        deadline = math.inf if options.duration is None else trio.current_time() + options.duration
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for _ in range(options.runs):
                nursery.start_soon(self._slot, deadline)
        return self.stats

    def _refuse(self, message: str) -> None:
        """Stop the whole load: the server refused the command itself."""
        if self.usage_error is None:
            self.usage_error = message
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    async def _slot(self, deadline: float) -> None:
        """Start runs one after another until the deadline (one if none)."""
        connection = HTTPConnection(self.options.url, self._headers)
        try:
            while True:
                await self._one_run(connection)
                if self.options.duration is None or trio.current_time() >= deadline:
                    return
        finally:
            await connection.aclose()

    async def _one_run(self, connection: HTTPConnection) -> None:
        options, stats = self.options, self.stats
        body = {"producer": options.producer, "input": options.run_input()}
        began = time.perf_counter()
        # The schedule's origin, on the clock the producer's ``ts`` uses.
        origin = time.time()
        try:
            response = await connection.request("POST", "/v1/runs", json_body=body)
        except HTTPError as exc:
            stats.violation("http_error", f"POST /v1/runs: {exc}")
            await trio.sleep(0.1)  # a dead server must not turn this into a busy loop
            return
        usage = response.status == 400 and _error_code(response.body) in USAGE_ERROR_CODES
        if usage or response.status == 401:  # 401: a missing or wrong --token
            self._refuse(f"the server refused the run: {_error_message(response.body)}")
            return
        if response.status in (404, 405):  # no run API there: the URL is wrong, not the server
            self._refuse(
                f"no run API at {options.url.rstrip('/')}/v1/runs (HTTP {response.status}): URL must be "
                "the server's base (with a reverse proxy's prefix, if any), without /v1"
            )
            return
        if response.status != 201:
            stats.violation("http_error", f"POST /v1/runs -> {response.status} {response.body[:200]!r}")
            await trio.sleep(0.1)
            return
        stats.start_latency.add(time.perf_counter() - began)
        stats.runs_started += 1
        run_id = str(response.json()["run_id"])
        cancel = self._random.random() < options.cancel_fraction
        if options.replay and not await self._wait_finished(connection, run_id):
            return
        if cancel:
            stats.runs_cancelled += 1
        followers = [
            _Follower(self, run_id, cancel and index == 0, origin, records_lag=index == 0)
            for index in range(options.subscribers_per_run)
        ]
        self.live_runs += 1
        try:
            with trio.move_on_after(options.stream_timeout) as timeout:
                async with trio.open_nursery() as nursery:
                    for follower in followers:
                        nursery.start_soon(follower.follow)
            if timeout.cancelled_caught:
                stats.violation(
                    "no_terminal", f"run {run_id}: no terminal event within {options.stream_timeout:g} s"
                )
                return
        finally:
            self.live_runs -= 1
        stats.runs_finished += 1
        self._check_run(run_id, followers, cancel)

    async def _wait_finished(self, connection: HTTPConnection, run_id: str) -> bool:
        """For ``--replay``: poll the run's status until it has finished (a
        load generator may poll; the library never does)."""
        delay = 0.01
        with trio.move_on_after(self.options.stream_timeout):
            while True:
                try:
                    response = await connection.request("GET", f"/v1/runs/{run_id}")
                    status = response.json().get("status") if response.status == 200 else None
                except HTTPError as exc:
                    self.stats.violation("http_error", f"GET /v1/runs/{run_id}: {exc}")
                    return False
                if response.status != 200:
                    self.stats.violation("http_error", f"GET /v1/runs/{run_id} -> {response.status}")
                    return False
                if status in TERMINAL:
                    return True
                await trio.sleep(delay)
                delay = min(delay * 2, 0.5)
        self.stats.violation(
            "no_terminal", f"run {run_id} did not finish within {self.options.stream_timeout:g} s"
        )
        return False

    def _check_run(self, run_id: str, followers: list[_Follower], cancel: bool) -> None:
        stats = self.stats
        outcomes = {(f.terminal, f.last_id) for f in followers if f.terminal is not None}
        if len(outcomes) > 1:
            stats.violation(
                "wrong_terminal", f"run {run_id}: subscribers disagree on its end: {sorted(outcomes)}"
            )
        for follower in followers:
            terminal = follower.terminal
            if terminal is None:
                continue  # already counted as no_terminal
            if cancel and follower.final_status is not None:
                expected = follower.final_status
            elif cancel:
                expected = terminal  # the cancel request itself failed (counted)
            else:
                expected = "done" if self.options.expected_events() is not None else terminal
            if terminal != expected:
                stats.violation("wrong_terminal", f"run {run_id}: ended {terminal!r}, expected {expected!r}")
            want = self.options.expected_events()
            if want is not None and not cancel and terminal == "done" and follower.last_id != want + 1:
                stats.violation("hole", f"run {run_id}: last id {follower.last_id}, expected {want + 1}")


class _Follower:
    """One SSE subscriber of one run."""

    def __init__(self, load: Load, run_id: str, cancels: bool, origin: float, *, records_lag: bool) -> None:
        self.load = load
        self.run_id = run_id
        self.cancels = cancels
        #: When the run was requested (wall clock): token ``seq`` is due ``(seq - 1) * interval`` later.
        self.origin = origin
        #: The producer's lag is one figure per event: one subscriber per run records it.
        self.records_lag = records_lag
        self.last_id = 0
        self.terminal: str | None = None
        self.final_status: str | None = None
        self._since_connect = 0

    async def follow(self) -> None:
        load = self.load
        options, stats = load.options, load.stats
        connection = HTTPConnection(options.url, load._headers)
        began = time.perf_counter()
        first = True
        cancel_after = max(1, options.tokens // 2) if self.cancels else None
        try:
            async with trio.open_nursery() as nursery:
                while self.terminal is None:
                    headers = {"accept": "text/event-stream"}
                    if self.last_id:
                        headers["last-event-id"] = str(self.last_id)
                    self._since_connect = 0
                    try:
                        ended = await self._read_stream(
                            connection, headers, nursery, cancel_after, began, first
                        )
                    except HTTPError as exc:
                        stats.violation("http_error", f"GET events of {self.run_id}: {exc}")
                        return
                    first = False
                    if ended == "closed":
                        stats.violation(
                            "no_terminal", f"run {self.run_id}: stream closed after id {self.last_id}"
                        )
                        return
                    if ended == "error":
                        return
                    if ended == "reconnect":
                        stats.reconnects += 1
                    if cancel_after is not None and self.last_id >= cancel_after:
                        cancel_after = None
            stats.stream_duration.add(time.perf_counter() - began)
        finally:
            await connection.aclose()

    async def _read_stream(
        self,
        connection: HTTPConnection,
        headers: dict[str, str],
        nursery: trio.Nursery,
        cancel_after: int | None,
        began: float,
        first: bool,
    ) -> str:
        """Read one connection's worth; return why it stopped: ``"terminal"``,
        ``"reconnect"``, ``"closed"`` (no terminal) or ``"error"``."""
        load = self.load
        options, stats = load.options, load.stats
        reconnect_every = options.reconnect_every
        interval = options.interval()
        async with connection.stream("GET", f"/v1/runs/{self.run_id}/events", headers=headers) as (
            status,
            _,
            body,
        ):
            if status != 200:
                stats.violation("http_error", f"GET events of {self.run_id} -> {status}")
                return "error"
            reader = SSEParser()
            async for chunk in body:
                received = time.time()
                second = int(time.perf_counter() - load.started_at)
                stats.bytes += len(chunk)
                count = 0
                for message in reader.feed(chunk):
                    if message.comment is not None:
                        stats.heartbeats += 1
                        continue
                    if message.event == "gap":
                        self._gap(message.data)
                        continue
                    if not self._check_id(message.id):
                        continue
                    count += 1
                    if first:
                        stats.first_event.add(time.perf_counter() - began)
                        first = False
                    timestamp = _timestamp(message.data)
                    if timestamp is not None:
                        stats.latency.add(received - timestamp)
                        if interval is not None:
                            due = scheduled_at(self.origin, self.last_id, interval)
                            stats.schedule_latency.add(received - due)
                            if self.records_lag:
                                stats.producer_lag.add(timestamp - due)
                    self._since_connect += 1
                    if message.event in TERMINAL:
                        self.terminal = message.event
                        break
                    if cancel_after is not None and self.last_id >= cancel_after:
                        nursery.start_soon(self._cancel)
                        cancel_after = None
                stats.events += count
                stats.tick(second, count)
                if self.terminal is not None:
                    return "terminal"
                if reconnect_every and self._since_connect >= reconnect_every:
                    return "reconnect"
        return "closed"

    def _check_id(self, raw: str | None) -> bool:
        """Account for one event id; False if it must be skipped (a duplicate)."""
        stats = self.load.stats
        try:
            seq = int(raw) if raw is not None else -1
        except ValueError:
            seq = -1
        if seq < 1:
            stats.violation("hole", f"run {self.run_id}: event without a valid id ({raw!r})")
            return False
        expected = self.last_id + 1
        if seq < expected:
            kind = "duplicate" if seq == self.last_id else "out_of_order"
            stats.violation(kind, f"run {self.run_id}: id {seq} after {self.last_id}")
            return False
        if seq > expected:
            stats.violation("hole", f"run {self.run_id}: ids {expected}..{seq - 1} missing")
        self.last_id = seq
        return True

    def _gap(self, data: str) -> None:
        stats = self.load.stats
        try:
            gap = json.loads(data)
            first_available = int(gap["first_available"])
        except (ValueError, KeyError, TypeError):
            stats.violation("hole", f"run {self.run_id}: malformed gap event {data[:100]!r}")
            return
        stats.violation(
            "gap", f"run {self.run_id}: {gap.get('missed')} events trimmed before {first_available}"
        )
        self.last_id = max(self.last_id, first_available - 1)

    async def _cancel(self) -> None:
        load = self.load
        connection = HTTPConnection(load.options.url, load._headers)
        try:
            response = await connection.request("POST", f"/v1/runs/{self.run_id}/cancel?wait=true")
            if response.status != 200:
                load.stats.violation("http_error", f"cancel {self.run_id} -> {response.status}")
                return
            self.final_status = str(response.json()["status"])
        except HTTPError as exc:
            load.stats.violation("http_error", f"cancel {self.run_id}: {exc}")
        finally:
            await connection.aclose()


def _error_code(body: bytes) -> str | None:
    """The ``error.code`` of a JSON error body, if it has one."""
    try:
        code = json.loads(body)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None
    return code if isinstance(code, str) else None


def _error_message(body: bytes) -> str:
    """The ``error.message`` of a JSON error body (else the body's start), on one line."""
    try:
        message = str(json.loads(body)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        message = body[:200].decode("utf-8", "replace")
    return " ".join(message.split())


def _timestamp(data: str) -> float | None:
    """The producer's ``ts`` in an event's JSON object, if it has one."""
    if '"ts"' not in data:
        return None
    try:
        value = json.loads(data).get("ts")
    except (ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, int | float) else None
