"""Empty path segments and trailing slashes on API paths answer a JSON 404.

Black-box pass: ``GET /v1/runs//events`` (an empty run id) answered
Werkzeug's HTML ``308`` to ``/v1/runs/events``, another resource. Checked
through ``serve``'s dispatcher (``FastPaths``, which leaves ``//`` to
Quart) and through Quart alone, over real Hypercorn.

Real I/O: no mock clock; every test runs under a trio deadline.
"""

from __future__ import annotations

import httpx
import pytest
import trio
from quart_trio import QuartTrio

from trio_streams.web import TrioStreams, create_app

from .test_asgi_fast_paths import DEADLINE, serving

# (Leading slashes, "//healthz", are Werkzeug's own: it strips them before
# matching, so that is /healthz itself, no redirect.)
PATHS = [
    ("GET", "/v1/runs//events"),
    ("GET", "/v1/runs//"),
    ("GET", "/v1/runs//x"),
    ("POST", "/v1/runs//cancel"),
    ("GET", "/v1//runs"),
    ("POST", "/v1//runs"),
    ("GET", "/v1/runs/"),
    ("POST", "/v1/runs/"),
    ("GET", "/v1/runs/x/"),
    ("GET", "/v1/runs/x/events/"),
    ("POST", "/v1/runs/x/cancel/"),
    ("GET", "/v1/stream//x"),
    ("PUT", "/v1/stream//x"),
    ("GET", "/v1/stream/"),
    ("GET", "/healthz/"),
    ("GET", "/metrics/"),
]


@pytest.mark.parametrize("fast", [True, False], ids=["fast-paths", "quart"])
async def test_api_paths_with_empty_segments_are_json_404s(fast: bool) -> None:
    with trio.fail_after(DEADLINE):
        async with (
            serving(create_app(), fast=fast) as (url, _),
            httpx.AsyncClient(follow_redirects=False) as client,
        ):
            for method, path in PATHS:
                response = await client.request(method, url + path)
                assert response.status_code == 404, (method, path, response.status_code)
                assert response.headers["content-type"] == "application/json", (method, path)
                assert response.json()["error"]["code"] == "not_found", (method, path)


async def test_mounted_in_an_app_no_redirect_and_the_apps_own_routes_keep_merging() -> None:
    # In an app of one's own, an unknown path is that app's 404 (its error
    # handlers); ours must not redirect. The app's own routes keep Werkzeug's
    # slash merging: the fix is per rule, not the app's url_map.
    app = QuartTrio("mine")
    TrioStreams(app)

    @app.get("/mine/page")
    async def page() -> str:
        return "mine"

    with trio.fail_after(DEADLINE):
        async with (
            serving(app, fast=False) as (url, _),
            httpx.AsyncClient(follow_redirects=False) as client,
        ):
            for method, path in PATHS:
                response = await client.request(method, url + path)
                # 405 where the merged path's rule has other methods (Werkzeug's
                # matcher keeps them): still no redirect to another resource.
                assert response.status_code in (404, 405), (method, path, response.status_code)
            assert (await client.get(url + "//mine//page")).status_code == 308
