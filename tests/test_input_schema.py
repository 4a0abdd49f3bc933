"""A producer's input schema, declared once: validated per request, checked at
registration, and the very schema /openapi.json shows (with each producer's
own defaults)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, get_args

import jsonschema
import pytest
import trio
from quart_trio import QuartTrio
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from trio_streams.protocol._input_schema import MAX_UNIQUE_ITEMS, InputSchema, InvalidInput
from trio_streams.runs._run import OnConflict, OnDisconnect
from trio_streams.web import DemoInput, TrioStreams

from .web_support import events_of, parse_sse, raw

if TYPE_CHECKING:
    from trio_streams import RunContext

# Every test takes autojump_clock as an argument: pytest-trio picks the clock
# from the test's own arguments.

CHAT_INPUT: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$defs": {"role": {"enum": ["user", "assistant"]}},
    "type": "object",
    "required": ["messages"],
    "additionalProperties": False,
    "properties": {
        "max_tokens": {"type": "integer", "maximum": 4096},
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "messages": {
            "type": "array",
            "minItems": 1,
            "maxItems": 50,
            "items": {
                "type": "object",
                "required": ["role", "content"],
                "properties": {"role": {"$ref": "#/$defs/role"}, "content": {"type": "string"}},
            },
        },
        "tags": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 8}},
    },
}
HELLO = [{"role": "user", "content": "hi"}]


def chat_app(**register: Any) -> tuple[QuartTrio, list[Any]]:
    """An app with one producer, ``chat``, that records the inputs it ran with."""
    app = QuartTrio(__name__)
    streams = TrioStreams(app, demo=False)
    seen: list[Any] = []

    @streams.producer("chat", input_schema=CHAT_INPUT, **register)
    async def chat(ctx: RunContext) -> Any:
        seen.append(ctx.input)
        return "ok"

    return app, seen


async def _post(client: Any, body: dict[str, Any]) -> tuple[int, Any]:
    response = await client.post("/v1/runs", json=body)
    return response.status_code, await response.get_json()


@pytest.mark.parametrize(
    ("given", "field", "message"),
    [
        ({"messages": HELLO, "max_tokens": 5000}, "input.max_tokens", "input.max_tokens must be ≤ 4096"),
        (
            {"messages": HELLO, "temperature": 3},
            "input.temperature",
            "input.temperature must be between 0 and 2",
        ),
        (
            {"messages": HELLO, "max_tokens": "many"},
            "input.max_tokens",
            "input.max_tokens must be an integer",
        ),
        ({}, "input.messages", "input.messages is required"),
        ({"messages": []}, "input.messages", "input.messages must have at least 1 item"),
        (
            {"messages": [*HELLO, {"role": "robot", "content": "x"}]},
            "input.messages[1].role",
            'input.messages[1].role must be one of: "user", "assistant"',
        ),
        (
            {"messages": [{"role": "user"}]},
            "input.messages[0].content",
            "input.messages[0].content is required",
        ),
        (
            {"messages": HELLO, "tags": {"a b": "x" * 9}},
            'input.tags["a b"]',
            'input.tags["a b"] must be at most 8 characters long',
        ),
        ({"messages": HELLO, "colour": "red"}, "input.colour", "input.colour is not allowed"),
        (None, "input", "input must be an object"),
    ],
)
async def test_a_refused_input_is_a_400_naming_the_field(autojump_clock, given, field, message):
    app, seen = chat_app()
    async with app.test_app() as test_app:
        status, doc = await _post(test_app.test_client(), {"producer": "chat", "input": given})
    assert (status, doc) == (400, {"error": {"code": "invalid_input", "message": message, "field": field}})
    assert seen == []  # the producer never ran


async def test_parse_input_converts_after_the_schema(autojump_clock):
    parsed: list[Any] = []

    def parse(raw_input: Any) -> tuple[int, str]:
        parsed.append(raw_input)
        if raw_input.get("max_tokens") == 13:  # a rule the schema does not say
            raise ValueError("13 is unlucky")
        return (raw_input.get("max_tokens", 256), raw_input["messages"][0]["content"])

    app, seen = chat_app(parse_input=parse)
    async with app.test_app() as test_app:
        client = test_app.test_client()
        # Refused by the schema: parse_input is not called.
        status, doc = await _post(
            client, {"producer": "chat", "input": {"messages": HELLO, "max_tokens": 9999}}
        )
        assert (status, doc["error"]["field"], parsed) == (400, "input.max_tokens", [])
        # Accepted by the schema, refused by parse_input: its message, no field.
        status, doc = await _post(
            client, {"producer": "chat", "input": {"messages": HELLO, "max_tokens": 13}}
        )
        assert (status, doc) == (
            400,
            {"error": {"code": "invalid_input", "message": "input for 'chat': 13 is unlucky"}},
        )
        # Accepted by both: the converted value is ctx.input.
        status, doc = await _post(client, {"producer": "chat", "input": {"messages": HELLO}})
        assert status == 201
        await raw(await client.get(doc["events_url"]))
    assert seen == [(256, "hi")]
    assert parsed == [{"messages": HELLO, "max_tokens": 13}, {"messages": HELLO}]


async def test_without_a_schema_any_input_goes_through(autojump_clock):
    app = QuartTrio(__name__)
    streams = TrioStreams(app, demo=False)
    seen: list[Any] = []

    @streams.producer("any")
    async def any_input(ctx: RunContext) -> None:
        seen.append(ctx.input)

    assert streams.producers["any"].input_validator is None
    async with app.test_app() as test_app:
        client = test_app.test_client()
        for given in (None, [1, "two"], {"x": {"y": None}}):
            status, doc = await _post(client, {"producer": "any", "input": given})
            assert status == 201, doc
            await raw(await client.get(doc["events_url"]))
    assert seen == [None, [1, "two"], {"x": {"y": None}}]


@pytest.mark.parametrize(
    ("schema", "problem"),
    [
        ({"type": "bogus"}, "is not a valid JSON Schema at #/type"),
        ({"properties": {"a": {"minimum": "one"}}}, "at #/properties/a/minimum"),
        ({"$ref": "#/$defs/missing"}, "$ref '#/$defs/missing' at # points to nothing"),
        ({"$ref": "https://example.com/schema.json"}, "must point inside the schema"),
        ({"$schema": "http://json-schema.org/draft-07/schema#"}, "$schema must be"),
        ({"type": "array", "uniqueItems": True}, f"needs a maxItems of at most {MAX_UNIQUE_ITEMS}"),
        (
            {"type": "array", "uniqueItems": True, "maxItems": MAX_UNIQUE_ITEMS + 1},
            f"needs a maxItems of at most {MAX_UNIQUE_ITEMS}",
        ),
        ({"properties": {"a": {"$id": "https://example.com/a"}}}, "$id at #/properties/a"),
        ({"$id": "https://example.com/chat", "$defs": {"n": {}}, "$ref": "#/$defs/n"}, "$id at # is not"),
        ({"$schema": 7}, "$schema must be"),
        ({"enum": [{1, 2}]}, "input_schema must be JSON"),
        # A property named like a data keyword is a schema all the same.
        ({"properties": {"default": {"$ref": "#/$defs/gone"}}}, "at #/properties/default points to nothing"),
    ],
)
def test_a_broken_schema_is_refused_at_registration(schema, problem):
    streams = TrioStreams(demo=False)

    async def producer(ctx: RunContext) -> None:
        pass

    with pytest.raises(ValueError, match=r"^producer 'p': ") as caught:
        streams.register("p", producer, input_schema=schema)
    assert problem in str(caught.value)
    with pytest.raises(ValueError, match=r"^producer 'p': ") as decorated:  # the decorator form too
        streams.producer("p", input_schema=schema)(producer)
    assert str(decorated.value) == str(caught.value)
    assert "p" not in streams.producers


def test_bounded_keywords_within_their_bound_register():
    InputSchema({"type": "array", "uniqueItems": True, "maxItems": MAX_UNIQUE_ITEMS})
    # A "$ref" inside data (const, enum, default, examples) is data, not a reference.
    InputSchema({"const": {"$ref": "#/nowhere"}, "examples": [{"$id": "x"}]})


@pytest.mark.parametrize(
    ("schema", "given", "field", "problem"),
    [
        # A `false` subschema is reported at the value it refuses (jsonschema alone says nothing of where).
        ({"properties": {"a b": False}}, {"a b": 1}, 'input["a b"]', "is not allowed"),
        (
            {"type": "array", "prefixItems": [{"type": "integer"}], "items": False},
            [1, 2],
            "input[1]",
            "is not allowed",
        ),
        (
            {"$defs": {"no": False}, "properties": {"q": {"$ref": "#/$defs/no"}}},
            {"q": 1},
            "input.q",
            "is not allowed",
        ),
        ({"not": {"type": "string"}}, "x", "input", "is not allowed here"),
        ({"type": "number", "exclusiveMinimum": 0, "maximum": 10}, 0, "input", "must be > 0 and ≤ 10"),
        ({"type": "string", "pattern": "^[a-z]+$"}, "A", "input", "must match the pattern '^[a-z]+$'"),
        ({"const": "x"}, "y", "input", 'must be "x"'),
        (
            {"anyOf": [{"type": "integer"}, {"type": "null"}]},
            "s",
            "input",
            "must match one of the allowed forms",
        ),
    ],
)
def test_each_refusal_names_its_value(schema, given, field, problem):
    with pytest.raises(InvalidInput) as caught:
        InputSchema(schema).validate(given)
    assert (caught.value.field, caught.value.problem) == (field, problem)


def test_validation_stops_at_the_first_error():
    """The bound on a refused input's cost: one error is taken, however many there are."""
    schema = InputSchema({"type": "array", "items": {"type": "integer"}})
    taken = []
    validator = schema._validator

    class Counting:
        def iter_errors(self, value: Any) -> Any:
            for error in validator.iter_errors(value):
                taken.append(error)
                yield error

    schema._validator = Counting()
    with pytest.raises(InvalidInput) as caught:
        schema.validate(["a", "b", *range(10), "c"])
    assert (caught.value.field, caught.value.problem, len(taken)) == ("input[0]", "must be an integer", 1)


