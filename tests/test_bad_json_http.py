"""Hostile JSON over a real Hypercorn server: always a 400 JSON error, never a 500 (issue 12, item 9).

Real I/O: no mock clock; every test runs under a trio deadline instead.
"""

from __future__ import annotations

import httpx
import pytest
import trio

from trio_streams.log._json import MAX_JSON_DEPTH

from .server_support import running_server

DEADLINE = 30
JSON = {"Content-Type": "application/json"}
NESTED_ARRAY_200KB = b"[" * 100_000 + b"]" * 100_000  # about 200 KB: under the 1 MiB body limit
NESTED_OBJECT = b'{"a":' * 30_000 + b"1" + b"}" * 30_000


def deep(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


#: Bodies that are not strict JSON, each with what the error message must say.
HOSTILE = [
    pytest.param(NESTED_ARRAY_200KB, "nested more than", id="nested-array-200KB"),
    pytest.param(NESTED_OBJECT, "nested more than", id="nested-object"),
    pytest.param(b'{"metadata": {"x": ' + deep(5000) + b"}}", "nested more than", id="deep-metadata"),
    pytest.param(
        b'{"producer": "demo", "metadata": {"x": ' + deep(MAX_JSON_DEPTH - 1) + b"}}",
        "nested more than",
        id="just-over-the-limit",
    ),
    pytest.param(b'{"producer": "demo", "metadata": {"x": NaN}}', "NaN is not JSON", id="nan"),
    pytest.param(b'{"producer": "demo", "metadata": {"x": Infinity}}', "Infinity is not JSON", id="inf"),
    pytest.param(b'{"producer": "demo", "metadata": {"x": -Infinity}}', "-Infinity is not JSON", id="-inf"),
    pytest.param(b'{"producer": "demo", "metadata": {"x": 1e999}}', "out of range", id="1e999"),
    pytest.param(b'{"metadata": {"x": 1' + b"0" * 400 + b"}}", "out of range", id="10**400"),
    pytest.param(b'{"producer": "demo", "metadata": {"x": "\\ud800"}}', "surrogate", id="lone-surrogate"),
    pytest.param(b'{"producer": "demo", "key": "\\udfff"}', "surrogate", id="surrogate-key"),
    pytest.param(b'{"producer": "demo", "metadata": {"x": "\xff"}}', "not UTF-8", id="invalid-utf8"),
]


def assert_json_400(response: httpx.Response, says: str) -> None:
    assert response.status_code == 400, response.text[:300]
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == "invalid_json"
    assert says in error["message"]
    assert "Traceback" not in response.text


@pytest.mark.parametrize(("body", "says"), HOSTILE)
async def test_hostile_json_on_start_and_cancel_is_a_400(body: bytes, says: str) -> None:
    with trio.fail_after(DEADLINE):
        async with running_server() as server, httpx.AsyncClient(base_url=server.url) as client:
            started = await client.post("/v1/runs", json={"producer": "demo", "input": {"tokens": 1}})
            run_id = started.json()["run_id"]
            assert_json_400(await client.post("/v1/runs", content=body, headers=JSON), says)
            assert_json_400(await client.post(f"/v1/runs/{run_id}/cancel", content=body, headers=JSON), says)
            # Nothing was started, and nothing poisons the listing (a run whose
            # metadata cannot be encoded used to make every GET /v1/runs a 500).
            listing = await client.get("/v1/runs")
            assert listing.status_code == 200
            assert [run["run_id"] for run in listing.json()["runs"]] == [run_id]


@pytest.mark.parametrize("body", [b"[1, NaN]", b'{"x": Infinity}'])
async def test_nan_in_metadata_is_never_echoed_back(body: bytes) -> None:
    with trio.fail_after(DEADLINE):
        async with running_server() as server, httpx.AsyncClient(base_url=server.url) as client:
            response = await client.post(
                "/v1/runs", content=b'{"producer": "demo", "metadata": {"m": ' + body + b"}}", headers=JSON
            )
            assert response.status_code == 400
            assert "NaN" not in response.text.replace("NaN is not JSON", "")


@pytest.mark.parametrize(("body", "says"), [*HOSTILE, pytest.param(b"[1, NaN]", "NaN", id="array")])
async def test_hostile_json_on_durable_streams_appends_and_creates_is_a_400(body: bytes, says: str) -> None:
    with trio.fail_after(DEADLINE):
        async with running_server() as server, httpx.AsyncClient(base_url=server.url) as client:
            url = "/v1/stream/hostile"
            assert (await client.put(url, headers=JSON)).status_code == 201
            assert_json_400(await client.post(url, content=body, headers=JSON), says)
            assert_json_400(await client.put(f"{url}-created", content=body, headers=JSON), says)
            # The refused append left nothing behind; a valid one still works.
            assert (await client.post(url, content=b'{"ok": 1}', headers=JSON)).status_code == 204
            read = await client.get(url, params={"offset": "-1"})
            assert read.json() == [{"ok": 1}]
            assert (await client.head(f"{url}-created")).status_code == 404


async def test_json_at_the_depth_limit_is_accepted_and_echoed() -> None:
    with trio.fail_after(DEADLINE):
        async with running_server() as server, httpx.AsyncClient(base_url=server.url) as client:
            nested = deep(MAX_JSON_DEPTH - 2)  # the body and metadata objects are two levels
            response = await client.post(
                "/v1/runs", content=b'{"producer": "demo", "metadata": {"x": ' + nested + b"}}", headers=JSON
            )
            assert response.status_code == 201, response.text
            value = response.json()["metadata"]["x"]
            depth = 0
            while isinstance(value, list):
                value = value[0] if value else None
                depth += 1
            assert depth == MAX_JSON_DEPTH - 2
