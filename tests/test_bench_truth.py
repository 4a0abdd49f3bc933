"""``trio-streams bench`` under overload tells the truth (issue 14, item 5).

Requested vs achieved rate, latency from each token's *scheduled* time (not
only the producer's own timestamp), the producer's lag, a BEHIND verdict with
its own exit status, ``--server-pid`` summing the process tree, and usage
errors (exit 2, one line) for a server that refuses the load itself.
Mostly pure functions; the servers are real (loopback, real clock) and the
assertions order by events, never by time.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import trio

from trio_streams.bench._cli import build_result
from trio_streams.bench._load import BenchOptions, Load
from trio_streams.bench._pace import (
    EXIT_BEHIND,
    EXIT_OK,
    EXIT_USAGE,
    EXIT_VIOLATION,
    exit_status,
    schedule_interval,
    scheduled_at,
)
from trio_streams.bench._plot import plot_data
from trio_streams.bench._report import render_summary
from trio_streams.bench._server import ProcStat, ServerGone, ServerSampler, parse_stat, sample_tree, tree
from trio_streams.bench._stats import BenchStats

from .bench_server import serve_run_api
from .server_support import running_server

SCHEMA_PATH = Path(__file__).parent.parent / "trio_streams" / "bench" / "bench.schema.json"
SCHEMA = json.loads(SCHEMA_PATH.read_text())


async def _bench(url: str, *args: str) -> Any:
    command = [sys.executable, "-m", "trio_streams.bench._cli", url, "--quiet", *args]
    return await trio.run_process(command, capture_stdout=True, capture_stderr=True, check=False)


def _row(text: str, label: str) -> str:
    """The value of the summary row ``label``."""
    (line,) = (line for line in text.splitlines() if line.startswith(label + "  "))
    return line[len(label) :].strip()


def _options(**overrides: Any) -> dict[str, Any]:
    base = {"replay": False, "producer": "demo", "input": None, "rate": 100.0}
    return {**base, **overrides}


# -- the schedule ---------------------------------------------------------------


def test_only_a_paced_demo_load_has_a_schedule() -> None:
    assert schedule_interval(_options()) == 0.01
    assert schedule_interval(_options(rate=0.0)) is None  # as fast as it can: nothing was asked
    assert schedule_interval(_options(replay=True)) is None
    assert schedule_interval(_options(producer="other")) is None
    assert schedule_interval(_options(input={"tokens": 3})) is None
    assert BenchOptions(url="http://x", rate=50.0).interval() == 0.02


def test_token_n_is_due_n_minus_one_intervals_after_the_request() -> None:
    assert scheduled_at(100.0, 1, 0.5) == 100.0
    assert scheduled_at(100.0, 5, 0.5) == 102.0


# -- the verdict ----------------------------------------------------------------


def _paced(schedule_seconds: list[float], *, violation: bool = False, **options: Any) -> dict[str, Any]:
    stats = BenchStats()
    stats.runs_started = stats.runs_finished = 1
    stats.events = len(schedule_seconds) + 1
    for value in schedule_seconds:
        stats.latency.add(0.001)
        stats.schedule_latency.add(value)
        stats.producer_lag.add(value)
    if violation:
        stats.violation("hole", "run x: ids 3..3 missing")
    defaults: dict[str, Any] = {"runs": 1, "tokens": len(schedule_seconds), "rate": 100.0}
    return build_result(
        BenchOptions(url="http://x", **{**defaults, **options}), stats, 10.0, 1, None, max_lag=0.5
    )


def test_exit_statuses_are_distinct_and_violations_win() -> None:
    assert len({EXIT_OK, EXIT_VIOLATION, EXIT_USAGE, EXIT_BEHIND}) == 4
    assert exit_status(violations=False, behind=False) == EXIT_OK
    assert exit_status(violations=False, behind=True) == EXIT_BEHIND
    assert exit_status(violations=True, behind=True) == EXIT_VIOLATION


def test_a_load_behind_its_schedule_is_not_ok() -> None:
    result = _paced([0.01] * 90 + [2.0] * 10)  # p99 two seconds late; --max-lag 0.5
    jsonschema.validate(result, SCHEMA)
    pace = result["pace"]
    assert (result["ok"], result["exit_status"], pace["behind"]) == (False, EXIT_BEHIND, True)
    assert pace["requested_events_per_second"] == 100.0
    assert pace["achieved_events_per_second"] == pytest.approx(10.1)
    assert pace["schedule_p99_seconds"] == pytest.approx(2.0, rel=0.011)
    text = render_summary(result)
    behind = [line for line in text.splitlines() if line.startswith("BEHIND: ")]
    assert behind == [
        "BEHIND: p99 latency from the schedule 2.000 s > --max-lag 0.5 s; "
        "achieved 10 of 100 events/s requested (10%)"
    ]
    assert text.endswith("RESULT: BEHIND (the server did not keep the requested pace; see above)")
    assert _row(text, "events/s requested / achieved") == "100 / 10 (10%)"
    assert plot_data(result).verdict.startswith("BEHIND: p99 2.00 s after schedule > 0.5 s")
    assert plot_data(result).title.endswith(plot_data(result).verdict)


def test_within_the_tolerance_is_ok() -> None:
    result = _paced([0.01] * 99 + [2.0])  # one late token: the p99 is on time
    assert (result["ok"], result["exit_status"], result["pace"]["behind"]) == (True, EXIT_OK, False)
    assert render_summary(result).endswith("RESULT: ok")


def test_violations_and_behind_both_say_so() -> None:
    result = _paced([2.0] * 100, violation=True)
    assert (result["ok"], result["exit_status"]) == (False, EXIT_VIOLATION)
    text = render_summary(result)
    assert text.endswith("RESULT: FAILED (stream violations above)")
    assert any(line.startswith("BEHIND: ") for line in text.splitlines())
    assert plot_data(result).verdict.startswith("FAILED: stream violations; BEHIND: p99 2.00 s")


def test_without_a_schedule_nothing_is_judged_and_the_reason_is_given() -> None:
    result = _paced([], rate=0.0)
    assert result["pace"]["behind"] is False
    assert result["pace"]["not_judged"] == "tokens as fast as the server can (--rate 0)"
    assert plot_data(result).schedule_missing == "no schedule: tokens as fast as the server can (--rate 0)"
    text = render_summary(result)
    assert _row(text, "latency from the schedule p50 / p90 / p99 / max").startswith("none: no schedule: ")
    assert _row(text, "events/s requested / achieved").startswith("none (tokens as fast")


# -- --server-pid: the process tree ----------------------------------------------


def test_parse_stat_counts_fields_after_the_last_parenthesis() -> None:
    # comm "a) (b" holds both; utime 11, stime 22, cutime 33, cstime 44.
    line = "42 (a) (b) S 7 42 42 0 -1 4194304 1 2 3 4 11 22 33 44 20 0 1 0 100 200 300"
    assert parse_stat(line) == (7, 110)


def test_the_tree_is_the_root_and_all_its_descendants() -> None:
    stats = {
        1: ProcStat(0, 1, 1),
        10: ProcStat(1, 100, 1000),  # the server
        11: ProcStat(10, 200, 2000),  # a worker
        12: ProcStat(11, 300, 3000),  # the worker's child
        20: ProcStat(1, 999, 9999),  # someone else
    }
    assert tree(stats, 10) == {10, 11, 12}
    sample = sample_tree(stats, 10)
    assert (sample.processes, sample.rss) == (3, 6000)
    with pytest.raises(ServerGone):
        sample_tree(stats, 99)


#: A parent with two children that each burn 0.25 s of CPU when told to: one
#: stays alive, one exits and is reaped (its CPU then sits in the parent's cutime).
_BURN = """
import sys, time
sys.stdin.readline()
until = time.process_time() + 0.25
while time.process_time() < until:
    pass