def test_the_demo_validates_with_its_schema():
    with pytest.raises(ValueError, match=r"^input\.size must be between 1 and 65536$"):
        DemoInput.parse({"size": 65537})
    with pytest.raises(ValueError, match="tokens \\* size is"):
        DemoInput.parse({"tokens": 10, "size": 10}, limits=_limits(max_bytes=99))
    assert DemoInput.parse({"tokens": 5.0, "rate": 2}) == DemoInput(tokens=5, rate=2.0)
    assert DemoInput.parse(None) == DemoInput()


def _limits(max_bytes: int) -> Any:
    from trio_streams.web._demo import DemoLimits

    return DemoLimits(max_bytes=max_bytes, max_size=1000, max_text=1000)


async def test_openapi_shows_the_same_schema_and_each_producers_defaults(autojump_clock):
    app = QuartTrio(__name__)
    streams = TrioStreams(app, demo=True)

    async def chat(ctx: RunContext) -> None:
        pass

    streams.register("chat", chat, input_schema=CHAT_INPUT, on_conflict="interrupt", on_disconnect="cancel")
    named_like_keywords = {
        "$defs": {"n": {"type": "integer"}},
        "properties": {"default": {"$ref": "#/$defs/n"}, "const": {"const": {"$ref": "#/data"}}},
    }
    streams.register("odd", chat, input_schema=named_like_keywords)
    async with app.test_app() as test_app:
        spec = await (await test_app.test_client().get("/openapi.json")).get_json()
    schemas = spec["components"]["schemas"]
    # The registered schema, as given (its $ref now points where it sits in the document).
    shown = schemas["Input.chat"]
    assert shown["properties"]["messages"]["items"]["properties"]["role"] == {
        "$ref": "#/components/schemas/Input.chat/$defs/role"
    }
    assert {k: v for k, v in shown.items() if k != "properties"} == {
        k: v for k, v in CHAT_INPUT.items() if k not in ("properties", "$schema")
    }
    # A property named `default` is a schema (its reference rebased); `const`'s value is data.
    assert schemas["Input.odd"]["properties"] == {
        "default": {"$ref": "#/components/schemas/Input.odd/$defs/n"},
        "const": {"const": {"$ref": "#/data"}},
    }
    # One alternative per producer, told apart by `producer`, each with its own defaults.
    assert schemas["StartRun"]["discriminator"] == {
        "propertyName": "producer",
        "mapping": {
            "chat": "#/components/schemas/StartRun.chat",
            "demo": "#/components/schemas/StartRun.demo",
            "odd": "#/components/schemas/StartRun.odd",
        },
    }
    chat_start, demo_start = schemas["StartRun.chat"], schemas["StartRun.demo"]
    assert chat_start["properties"]["on_conflict"] == {
        "enum": list(get_args(OnConflict)),
        "default": "interrupt",
    }
    assert chat_start["properties"]["on_disconnect"] == {
        "enum": list(get_args(OnDisconnect)),
        "default": "cancel",
    }
    assert demo_start["properties"]["on_conflict"]["default"] == "reject"
    assert demo_start["properties"]["on_disconnect"]["default"] == "continue"
    # `input` is required where the schema refuses null (no input), as the server does.
    assert (chat_start["required"], demo_start["required"]) == (["producer", "input"], ["producer"])
    # The document's StartRun accepts and refuses what the server does (its $refs resolve).
    registry: Registry[Any] = Registry().with_resource(
        "urn:doc", Resource.from_contents(spec, default_specification=DRAFT202012)
    )
    start = jsonschema.Draft202012Validator(
        {"$ref": "urn:doc#/components/schemas/StartRun"}, registry=registry
    )
    assert start.is_valid({"producer": "chat", "input": {"messages": HELLO}})
    assert not start.is_valid({"producer": "chat", "input": {"messages": [{"role": "robot", "content": ""}]}})
    assert not start.is_valid({"producer": "chat"})
    assert start.is_valid({"producer": "demo"})
    assert start.is_valid({"producer": "odd", "input": {"default": 1}})
    assert not start.is_valid({"producer": "odd", "input": {"default": "one"}})


