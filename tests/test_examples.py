"""The examples the README shows actually run and print what it says."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quickstart_prints_every_event_then_the_result() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py")],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert result.stdout.splitlines() == [
        "1 token Hello",
        "2 token  from",
        "3 token  a",
        "4 token  detached",
        "5 token  run",
        "6 done {'result': 'Hello from a detached run'}",
        "done 'Hello from a detached run'",
    ]


async def test_the_chat_example_validates_its_input_from_its_schema() -> None:
    """examples/chat_app.py declares its input once: refusals name the field, and
    a valid input reaches the producer with its default rate filled in."""
    from examples.chat_app import create_app, parse_prompt

    async with create_app(demo=False).test_app() as app:
        client = app.test_client()
        for body, field in (
            ({"prompt": "   "}, "input.prompt"),
            ({"prompt": "hi", "rate": 0}, "input.rate"),
            ({"prompt": "hi", "rate": 5000}, "input.rate"),
            ({}, "input.prompt"),
        ):
            response = await client.post("/v1/runs", json={"producer": "chat", "input": body})
            assert response.status_code == 400, body
            error = (await response.get_json())["error"]
            assert (error["code"], error["field"]) == ("invalid_input", field), error
    assert parse_prompt({"prompt": "hi"}) == {"prompt": "hi", "rate": 20.0}


def test_the_pull_wake_worker_handles_every_order_once() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "pull_wake_worker.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert sorted(result.stdout.splitlines()) == [
        "orders/a {'order': 1}",
        "orders/a {'order': 3}",
        "orders/b {'order': 2}",
    ]