print("burnt", flush=True)
"""
_FAMILY = f"""
import subprocess, sys
def child(code):
    return subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
stay = child({_BURN!r} + "sys.stdin.readline()")
go = child({_BURN!r})
print("ready", flush=True)
sys.stdin.readline()
for one in (stay, go):
    one.stdin.write("\\n")
    one.stdin.flush()
    assert one.stdout.readline() == "burnt\\n"
go.wait()
print("reaped", flush=True)
sys.stdin.readline()
stay.stdin.write("\\n")
stay.stdin.flush()
stay.wait()
"""


async def _line(stream: trio.abc.ReceiveStream) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = await stream.receive_some(1)
        assert chunk, "the family script ended early"
        data += chunk
    return data


async def test_server_pid_sums_live_and_reaped_children() -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            family = await nursery.start(
                functools.partial(
                    trio.run_process,
                    [sys.executable, "-c", _FAMILY],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                )
            )
            assert await _line(family.stdout) == b"ready\n"
            sampler = ServerSampler(family.pid)
            sampler.begin()
            await family.stdin.send_all(b"\n")
            assert await _line(family.stdout) == b"reaped\n"
            result = sampler.result()
            await family.stdin.send_all(b"\n")
    # Two children burnt >= 0.2 s each: the live one counts by its own
    # utime/stime, the reaped one through the parent's cutime/cstime.
    assert result["cpu_seconds"] >= 0.4, result
    assert result["processes"] == 3  # the parent and both children at the peak
    assert result["peak_rss_bytes"] >= result["start_rss_bytes"] > 0


# -- real servers -----------------------------------------------------------------


@pytest.mark.timeout(120)  # its own trio deadline is 60 s: let that one speak first
async def test_a_server_that_falls_behind_exits_behind(tmp_path: Path) -> None:
    # "slow" paces at half the requested rate: token n is emitted no earlier
    # than 2(n-1)/rate after the run started, due (n-1)/rate after it was
    # requested, so the 20th token is >= 0.95 s late whatever the machine does.
    out = tmp_path / "out.json"
    with trio.fail_after(60):
        async with serve_run_api("slow") as url:
            result = await _bench(
                url, "--runs=1", "--tokens=20", "--rate=20", "--max-lag=0.3", f"--json={out}"
            )
    assert result.returncode == EXIT_BEHIND, result.stderr.decode()
    document = json.loads(out.read_text())
    jsonschema.validate(document, SCHEMA)
    assert document["violations"] == dict.fromkeys(document["violations"], 0)
    assert document["pace"]["behind"] is True
    assert document["producer_lag_seconds"]["count"] == 20
    assert document["producer_lag_seconds"]["max"] >= 0.95
    assert document["latency_from_schedule_seconds"]["max"] >= 0.95
    lines = result.stdout.decode().splitlines()
    assert lines[-1] == "RESULT: BEHIND (the server did not keep the requested pace; see above)"
    assert lines[-2].startswith("BEHIND: p99 latency from the schedule ")


async def test_every_paced_token_is_measured_against_its_schedule() -> None:
    with trio.fail_after(30):
        async with serve_run_api() as url:
            options = BenchOptions(url=url, runs=2, subscribers_per_run=3, tokens=20, rate=400)
            stats = await Load(options).run()
    assert not stats.failed, stats.examples
    assert stats.schedule_latency.count == 2 * 3 * 20  # each delivery of each token
    assert stats.producer_lag.count == 2 * 20  # each token once


@pytest.mark.timeout(120)  # its own trio deadline is 60 s: let that one speak first
async def test_the_real_server_refusing_the_load_is_a_usage_error(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    with trio.fail_after(60):
        async with running_server() as server:
            unknown = await _bench(server.url, "--runs=3", "--producer=nope", f"--json={out}")
            invalid = await _bench(server.url, "--runs=2", "--workers=2", '--input={"tokens": -1}')
            dead = await _bench(server.url, "--runs=1", "--server-pid=999999999")
            fine = await _bench(server.url, "--runs=2", "--tokens=10", "--rate=1000", "--max-lag=60")
    for result, starts in (
        (unknown, "trio-streams bench: error: the server refused the run: no producer named 'nope'"),
        (invalid, "trio-streams bench: error: the server refused the run: input.tokens must be"),
        (dead, "trio-streams bench: error: --server-pid 999999999: no process 999999999"),
    ):
        lines = result.stderr.decode().strip().splitlines()
        assert result.returncode == EXIT_USAGE, lines
        assert len(lines) == 1, lines
        assert lines[0].startswith(starts), lines
        assert b"RESULT" not in result.stdout
    assert not out.exists()  # nothing was measured, so no result was written
    assert fine.returncode == EXIT_OK, fine.stdout.decode() + fine.stderr.decode()
    assert fine.stdout.decode().splitlines()[-1] == "RESULT: ok"


@pytest.mark.timeout(120)  # its own trio deadline is 60 s: let that one speak first
async def test_a_missing_or_wrong_token_is_a_usage_error(tmp_path: Path) -> None:
    # 401 is the command's fault, like an unknown producer: no load changes it,
    # so it is one line and exit 2, not a FAILED run of http_error violations.
    out = tmp_path / "out.json"
    with trio.fail_after(60):
        async with running_server(auth={"s3cret": "alice"}) as server:
            missing = await _bench(server.url, "--runs=2", f"--json={out}")
            wrong = await _bench(server.url, "--runs=2", "--token=nope")
            fine = await _bench(server.url, "--runs=2", "--tokens=5", "--token=s3cret")
    for result in (missing, wrong):
        lines = result.stderr.decode().strip().splitlines()
        assert result.returncode == EXIT_USAGE, lines
        assert len(lines) == 1, lines
        assert lines[0].startswith("trio-streams bench: error: the server refused the run: "), lines
        assert "token" in lines[0], lines
        assert b"RESULT" not in result.stdout
    assert not out.exists()
    assert fine.returncode == EXIT_OK, fine.stdout.decode() + fine.stderr.decode()
