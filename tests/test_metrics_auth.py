"""With auth on, ``/metrics`` answers only the operators' tokens (``metrics_users``).

Its figures are every user's (how many runs and streams the server holds, how
many bytes): shown to any user, they would tell one user about the others'
activity. Without a valid token: 401 (a scraper told why); a user who is not
a metrics reader: the same 404 as a path nobody serves. Without auth the page
is open, as the rest of the API is.

In process (the Quart test client) and through a real ``serve`` process.
"""

from __future__ import annotations

import subprocess
from typing import Any

import httpx
import pytest
import trio

from trio_streams.web import create_app

from .test_serve_cli import SERVE
from .test_serve_cli import serve_process as serve_process

TOKENS = {"alice-secret": "alice", "ops-secret": "ops"}


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def test_only_a_metrics_user_reads_metrics_in_process():
    app = create_app(auth=TOKENS, metrics_users=["ops"])
    with trio.fail_after(30):
        async with app.test_app() as test_app:
            client = test_app.test_client()
            operator = await client.get("/metrics", headers=bearer("ops-secret"))
            assert operator.status_code == 200
            assert "trio_streams_up 1.0" in (await operator.get_data(as_text=True))

            user = await client.get("/metrics", headers=bearer("alice-secret"))
            assert user.status_code == 404
            body = await user.get_json()
            assert body["error"]["code"] == "not_found"
            nobody = await client.get("/v1/no-such-path", headers=bearer("alice-secret"))
            assert (await nobody.get_json())["error"]["code"] == body["error"]["code"], "as if not there"

            anonymous = await client.get("/metrics")
            assert anonymous.status_code == 401
            wrong = await client.get("/metrics", headers=bearer("guess"))
            assert wrong.status_code == 401
            for refused in (user, anonymous, wrong):
                assert "trio_streams_" not in (await refused.get_data(as_text=True))


async def test_without_metrics_users_no_token_reads_metrics():
    app = create_app(auth=TOKENS)
    with trio.fail_after(30):
        async with app.test_app() as test_app:
            client = test_app.test_client()
            for secret in TOKENS:
                assert (await client.get("/metrics", headers=bearer(secret))).status_code == 404


async def test_without_auth_metrics_is_open():
    app = create_app()
    with trio.fail_after(30):
        async with app.test_app() as test_app:
            response = await test_app.test_client().get("/metrics")
            assert response.status_code == 200


def test_metrics_users_must_be_names_not_a_string():
    with pytest.raises(TypeError, match="not a string"):
        create_app(auth=TOKENS, metrics_users="ops")


async def test_serve_metrics_user(serve_process: Any):
    with trio.fail_after(60):
        server = await serve_process(
            "--token", "alice:alice-secret", "--token", "ops:ops-secret", "--metrics-user", "ops"
        )
        async with httpx.AsyncClient(base_url=server.url) as client:
            operator = await client.get("/metrics", headers=bearer("ops-secret"))
            assert operator.status_code == 200
            assert "trio_streams_up 1.0" in operator.text
            user = await client.get("/metrics", headers=bearer("alice-secret"))
            assert user.status_code == 404
            assert user.json()["error"]["code"] == "not_found"
            assert "trio_streams_" not in user.text
            assert (await client.get("/metrics")).status_code == 401
            # The rest of the API is unchanged for the operator's own token.
            assert (await client.get("/v1/runs", headers=bearer("ops-secret"))).status_code == 200


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--metrics-user", "ops"], "--metrics-user needs --token"),
        (["--token", "alice:s", "--metrics-user", "opps"], "--metrics-user opps: no --token"),
    ],
)
def test_bad_metrics_user_flags_are_one_line_errors(args: list[str], message: str):
    result = subprocess.run([*SERVE, *args], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
