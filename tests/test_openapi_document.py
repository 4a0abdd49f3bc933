"""/openapi.json describes every route the app serves, and its version is the package's."""

from __future__ import annotations

import re

import pytest

import trio_streams
from trio_streams.web import create_app

from .web_support import serving

_CONVERTER = re.compile(r"<(?:[a-z]+:)?([a-z_]+)>")


def _served(app):
    """(path, method) of every route of the app, in OpenAPI's path syntax."""
    served = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint in ("static", "index"):
            continue  # create_app's own: a static folder, and the index document
        path = _CONVERTER.sub(r"{\1}", rule.rule)
        methods = set(rule.methods or ())
        if getattr(rule, "provide_automatic_options", False):
            methods.discard("OPTIONS")  # the framework's, on every route
        methods.discard("HEAD")  # werkzeug adds it to every GET (the document has the real ones)
        served |= {(path, method.lower()) for method in methods}
    return served


def _documented(spec):
    methods = {"get", "head", "put", "post", "delete", "options", "patch"}
    return {(path, method) for path, item in spec["paths"].items() for method in item if method in methods}


@pytest.mark.parametrize("durable", [True, False])
async def test_every_route_is_documented(autojump_clock, durable):
    async with serving(durable_streams=durable) as api:
        spec = await (await api.client.get("/openapi.json")).get_json()
    app = create_app(durable_streams=durable)
    served = _served(app)
    documented = _documented(spec)
    assert served <= documented, f"served but not described: {sorted(served - documented)}"
    # Documented and not a route: only the runs' read-only refusals and reads, which the
    # Durable Streams route serves for names under runs/ (and HEADs, see _served).
    extra = {path for path, method in documented - served if method != "head"}
    assert extra <= {"/v1/stream/runs/{run_id}"}
    assert any(path.startswith("/v1/stream/") for path, _ in documented) is durable


async def test_the_version_is_the_packages(autojump_clock):
    async with serving() as api:
        spec = await (await api.client.get("/openapi.json")).get_json()
    assert spec["info"]["version"] == trio_streams.__version__
    stream = spec["paths"]["/v1/stream/{stream_name}"]
    assert set(stream) >= {"put", "post", "get", "head", "delete", "options"}
    # Byte bodies: the three common request types, and any media type back.
    assert set(stream["put"]["requestBody"]["content"]) == {
        "application/octet-stream",
        "text/plain",
        "application/json",
    }
    assert "*/*" in stream["get"]["responses"]["200"]["content"]
    assert {p["name"] for p in stream["get"]["parameters"]} >= {"offset", "live", "cursor", "If-None-Match"}
    assert {p["name"] for p in stream["post"]["parameters"]} >= {
        "Stream-Seq",
        "Producer-Id",
        "Producer-Epoch",
        "Producer-Seq",
        "Stream-Closed",
    }


def _documented_answer(spec, path, method, response):
    """Assert ``response`` is one the document lists for (path, method): status and media type."""
    operation = spec["paths"][path][method]
    status = str(response.status_code)
    assert status in operation["responses"], f"{method.upper()} {path}: {status} is not documented"
    content = operation["responses"][status].get("content")
    media = response.headers.get("Content-Type", "").split(";")[0]
    if content and response.status_code != 204 and method != "head":
        assert media in content or "*/*" in content, f"{method.upper()} {path} {status}: {media}"
    return response


async def test_a_durable_streams_session_is_answered_as_documented(autojump_clock):
    """Every step of a session (the fuzzer rarely chains them) gets a documented status."""
    async with serving(long_poll_timeout=1) as api:
        spec = await (await api.client.get("/openapi.json")).get_json()
        stream = "/v1/stream/{stream_name}"
        client = api.client
        url = "/v1/stream/doc-check"
        text = {"Content-Type": "text/plain"}

        async def answer(method, target=url, path=stream, **kwargs):
            response = await getattr(client, method)(target, **kwargs)
            return _documented_answer(spec, path, method, response).status_code

        assert await answer("put", headers=text, data="hello") == 201
        assert await answer("put", headers=text) == 200
        assert await answer("post", headers=text, data=" world") == 204
        assert await answer("post", headers={**text, "Stream-Seq": "b"}, data="!") == 204
        assert await answer("post", headers={**text, "Stream-Seq": "a"}, data="?") == 409
        producer = {**text, "Producer-Id": "p", "Producer-Epoch": "0", "Producer-Seq": "0"}
        assert await answer("post", headers=producer, data=".") == 200
        assert await answer("post", headers={"Content-Type": "application/json"}, data="1") == 409
        assert await answer("get") == 200
        assert await answer("get", target=url + "?offset=now") == 200
        assert await answer("get", target=url + "?offset=bad") == 400
        assert await answer("get", target=url + "?offset=now&live=long-poll") == 204
        assert await answer("head") == 200
        assert await answer("options") == 204
        assert await answer("get", target="/v1/stream/__ds/x") == 501
        assert await answer("delete") == 204
        assert await answer("get") in (404, 410)
        assert await answer("head") in (404, 410)
        assert await answer("post", headers=text, data="x") in (404, 410)
        run = await api.start(input={"tokens": 2, "rate": None})
        await api.events(run["run_id"])
        runs = "/v1/stream/runs/{run_id}"
        assert await answer("get", target=f"/v1/stream/runs/{run['run_id']}", path=runs) == 200
        assert await answer("head", target=f"/v1/stream/runs/{run['run_id']}", path=runs) == 200
        assert await answer("put", target=f"/v1/stream/runs/{run['run_id']}", path=runs) == 405
        assert await answer("get", target="/v1/stream/runs/nope", path=runs) == 404
