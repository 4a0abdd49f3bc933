"""``serve``'s Hypercorn settings against the real server: TLS with HTTP/2 by ALPN
(a self-signed certificate made with the ``openssl`` CLI), the keep-alive
timeout, the root path and trusted proxy headers.

The server runs in the test's trio run (:func:`trio_streams.serve`); real
sockets, the real clock, each test under a deadline.
"""

from __future__ import annotations

import logging
import shutil
import ssl
import subprocess
import sys
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import httpx
import pytest
import trio

from trio_streams import ServeConfigError, serve, serve_plan
from trio_streams.cli._proxy import parse_trusted

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

DEADLINE = 30


@asynccontextmanager
async def serving(*flags: str) -> AsyncIterator[str]:
    """The URL of ``serve`` with ``flags`` on a free port, until the block ends."""
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            urls = await nursery.start(serve, serve_plan(["--bind=127.0.0.1:0", *flags]))
            try:
                yield urls[0]
            finally:
                nursery.cancel_scope.cancel()


@pytest.fixture
def certificate(tmp_path):
    """A self-signed certificate for 127.0.0.1 and its key: (certfile, keyfile)."""
    if shutil.which("openssl") is None:
        pytest.fail("the openssl command is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return str(cert), str(key)


async def test_tls_serves_https_and_http2_by_alpn(certificate):
    cert, key = certificate
    async with serving(f"--certfile={cert}", f"--keyfile={key}") as url:
        assert url.startswith("https://127.0.0.1:")
        async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=cert), http2=True) as client:
            response = await client.get(url + "/healthz")
            assert response.status_code == 200
            assert response.http_version == "HTTP/2"
            started = await client.post(url + "/v1/runs", json={"producer": "demo", "input": {"tokens": 3}})
            assert started.status_code == 201
        async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=cert)) as client:
            response = await client.get(url + "/healthz")
            assert (response.status_code, response.http_version) == (200, "HTTP/1.1")
        # Plain HTTP on the TLS port is not served.
        async with httpx.AsyncClient() as client:
            with pytest.raises(httpx.HTTPError):
                await client.get(url.replace("https://", "http://") + "/healthz")


def test_tls_needs_both_files_and_readable_ones(certificate, tmp_path):
    cert, _key = certificate
    with pytest.raises(ServeConfigError, match="TLS needs both --certfile and --keyfile"):
        serve_plan([f"--certfile={cert}"])
    with pytest.raises(ServeConfigError, match=r"--keyfile .*: cannot read it"):
        serve_plan([f"--certfile={cert}", f"--keyfile={tmp_path / 'missing.pem'}"])


