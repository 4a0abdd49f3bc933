"""A producer's input, checked against the JSON Schema it was registered with.

One schema, declared once (``register(..., input_schema=...)``), does three
jobs: it is checked when the producer is registered (a broken schema is a
``ValueError`` there, never a 500 at request time), it validates every
request's ``input`` (a 400 whose message and ``field`` name the offending
value: ``input.size must be between 1 and 65536``), and it is the input's
schema in ``/openapi.json``.

The dialect is JSON Schema draft 2020-12, OpenAPI 3.1's own, validated by
``jsonschema`` (see CHANGELOG for why not ``fastjsonschema``: it knows drafts
4-7 only, and silently ignores or misreads 2020-12 keywords such as
``prefixItems`` and ``dependentRequired``).

Bounded cost: the input reaching the validator is already bounded by the
API's ``max_body`` (bytes) and :data:`~trio_streams.log._json.MAX_JSON_DEPTH`
(nesting). Validation stops at the first error and is linear in the input's
size for every keyword but two, which :class:`InputSchema` handles at
registration: ``uniqueItems`` compares items pairwise (quadratic), so it
needs a ``maxItems`` of at most :data:`MAX_UNIQUE_ITEMS` beside it; and
``pattern`` / ``patternProperties`` run Python's backtracking ``re``, so a
pattern is code you trust like ``parse_input`` (avoid nested quantifiers
such as ``(a+)+``; a ``maxLength`` bounds the text it runs on). ``format``
is an annotation only, as 2020-12 says: it is not checked. References
(``$ref``) must point inside the schema (``#/$defs/...``): nothing is ever
fetched.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from itertools import islice
from typing import Any, Final

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError, best_match
from referencing import Registry
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012

from .._errors import StreamError

#: The dialect of every input schema (OpenAPI 3.1's).
DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"
#: ``uniqueItems`` compares items pairwise: the longest array it may check.
MAX_UNIQUE_ITEMS: Final = 1000
_URI: Final = "urn:trio-streams:input"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TYPE_NAMES = {
    "object": "an object",
    "array": "an array",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "null": "null",
}


class InvalidInput(StreamError, ValueError):
    """An input the schema refuses.

    Attributes:
        field: where, from ``input``: ``input.words[2]``, ``input["a b"]``.
        problem: what is wrong with it, as a predicate: ``must be ≤ 4096``.
    """

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field} {problem}")
        self.field = field
        self.problem = problem


class InputSchema:
    """A producer's input schema: checked and compiled once, then used per request.

    Raises:
        ValueError: ``schema`` is not a valid draft 2020-12 schema, names
            another dialect, has a ``$ref`` that does not resolve inside it
            or an ``$id`` (which would move where its references point),
            or a ``uniqueItems`` without a ``maxItems`` of at most
            :data:`MAX_UNIQUE_ITEMS`. The message says where.
    """

    __slots__ = ("_validator", "accepts_null", "schema")

    def __init__(self, schema: Mapping[str, Any]) -> None:
        if not isinstance(schema, Mapping):
            raise ValueError(f"input_schema must be a JSON Schema object, not {type(schema).__name__}")
        #: The schema as given (a copy).
        try:  # a deep copy, and JSON values only (it goes into /openapi.json as it is)
            self.schema: dict[str, Any] = json.loads(json.dumps(schema, allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"input_schema must be JSON: {exc}") from None
        dialect = self.schema.get("$schema", DIALECT)
        if not isinstance(dialect, str) or dialect.rstrip("#") != DIALECT:
            raise ValueError(
                f"input_schema: $schema must be {DIALECT} (OpenAPI 3.1's dialect), not {dialect!r}"
            )
        try:
            Draft202012Validator.check_schema(self.schema)
        except SchemaError as exc:
            raise ValueError(
                f"input_schema is not a valid JSON Schema at {_pointer(exc.absolute_path)}: {exc.message}"
            ) from None
        resource = DRAFT202012.create_resource(self.schema)
        # An empty registry: no reference is ever retrieved from anywhere.
        registry: Registry[Any] = Registry().with_resource(_URI, resource)
        _check_subschemas(self.schema, registry)
        # Validated as ``_without_false``: the same rules, with errors that say where.
        validated = _without_false(self.schema)
        registry = Registry().with_resource(_URI, DRAFT202012.create_resource(validated))
        self._validator = Draft202012Validator(validated, registry=registry)
        #: Whether a request without ``input`` (``null``) is valid.
        self.accepts_null = self._validator.is_valid(None)

    def validate(self, value: Any) -> None:
        """Return if ``value`` is valid; else raise :class:`InvalidInput` for its first error.

        Synchronous and bounded (see the module's docstring): it stops at
        the first error.

        Raises:
            InvalidInput: naming the field and what is wrong with it.
        """
        first = list(islice(self._validator.iter_errors(value), 1))
        if first:
            error = best_match(first)  # descends into anyOf / oneOf to the likeliest branch
            raise InvalidInput(*_describe(error))


# Where a schema holds subschemas (draft 2020-12): keywords whose value is one
# subschema, a map of them, or a list of them. Anything else (``const``,
# ``enum``, ``default``, ``examples``, annotations) is data: a ``"$ref"`` in it
# is not a reference, and a property named ``default`` is still a schema.
_ONE_SCHEMA = frozenset(
    {
        "additionalProperties",
        "items",
        "contains",
        "propertyNames",
        "unevaluatedItems",
        "unevaluatedProperties",
        "not",
        "if",
        "then",
        "else",
        "contentSchema",
    }
)
_SCHEMA_MAPS = frozenset({"properties", "patternProperties", "$defs", "dependentSchemas"})
_SCHEMA_LISTS = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})


def map_subschemas(schema: Any, function: Callable[[Any, str], Any], where: str = "#") -> Any:
    """``schema`` with ``function(subschema, its JSON pointer)`` in place of each of its own subschemas.

    One level: ``function`` recurses if it wants to. A schema that is not an
    object (``true``/``false``) has none, and comes back as it is.
    """
    if not isinstance(schema, dict):
        return schema
    mapped: dict[str, Any] = {}
    for key, value in schema.items():
        at = f"{where}/{_escape(key)}"
        if key in _ONE_SCHEMA:
            mapped[key] = function(value, at)
        elif key in _SCHEMA_MAPS and isinstance(value, dict):
            mapped[key] = {name: function(sub, f"{at}/{_escape(name)}") for name, sub in value.items()}
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            mapped[key] = [function(sub, f"{at}/{i}") for i, sub in enumerate(value)]
        else:
            mapped[key] = value
    return mapped


def rebased(schema: Any, base: str, where: str = "#") -> Any:
    """``schema`` with its references (``#``, ``#/...``: the only kind registration allows)
    made relative to ``base``: where the schema sits in a larger document (OpenAPI's)."""
    if isinstance(schema, dict):
        schema = {
            key: base + value[1:]
            if key in ("$ref", "$dynamicRef") and isinstance(value, str) and value.startswith("#")
            else value
            for key, value in schema.items()
        }
    return map_subschemas(schema, lambda sub, at: rebased(sub, base, at), where)


def _check_subschemas(node: Any, registry: Registry[Any], where: str = "#") -> Any:
    """Refuse, at registration, what would fail or cost too much at request time."""
    if not isinstance(node, dict):
        return node
    if "$id" in node:  # it would move the base its references resolve against (and the document's)
        raise ValueError(f"input_schema: $id at {where} is not supported (references stay inside the schema)")
    for keyword in ("$ref", "$dynamicRef"):
        ref = node.get(keyword)
        if isinstance(ref, str):
            if not (ref == "#" or ref.startswith("#/")):
                raise ValueError(
                    f"input_schema: {keyword} {ref!r} at {where} must point inside the schema (#/...)"
                )
            try:
                registry.resolver(_URI).lookup(ref)
            except Unresolvable:
                raise ValueError(f"input_schema: {keyword} {ref!r} at {where} points to nothing") from None
    if node.get("uniqueItems") is True:
        most = node.get("maxItems")
        if not isinstance(most, int) or most > MAX_UNIQUE_ITEMS:
            raise ValueError(
                f"input_schema: uniqueItems at {where} needs a maxItems of at most {MAX_UNIQUE_ITEMS} "
                "beside it (it compares items pairwise)"
            )
    return map_subschemas(node, lambda sub, at: _check_subschemas(sub, registry, at), where)


def _without_false(schema: Any, where: str = "#") -> Any:
    """``schema`` with each ``false`` subschema written ``{"not": {}}`` (which means the same).

    jsonschema reports a ``false`` subschema's refusal without the path to
    the value (``{"properties": {"a": false}}`` refusing ``{"a": 1}`` says
    nothing of ``a``); ``{"not": {}}`` is reported with it.
    """
    if schema is False:
        return {"not": {}}
    return map_subschemas(schema, _without_false, where)


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _pointer(path: Any) -> str:
    return "#" + "".join(f"/{_escape(str(part))}" for part in path)


def field_name(path: Iterable[str | int]) -> str:
    """``input`` then the path: ``.name`` for identifiers, ``["a b"]`` for other keys, ``[2]``."""
    parts = ["input"]
    for part in path:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        elif _IDENTIFIER.match(part):
            parts.append(f".{part}")
        else:
            parts.append(f"[{json.dumps(part, ensure_ascii=False)}]")
    return "".join(parts)


def _describe(error: ValidationError) -> tuple[str, str]:
    """(field, problem) for ``error``, in words that never echo the value itself."""
    path = list(error.absolute_path)
    keyword = error.validator
    expected = error.validator_value
    schema = error.schema if isinstance(error.schema, dict) else {}
    instance = error.instance
    if keyword == "required" and isinstance(instance, dict):
        missing = next(name for name in expected if name not in instance)
        return field_name([*path, missing]), "is required"
    if keyword in ("additionalProperties", "unevaluatedProperties") and isinstance(instance, dict):
        known = set(schema.get("properties", {}))
        patterns = [re.compile(p) for p in schema.get("patternProperties", {})]
        extra = [k for k in instance if k not in known and not any(p.search(k) for p in patterns)]
        if extra:
            return field_name([*path, extra[0]]), "is not allowed"
    return field_name(path), _problem(keyword, expected, schema, error)


def _problem(keyword: Any, expected: Any, schema: dict[str, Any], error: ValidationError) -> str:
    if keyword == "type":
        names = [expected] if isinstance(expected, str) else list(expected)
        return "must be " + " or ".join(_TYPE_NAMES.get(n, n) for n in names)
    if keyword in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        return _range(schema)
    if keyword in ("minLength", "maxLength"):
        return f"must be {_bound(keyword, expected, 'character')} long"
    if keyword in ("minItems", "maxItems"):
        return f"must have {_bound(keyword, expected, 'item')}"
    if keyword in ("minProperties", "maxProperties"):
        return f"must have {_bound(keyword, expected, 'property')}"
    if keyword == "enum":
        return "must be one of: " + ", ".join(json.dumps(v) for v in expected)
    if keyword == "const":
        return f"must be {json.dumps(expected)}"
    if keyword == "pattern":
        return f"must match the pattern {expected!r}"
    if keyword == "multipleOf":
        return f"must be a multiple of {expected}"
    if keyword == "uniqueItems":
        return "must not repeat an item"
    if keyword in ("oneOf", "anyOf"):
        return (
            "must match exactly one of the allowed forms"
            if keyword == "oneOf"
            else "must match one of the allowed forms"
        )
    if keyword == "not":
        return "is not allowed" if expected == {} else "is not allowed here"
    if keyword is None or error.schema is False:  # a ``false`` subschema
        return "is not allowed"
    message = error.message
    return f"is invalid ({keyword}): {message[:160]}{'…' if len(message) > 160 else ''}"


def _bound(keyword: str, expected: Any, noun: str) -> str:
    plural = noun if expected == 1 else ("properties" if noun == "property" else f"{noun}s")
    return f"{'at least' if keyword.startswith('min') else 'at most'} {expected} {plural}"


def _range(schema: dict[str, Any]) -> str:
    """The bounds of a number, all of them, as one predicate."""
    low, high = schema.get("minimum"), schema.get("maximum")
    if (
        low is not None
        and high is not None
        and "exclusiveMinimum" not in schema
        and "exclusiveMaximum" not in schema
    ):
        return f"must be between {low} and {high}"
    bounds = []
    if "exclusiveMinimum" in schema:
        bounds.append(f"> {schema['exclusiveMinimum']}")
    elif low is not None:
        bounds.append(f"≥ {low}")
    if "exclusiveMaximum" in schema:
        bounds.append(f"< {schema['exclusiveMaximum']}")
    elif high is not None:
        bounds.append(f"≤ {high}")
    return "must be " + " and ".join(bounds)
