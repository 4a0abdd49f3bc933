"""/openapi.json describes the subscriptions' control API (``__ds/``) when it is served,
and ``__ds/`` as 501 when it is not; a session's every answer is as documented
(status, media type, and the body against its schema)."""

from __future__ import annotations

import jsonschema
import pytest
import trio

from .test_openapi_document import _documented_answer
from .web_support import serving

SUBS = "/v1/stream/__ds/subscriptions/{subscription_id}"
STREAM = "/v1/stream/{stream_name}"


def _check_body(spec, path, method, status, body):
    """``body`` is valid against the schema documented for (path, method, status)."""
    content = spec["paths"][path][method]["responses"][str(status)].get("content", {})
    [(_, media)] = content.items()
    schema = {**media["schema"], "components": spec["components"]}
    jsonschema.Draft202012Validator(schema).validate(body)


@pytest.mark.parametrize("subscriptions", [True, False])
async def test_the_control_api_is_described_only_when_served(autojump_clock, subscriptions):
    async with serving(durable_subscriptions=subscriptions) as api:
        spec = await (await api.client.get("/openapi.json")).get_json()
    control = {path for path in spec["paths"] if "/__ds/" in path}
    stream = spec["paths"][STREAM]
    if not subscriptions:
        assert control == set()
        assert all("501" in op["responses"] for op in stream.values() if "operationId" in op)
        assert "wake" not in spec["components"]["securitySchemes"]
        return
    assert control == {
        "/v1/stream/__ds/jwks.json",
        SUBS,
        SUBS + "/streams",
        SUBS + "/streams/{stream_path}",
        SUBS + "/claim",
        SUBS + "/ack",
        SUBS + "/release",
        SUBS + "/callback",
    }
    assert not any("501" in op.get("responses", {}) for op in stream.values() if isinstance(op, dict))
    assert set(spec["paths"][SUBS]) == {"put", "get", "delete", "options"}
    assert spec["paths"][SUBS + "/ack"]["post"]["security"] == [{"wake": []}]
    put = spec["paths"][SUBS]["put"]
    assert set(put["responses"]) >= {"201", "200", "400", "409"}
    request = spec["components"]["schemas"]["SubscriptionRequest"]
    assert request["properties"]["lease_ttl_ms"] == {"type": "integer", "minimum": 1000, "maximum": 600000}


async def test_a_subscription_session_is_answered_as_documented(autojump_clock):
    async with serving(durable_subscriptions=True) as api:
        client = api.client
        spec = await (await client.get("/openapi.json")).get_json()

        async def answer(method, target, path, **kwargs):
            response = await getattr(client, method)(target, **kwargs)
            _documented_answer(spec, path, method, response)
            if response.status_code not in (204,) and method != "head":
                _check_body(spec, path, method, response.status_code, await response.get_json())
            return response

        base = "/v1/stream/__ds/subscriptions/s1"
        sub = {"type": "pull-wake", "pattern": "jobs/*", "wake_stream": "wake/pool", "lease_ttl_ms": 5000}
        await client.put("/v1/stream/wake/pool", headers={"Content-Type": "application/json"})
        assert (await answer("put", base, SUBS, json=sub)).status_code == 201
        assert (await answer("put", base, SUBS, json=sub)).status_code == 200
        assert (await answer("put", base, SUBS, json={**sub, "lease_ttl_ms": 6000})).status_code == 409
        assert (await answer("put", base, SUBS, json={**sub, "lease_ttl_ms": 1})).status_code == 400
        assert (await answer("get", base, SUBS)).status_code == 200
        idle = await answer("post", base + "/claim", SUBS + "/claim", json={"worker": "w1"})
        assert idle.status_code == 409
        await client.put("/v1/stream/jobs/a", data="x", headers={"Content-Type": "text/plain"})
        await trio.testing.wait_all_tasks_blocked()
        claimed = await answer("post", base + "/claim", SUBS + "/claim", json={"worker": "w1"})
        assert claimed.status_code == 200
        busy = await answer("post", base + "/claim", SUBS + "/claim", json={"worker": "w2"})
        assert (busy.status_code, (await busy.get_json())["error"]["current_holder"]) == (409, "w1")
        wake = await claimed.get_json()
        bearer = {"Authorization": f"Bearer {wake['token']}"}
        fence = {"wake_id": wake["wake_id"], "generation": wake["generation"]}
        beat = await answer("post", base + "/ack", SUBS + "/ack", json=fence, headers=bearer)
        assert beat.status_code == 200
        stale = {**fence, "generation": wake["generation"] - 1}
        fenced = await answer("post", base + "/ack", SUBS + "/ack", json=stale, headers=bearer)
        assert fenced.status_code == 409
        released = await answer("post", base + "/release", SUBS + "/release", json=fence, headers=bearer)
        assert released.status_code == 204
        unknown = {"Authorization": "Bearer nope"}
        stranger = await answer("post", base + "/ack", SUBS + "/ack", json=fence, headers=unknown)
        assert stranger.status_code == 409
        gone = "/v1/stream/__ds/subscriptions/nope/ack"
        assert (await answer("post", gone, SUBS + "/ack", json=fence, headers=bearer)).status_code == 404
        members = SUBS + "/streams"
        added = await answer("post", base + "/streams", members, json={"streams": ["x/y"]})
        assert added.status_code == 204
        member = members + "/{stream_path}"
        assert (await answer("delete", base + "/streams/x/y", member)).status_code == 204
        jwks = await answer("get", "/v1/stream/__ds/jwks.json", "/v1/stream/__ds/jwks.json")
        assert jwks.status_code == 200
        assert (await answer("delete", base, SUBS)).status_code == 204
        assert (await answer("get", base, SUBS)).status_code == 404
        # A stream name under __ds/ that is no control route: a documented 404, not a 501.
        assert (await answer("get", "/v1/stream/__ds/x", STREAM)).status_code == 404