async def test_a_demo_input_error_names_the_field_over_http(autojump_clock):
    app = QuartTrio(__name__)
    TrioStreams(app, demo=True, demo_max_tokens=100)
    async with app.test_app() as test_app:
        client = test_app.test_client()
        status, doc = await _post(client, {"producer": "demo", "input": {"tokens": 101}})
        assert (status, doc["error"]) == (
            400,
            {
                "code": "invalid_input",
                "message": "input.tokens must be between 0 and 100",
                "field": "input.tokens",
            },
        )
        status, doc = await _post(client, {"producer": "demo", "input": {"tokens": 2, "rate": None}})
        assert status == 201
        events = events_of(parse_sse(await raw(await client.get(doc["events_url"]))))
        assert [e[1] for e in events] == ["token", "token", "done"]


async def test_a_large_input_is_validated_off_the_event_loop(monkeypatch):
    """Over OFF_LOOP_BODY, the schema check runs in a worker thread; refusals and starts are the same.

    On the real clock, with a deadline as a hang guard: a worker thread is
    real work the mock clock would jump over (as over real I/O).
    """
    from trio_streams.protocol import _runs_http
    from trio_streams.protocol._runs_parse import OFF_LOOP_BODY, check_input

    threads: list[bool] = []
    check = check_input

    def recording_check(registered: Any, raw_input: Any) -> None:
        threads.append(threading.current_thread() is threading.main_thread())
        check(registered, raw_input)

    monkeypatch.setattr(_runs_http, "check_input", recording_check)
    app, seen = chat_app()
    long = "x" * (OFF_LOOP_BODY + 1)
    answers = []
    with trio.fail_after(20):
        async with app.test_app() as test_app:
            client = test_app.test_client()
            answers.append(
                await _post(client, {"producer": "chat", "input": {"messages": HELLO, "max_tokens": long}})
            )
            started = await _post(
                client, {"producer": "chat", "input": {"messages": [{"role": "user", "content": long}]}}
            )
            answers.append(started)
            if started[0] == 201:
                await raw(await client.get(started[1]["events_url"]))
            # A small body: validated inline (the recorder is not called).
            answers.append(
                await _post(client, {"producer": "chat", "input": {"messages": HELLO, "max_tokens": 5000}})
            )
    assert [(status, (doc.get("error") or {}).get("field")) for status, doc in answers] == [
        (400, "input.max_tokens"),
        (201, None),
        (400, "input.max_tokens"),
    ]
    assert threads == [False, False]  # both large bodies, both in a worker thread
    assert seen == [{"messages": [{"role": "user", "content": long}]}]


@pytest.mark.parametrize("metadata", [False, 0, "", []])
async def test_a_falsy_metadata_that_is_not_an_object_is_a_400_as_documented(autojump_clock, metadata):
    """The document says an object or null; schemathesis found `false` accepted as `{}`."""
    app, seen = chat_app()
    async with app.test_app() as test_app:
        status, doc = await _post(
            test_app.test_client(), {"producer": "chat", "input": {"messages": HELLO}, "metadata": metadata}
        )
    assert (status, doc["error"]["code"]) == (400, "invalid_body")
    assert seen == []
