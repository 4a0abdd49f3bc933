"""``serve --log-format json``: one JSON object per line, with the run's fields.

A real ``serve`` process, the real clock, under a deadline.
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys

import httpx
import trio

from trio_streams.cli._logging import JsonFormatter

SECRET = "s3cret-never-logged"
SERVE = [sys.executable, "-m", "trio_streams", "serve", "--bind=127.0.0.1:0", "--shutdown-grace=0.2s"]


async def _collect(stream: trio.abc.ReceiveStream, into: list[bytes]) -> None:
    while chunk := await stream.receive_some():
        into.append(bytes(chunk))


FORGED = "2026-12-02 16:00:00,000 ERROR trio_streams: FORGED"


async def run_serve(*flags: str, key: str | None = None, reason: str | None = None) -> tuple[int, str]:
    """Start serve, start and cancel a run as alice (with ``key`` and the cancel's
    ``reason``, if given), SIGTERM; (exit status, stderr)."""
    stderr: list[bytes] = []
    with trio.fail_after(60):
        process = await trio.lowlevel.open_process(
            [*SERVE, f"--token=alice:{SECRET}", *flags], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        assert process.stdout is not None
        assert process.stderr is not None
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_collect, process.stderr, stderr)
                out = b""
                while b"serving on " not in out or not out.endswith(b"\n"):
                    chunk = await process.stdout.receive_some()
                    assert chunk, b"".join(stderr).decode()
                    out += chunk
                url = out.decode().split("serving on ", 1)[1].split()[0]
                headers = {"Authorization": f"Bearer {SECRET}"}
                async with httpx.AsyncClient(base_url=url, headers=headers) as client:
                    start = {"producer": "demo", "input": {"tokens": 10000, "rate": 5}, "key": key}
                    response = await client.post("/v1/runs", json=start)
                    assert response.status_code == 201
                    run_id = response.json()["run_id"]
                    cancel = None if reason is None else {"reason": reason}
                    assert (await client.post(f"/v1/runs/{run_id}/cancel", json=cancel)).status_code in (
                        200,
                        202,
                    )
                    # The run's stream ends with its terminal event once it is finalized.
                    async with client.stream("GET", f"/v1/runs/{run_id}/events") as events:
                        lines = [line async for line in events.aiter_lines()]
                    assert "event: cancelled" in lines
                process.send_signal(signal.SIGTERM)
                status = await process.wait()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    return status, b"".join(stderr).decode()


async def test_json_lines_carry_the_runs_fields_and_no_secret():
    status, log = await run_serve("--log-format=json", "--access-log")
    assert status == 0, log
    assert SECRET not in log
    lines = [json.loads(line) for line in log.splitlines()]  # every line is one JSON object
    assert lines
    for line in lines:
        assert {"time", "level", "logger", "message"} <= line.keys(), line
        assert line["time"].endswith("+00:00")
    by_event = {line["event"]: line for line in lines if "event" in line}
    started = by_event["run_started"]
    assert started["logger"] == "trio_streams"
    assert started["level"] == "INFO"
    assert started["owner"] == "alice"
    run_id = started["run_id"]
    assert run_id in started["message"]
    assert by_event["cancel_requested"]["run_id"] == run_id
    ended = by_event["run_cancelled"]
    assert (ended["run_id"], ended["owner"]) == (run_id, "alice")
    assert any(line["logger"] == "hypercorn.access" for line in lines)


async def test_text_stays_the_default():
    status, log = await run_serve()
    assert status == 0, log
    assert SECRET not in log
    assert not any(line.startswith("{") for line in log.splitlines())
    assert any(" INFO trio_streams: run " in line for line in log.splitlines())


async def test_a_client_cannot_forge_text_log_lines():
    """A run key or cancel reason with a line break wrote its own line: "... ERROR ..." from
    anyone with a token. The text format is one line per record, as --help says."""
    status, log = await run_serve(key=f"k\n{FORGED} by the key", reason=f"r\r\n{FORGED} by the reason")
    assert status == 0, log
    quoting = [line for line in log.splitlines() if "FORGED" in line]
    assert len(quoting) >= 3, log  # started (the key), cancel requested and cancelled (the reason)
    assert all(" INFO trio_streams: run " in line for line in quoting), quoting
    assert f"key=k\\n{FORGED} by the key" in log


def test_a_record_without_context_has_only_the_base_fields():
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "hello %s", ("world",), None)
    record.password = SECRET  # an extra that is not a context field is never copied
    line = json.loads(JsonFormatter().format(record))
    assert line.keys() == {"time", "level", "logger", "message"}
    assert line["message"] == "hello world"