def test_a_key_that_is_not_a_key_is_one_clear_bad_argument(certificate, tmp_path):
    """Found with the flags (exit 2), not when the server binds (exit 1, as an unusable address)."""
    cert, key = certificate
    bogus = tmp_path / "bogus.pem"
    bogus.write_text("not a key\n")
    with pytest.raises(ServeConfigError, match="--certfile/--keyfile: cannot load them as a PEM certificate"):
        serve_plan([f"--certfile={cert}", f"--keyfile={bogus}"])
    with pytest.raises(ServeConfigError, match="cannot load them"):
        serve_plan([f"--certfile={key}", f"--keyfile={key}"])
    result = subprocess.run(
        [sys.executable, "-m", "trio_streams", "serve", f"--certfile={cert}", f"--keyfile={bogus}"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert (result.returncode, result.stderr.count("\n")) == (2, 1), result.stderr


def test_a_key_with_a_passphrase_is_refused_not_asked_for(certificate, tmp_path):
    """OpenSSL would prompt for the passphrase on the terminal: a service hangs there."""
    cert, key = certificate
    encrypted = tmp_path / "encrypted.pem"
    subprocess.run(
        ["openssl", "rsa", "-in", str(key), "-aes256", "-passout", "pass:secret", "-out", str(encrypted)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    with pytest.raises(ServeConfigError, match=r"^--keyfile: the key is encrypted \(it has a passphrase\)"):
        serve_plan([f"--certfile={cert}", f"--keyfile={encrypted}"])


async def _idle_until_closed(url: str) -> None:
    """One kept-alive request, then wait until the server closes the idle connection."""
    host, port = url.removeprefix("http://").split(":")
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        await stream.send_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        while b"\r\n\r\n" not in received:
            received += await stream.receive_some()
        assert received.startswith(b"HTTP/1.1 200")
        while await stream.receive_some():  # the body, then EOF when the server closes
            pass


async def test_keep_alive_closes_an_idle_connection_after_the_timeout():
    async with serving("--keep-alive=0.2s") as url:
        # Hypercorn's default (5s) would not close it within this deadline.
        with trio.fail_after(2):
            await _idle_until_closed(url)


async def test_root_path_is_the_prefix_a_proxy_mounts_the_server_under():
    flags = ("--root-path=/api/", "--subscriptions", "--webhook-allow-loopback")
    async with serving(*flags) as url, httpx.AsyncClient(base_url=url) as client:
        assert (await client.get("/api/healthz")).status_code == 200
        started = await client.post("/api/v1/runs", json={"producer": "demo", "input": {"tokens": 2}})
        assert started.status_code == 201
        # Every URL the server hands out is under the prefix (they named /v1/... and led nowhere):
        run_id = started.json()["run_id"]
        assert started.json()["events_url"] == f"/api/v1/runs/{run_id}/events"
        assert started.headers["location"] == f"/api/v1/runs/{run_id}"
        listed = (await client.get("/api/v1/runs")).json()["runs"]
        assert [run["events_url"] for run in listed] == [f"/api/v1/runs/{run_id}/events"]
        assert (await client.get(started.json()["events_url"])).status_code == 200
        created = await client.put("/api/v1/stream/notes", headers={"Content-Type": "text/plain"})
        assert created.headers["location"] == f"{url}/api/v1/stream/notes"
        hook = {"type": "webhook", "pattern": "o/*", "webhook": {"url": "http://127.0.0.1:9/hook"}}
        subscription = await client.put("/api/v1/stream/__ds/subscriptions/s1", json=hook)
        jwks_url = subscription.json()["webhook"]["signing"]["jwks_url"]
        assert jwks_url == f"{url}/api/v1/stream/__ds/jwks.json"


async def _create_stream(url: str, headers: dict[str, str]) -> str:
    async with httpx.AsyncClient(base_url=url) as client:
        response = await client.put("/v1/stream/proxied", headers={"Content-Type": "text/plain", **headers})
        assert response.status_code in (200, 201), response.text
        return response.headers["Location"]


FORWARDED = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7, 127.0.0.1"}


async def test_forwarded_headers_from_a_trusted_proxy(caplog):
    caplog.set_level(logging.INFO, logger="hypercorn.access")
    async with serving("--forwarded-allow-ips=127.0.0.1", "--access-log") as url:
        location = await _create_stream(url, FORWARDED)
    assert location == url.replace("http://", "https://") + "/v1/stream/proxied"
    access = [r.getMessage() for r in caplog.records if r.name == "hypercorn.access"]
    # The nearest hop (127.0.0.1) is the trusted proxy itself: the client is the one before it.
    assert any(line.startswith("203.0.113.7:") for line in access), access


async def test_forwarded_headers_from_anyone_else_are_ignored(caplog):
    caplog.set_level(logging.INFO, logger="hypercorn.access")
    for flags in ((), ("--forwarded-allow-ips=10.0.0.1",)):
        caplog.clear()
        async with serving(*flags, "--access-log") as url:
            location = await _create_stream(url, FORWARDED)
        assert location == url + "/v1/stream/proxied"
        access = [r.getMessage() for r in caplog.records if r.name == "hypercorn.access"]
        assert access
        assert all(line.startswith("127.0.0.1:") for line in access), access


def test_parse_trusted():
    assert parse_trusted("*") is None
    assert parse_trusted("127.0.0.1, ::1") == frozenset({"127.0.0.1", "::1"})
    with pytest.raises(ValueError, match=r"not an IP address: 'proxy\.local'"):
        parse_trusted("proxy.local")
    with pytest.raises(ServeConfigError, match="--forwarded-allow-ips: not an IP address"):
        serve_plan(["--forwarded-allow-ips=nope"])


def test_graceful_timeout_is_the_shutdown_grace():
    assert serve_plan(["--graceful-timeout=3s"]).options["shutdown_grace"] == 3.0
