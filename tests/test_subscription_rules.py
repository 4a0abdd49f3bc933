"""Subscription rules without I/O: globs, the membership index, configuration parsing and its digest."""

from __future__ import annotations

import pytest

from trio_streams.durable import DurableStreamError
from trio_streams.durable import _sub_index as sub_index
from trio_streams.durable._access import StreamId
from trio_streams.durable._sub_config import parse_config
from trio_streams.durable._sub_index import Glob, MembershipIndex


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("events/*", "events/a", True),
        ("events/*", "events/a/b", False),
        ("events/*", "events", False),
        ("events/**", "events", True),
        ("events/**", "events/a/b/c", True),
        ("**", "x", True),
        ("**/end", "a/b/end", True),
        ("**/end", "end", True),
        ("a/**/z", "a/z", True),
        ("a/**/z", "a/b/c/z", True),
        ("a/**/z", "a/b/c/y", False),
        ("*/x", "q/x", True),
        ("*/x", "x", False),
        ("a*", "abc", False),  # wildcards are whole segments
        ("a*", "a*", True),
    ],
)
def test_globs(pattern: str, path: str, matches: bool) -> None:
    assert Glob.compile(pattern).matches(path) is matches


def test_the_index_finds_literal_and_wildcard_first_patterns_per_owner() -> None:
    index = MembershipIndex()
    for key, pattern in [
        ("lit", "events/*"),
        ("deep", "events/**"),
        ("any", "*/a"),
        ("all", "**"),
        ("no", "other/*"),
    ]:
        index.add_pattern(None, (None, key), Glob.compile(pattern))
    index.add_pattern("alice", ("alice", "mine"), Glob.compile("**"))
    assert sorted(k[1] for k in index.by_pattern(StreamId(None, "events/a"))) == ["all", "any", "deep", "lit"]
    assert sorted(k[1] for k in index.by_pattern(StreamId(None, "zzz/a"))) == ["all", "any"]
    assert [k[1] for k in index.by_pattern(StreamId("alice", "events/a"))] == ["mine"]
    index.remove_pattern(None, (None, "lit"), Glob.compile("events/*"))
    index.remove_pattern(None, (None, "all"), Glob.compile("**"))
    assert sorted(k[1] for k in index.by_pattern(StreamId(None, "events/a"))) == ["any", "deep"]
    index.add_explicit(StreamId(None, "x/y"), (None, "e"))
    assert index.by_explicit(StreamId(None, "x/y")) == ((None, "e"),)
    assert index.by_explicit(StreamId("bob", "x/y")) == ()


def test_the_index_keeps_answers_until_patterns_change_and_within_its_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    index = MembershipIndex()
    stream = StreamId(None, "jobs/1")
    assert index.by_pattern(stream) == ()
    index.add_pattern(None, (None, "j"), Glob.compile("jobs/*"))
    assert index.by_pattern(stream) == ((None, "j"),), "a pattern added after a lookup is seen"
    assert index.by_pattern(stream) == ((None, "j"),)
    index.remove_pattern(None, (None, "j"), Glob.compile("jobs/*"))
    assert index.by_pattern(stream) == (), "and one removed is gone"
    monkeypatch.setattr(sub_index, "MAX_CACHED", 3)
    index.add_pattern(None, (None, "j"), Glob.compile("jobs/*"))
    for n in range(10):
        assert index.by_pattern(StreamId(None, f"jobs/{n}")) == ((None, "j"),)
        assert index.cached() <= 3


def test_members_answers_pattern_and_explicit_once_and_sees_member_changes() -> None:
    """What an append asks: (by pattern, explicit only), cached, and forgotten when a member changes."""
    index = MembershipIndex()
    index.add_pattern(None, (None, "j"), Glob.compile("jobs/*"))
    assert index.members(None, "jobs/1") == (((None, "j"),), ())
    index.add_explicit(StreamId(None, "jobs/1"), (None, "e"))
    index.add_explicit(StreamId(None, "jobs/1"), (None, "j"))
    assert index.members(None, "jobs/1") == (((None, "j"),), ((None, "e"),)), (
        "a member added after a lookup is seen; one the pattern matches is listed once, by pattern"
    )
    assert index.members("alice", "jobs/1") == ((), ()), "another owner's namespace"
    index.remove_explicit(StreamId(None, "jobs/1"), (None, "e"))
    assert index.members(None, "jobs/1") == (((None, "j"),), ()), "and one removed is gone"
    index.remove_pattern(None, (None, "j"), Glob.compile("jobs/*"))
    assert index.members(None, "jobs/1") == ((), ((None, "j"),)), "explicit stays when the pattern goes"


BASE = {"type": "pull-wake", "pattern": "events/*", "wake_stream": "wake/pool"}


@pytest.mark.parametrize(
    "change",
    [
        {"type": "push"},
        {"pattern": None, "streams": []},
        {"lease_ttl_ms": 999},
        {"lease_ttl_ms": 600_001},
        {"lease_ttl_ms": True},
        {"wake_stream": None},
        {"webhook": {"url": "https://x"}},
        {"streams": ["a//b"]},
        {"streams": "a"},
        {"pattern": "__ds/x"},
        {"surprise": 1},
    ],
)
def test_bad_configurations_are_400(change: dict[str, object]) -> None:
    document = {key: value for key, value in {**BASE, **change}.items() if value is not None}
    with pytest.raises(DurableStreamError) as refused:
        parse_config(document)
    assert (refused.value.status, refused.value.code) == (400, "INVALID_REQUEST")


def test_defaults_normalization_and_digest() -> None:
    config = parse_config({**BASE, "streams": ["b", "a", "b"]})
    assert (config.lease_ttl_ms, config.streams) == (30_000, ("a", "b"))
    assert parse_config({**BASE, "streams": ["a", "b"]}).digest == config.digest
    for other in (
        {"lease_ttl_ms": 1000},
        {"description": "d"},
        {"pattern": "events/**"},
        {"wake_stream": "w"},
    ):
        assert parse_config({**BASE, "streams": ["a", "b"], **other}).digest != config.digest
    for edge in (1_000, 600_000):
        assert parse_config({**BASE, "lease_ttl_ms": edge}).lease_ttl_ms == edge
