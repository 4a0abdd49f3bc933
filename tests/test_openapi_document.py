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
