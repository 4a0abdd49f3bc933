"""``trio-streams bench`` against real servers on loopback (real clock)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import jsonschema
import pytest
import trio

from trio_streams.bench._cli import build_result
from trio_streams.bench._load import BenchOptions, Load
from trio_streams.bench._report import render_summary
from trio_streams.bench._stats import Histogram

from .bench_server import serve_run_api

if TYPE_CHECKING:
    import subprocess

SCHEMA = Path(__file__).parent.parent / "trio_streams" / "bench" / "bench.schema.json"


async def _bench(url: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    command = [sys.executable, "-m", "trio_streams.bench._cli", url, "--quiet", *args]
    return await trio.run_process(command, capture_stdout=True, capture_stderr=True, check=False)


async def test_counts_every_event_of_a_known_workload() -> None:
    with trio.fail_after(30):
        async with serve_run_api() as url:
            options = BenchOptions(url=url, runs=4, subscribers_per_run=3, tokens=50, seed=1)
            stats = await Load(options).run()
    # 4 runs x 3 subscribers x (50 tokens + the terminal event).
    assert stats.events == 4 * 3 * 51
    assert (stats.runs_started, stats.runs_finished) == (4, 4)
    assert not stats.failed, stats.examples
    assert stats.latency.count == 4 * 3 * 50  # every token carried a timestamp
    assert stats.first_event.count == 4 * 3


async def test_reconnects_resume_without_holes_or_duplicates() -> None:
    with trio.fail_after(30):
        async with serve_run_api() as url:
            options = BenchOptions(url=url, runs=2, subscribers_per_run=2, tokens=40, reconnect_every=7)
            stats = await Load(options).run()
    assert stats.events == 2 * 2 * 41
    assert stats.reconnects == 2 * 2 * (41 // 7)
    assert not stats.failed, stats.examples


async def test_cancelled_runs_must_end_cancelled() -> None:
    with trio.fail_after(30):
        async with serve_run_api() as url:
            options = BenchOptions(url=url, runs=3, tokens=200, rate=400, cancel_fraction=1.0)
            stats = await Load(options).run()
    assert stats.runs_cancelled == 3
    assert not stats.failed, stats.examples
    assert stats.events < 3 * 201  # they really stopped early


@pytest.mark.timeout(120)  # its own trio deadline is 60 s: let that one speak first
@pytest.mark.parametrize(("fault", "kind"), [("skip", "hole"), ("duplicate", "duplicate")])
async def test_injected_fault_is_detected_and_fails_the_command(fault, kind, tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    with trio.fail_after(60):
        async with serve_run_api(fault) as url:
            result = await _bench(url, "--runs=2", "--tokens=10", f"--json={out}")
    assert result.returncode == 1, result.stderr.decode()
    document = json.loads(out.read_text())
    assert document["ok"] is False
    assert document["violations"][kind] == 2
    assert b"FAILED" in result.stdout


@pytest.mark.timeout(120)  # its own trio deadline is 60 s: let that one speak first
async def test_json_output_validates_against_the_documented_schema(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    with trio.fail_after(60):
        async with serve_run_api() as url:
            result = await _bench(
                url, "--runs=2", "--tokens=20", "--workers=2", f"--server-pid={os.getpid()}", f"--json={out}"
            )
    assert result.returncode == 0, result.stderr.decode()
    document = json.loads(out.read_text())
    jsonschema.validate(document, json.loads(SCHEMA.read_text()))
    assert document["workers"] == 2
    assert document["events"] == 2 * 21
    # This test process is the server: its CPU time and memory were sampled.
    assert document["server"]["peak_rss_bytes"] >= document["server"]["start_rss_bytes"] > 0


async def test_replay_subscribes_after_the_run_finished() -> None:
    with trio.fail_after(30):
        async with serve_run_api() as url:
            options = BenchOptions(url=url, runs=2, subscribers_per_run=2, tokens=30, replay=True)
            stats = await Load(options).run()
    assert stats.events == 2 * 2 * 31
    assert not stats.failed, stats.examples


@pytest.mark.timeout(120)  # its own trio deadline is 60 s: let that one speak first
async def test_plot_is_a_real_png(tmp_path: Path) -> None:
    out = tmp_path / "plot.png"
    with trio.fail_after(60):
        async with serve_run_api() as url:
            result = await _bench(url, "--runs=2", "--tokens=30", f"--plot={out}")
    assert result.returncode == 0, result.stderr.decode()
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.stat().st_size > 5000


async def test_bad_arguments_give_one_line_errors() -> None:
    result = await _bench("ftp://nowhere")
    assert result.returncode == 2
    assert result.stderr.decode().strip().splitlines() == [
        "trio-streams bench: error: URL must start with http:// or https://, not 'ftp://nowhere'"
    ]
    result = await _bench("http://127.0.0.1:1", "--cancel-fraction=2")
    assert result.returncode == 2
    assert "--cancel-fraction: must be between 0 and 1" in result.stderr.decode()
    # Black-box pass: "invalid _positive_int value: 'abc'", and a --stream-timeout of 0
    # that failed every run as a stream violation.
    for flag, value, message in (
        ("--runs", "abc", "not an integer: 'abc'"),
        ("--seed", "abc", "not an integer: 'abc'"),
        ("--rate", "fast", "not a number: 'fast'"),
        ("--cancel-fraction", "x", "not a number: 'x'"),
        ("--stream-timeout", "0", "must be more than 0, not 0"),
    ):
        result = await _bench("http://127.0.0.1:1", f"{flag}={value}")
        assert result.returncode == 2
        # (argparse's usage lines first: this is the module's own parser.)
        last = result.stderr.decode().strip().splitlines()[-1]
        assert last.endswith(f"argument {flag}: {message}"), last


@pytest.mark.parametrize("where", ["missing-dir", "a-directory", "under-a-file"])
@pytest.mark.parametrize("flag", ["--json", "--plot"])
async def test_unwritable_output_is_refused_before_the_load(flag: str, where: str, tmp_path: Path) -> None:
    # Black-box pass: an unwritable --json/--plot path was a traceback after the whole load.
    # The server is unreachable: the path is refused first, before anything is tried.
    (tmp_path / "file").write_text("")
    path = {
        "missing-dir": "/nonexistent/dir/x.json",
        "a-directory": str(tmp_path),
        "under-a-file": str(tmp_path / "file" / "x.json"),
    }[where]
    reason = {
        "missing-dir": "no directory '/nonexistent/dir'",
        "a-directory": "is a directory",
        "under-a-file": f"no directory {str(tmp_path / 'file')!r}",
    }[where]
    with trio.fail_after(30):
        result = await _bench("http://127.0.0.1:1", "--runs=1", f"{flag}={path}")
    assert result.returncode == 2
    assert result.stderr.decode().strip().splitlines() == [
        f"trio-streams bench: error: {flag} {path}: {reason}"
    ]


@pytest.mark.parametrize(
    ("url", "base"),
    [
        ("http://127.0.0.1:1/v1", "http://127.0.0.1:1"),
        ("http://127.0.0.1:1/v1/", "http://127.0.0.1:1"),
        ("http://127.0.0.1:1/api/v1/runs", "http://127.0.0.1:1/api"),
    ],
)
async def test_a_url_with_the_api_path_is_a_usage_error(url: str, base: str) -> None:
    # Black-box pass: http://HOST:PORT/v1 was reported as a stream violation.
    with trio.fail_after(30):
        result = await _bench(url, "--runs=1")
    assert result.returncode == 2
    assert result.stderr.decode().strip().splitlines() == [
        "trio-streams bench: error: URL is the server's base, without /v1 (bench adds /v1/runs itself): "
        f"try {base!r}, not {url!r}"
    ]


@pytest.mark.timeout(120)  # its own trio deadline is 60 s: let that one speak first
async def test_no_run_api_under_the_url_is_a_usage_error() -> None:
    # A prefix the server does not serve (no proxy, no --root-path): a 404 on
    # POST /v1/runs is a wrong URL, not a stream violation; nothing measured.
    with trio.fail_after(60):
        async with serve_run_api() as url:
            result = await _bench(f"{url}/api", "--runs=2", "--tokens=5", "--json=-")
    assert result.returncode == 2, result.stderr.decode()
    assert result.stdout == b""
    assert result.stderr.decode().strip().splitlines() == [
        f"trio-streams bench: error: no run API at {url}/api/v1/runs (HTTP 404): URL must be the server's "
        "base (with a reverse proxy's prefix, if any), without /v1"
    ]


def test_help_states_every_default() -> None:
    # Black-box pass: --rate, --stream-timeout and --seed did not show theirs.
    import argparse

    from trio_streams.bench._cli import configure

    parser = argparse.ArgumentParser()
    configure(parser)
    for action in parser._actions:
        if action.help in (None, argparse.SUPPRESS) or not action.option_strings or action.dest == "help":
            continue
        assert "default" in action.help, action.option_strings


async def test_unreachable_server_is_a_usage_error_not_a_hang() -> None:
    # Issue 14 item 5: a server that is not there is not a "stream violation"
    # (this test used to expect exit 1 and one http_error): nothing is measured.
    with trio.fail_after(30):
        result = await _bench("http://127.0.0.1:1", "--runs=1", "--json=-")
    assert result.returncode == 2
    assert result.stdout == b""
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("trio-streams bench: error: cannot reach http://127.0.0.1:1: ")


def test_histogram_percentiles_are_within_one_percent() -> None:
    histogram = Histogram()
    for i in range(1, 10_001):
        histogram.add(i / 10_000)  # 0.1 ms .. 1 s, uniform
    assert histogram.percentile(0.5) == pytest.approx(0.5, rel=0.011)
    assert histogram.percentile(0.99) == pytest.approx(0.99, rel=0.011)
    assert histogram.percentile(1.0) == 1.0
    other = Histogram.from_json(json.loads(json.dumps(histogram.to_json())))
    other.merge(histogram)
    assert other.count == 20_000
    assert other.percentile(0.5) == histogram.percentile(0.5)


def test_summary_mentions_failures() -> None:
    from trio_streams.bench._stats import BenchStats

    stats = BenchStats()
    stats.violation("hole", "run x: ids 3..3 missing")
    text = render_summary(build_result(BenchOptions(url="http://x"), stats, 1.0, 1, None))
    assert "hole=1" in text
    assert text.endswith("RESULT: FAILED (stream violations above)")


async def test_https_to_a_plain_http_server_says_what_failed() -> None:
    """It said ``GET /healthz: _ClosedBeforeAnswer('BrokenResourceError()')``: an internal name."""
    with trio.fail_after(60):
        async with serve_run_api() as url:
            result = await _bench(url.replace("http://", "https://"), "--runs=1", "--tokens=1")
    assert result.returncode == 2
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert "_ClosedBeforeAnswer" not in lines[0]
    assert "BrokenResourceError" not in lines[0]
    assert "TLS failed" in lines[0]
    assert "does the server speak HTTPS at this URL?" in lines[0]
