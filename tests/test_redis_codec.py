"""The Redis encoding of events and metadata (pure functions, no Redis)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_streams import RunInfo, RunStatus
from trio_streams.log._events import Event
from trio_streams.log.redis._client import split_cluster_flag
from trio_streams.log.redis._codec import (
    decode_batch,
    encode_batch,
    entry_id,
    info_from_hash,
    info_to_hash,
    resume_start,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(), children, max_size=3),
    max_leaves=8,
)


@given(types=st.lists(st.text(min_size=1), min_size=1, max_size=5), data=st.lists(json_values, min_size=1))
def test_batches_round_trip(types, data):
    events = [
        Event.create(seq, types[seq % len(types)], value, 1_700_000_000.0 + seq / 7)
        for seq, value in enumerate(data, start=1)
    ]
    decoded = decode_batch(encode_batch(events))
    assert decoded == events
    assert [e.data_json for e in decoded] == [e.data_json for e in events]
    after = len(events) // 2
    assert decode_batch(encode_batch(events), after) == events[after:]


def test_entry_ids_order_by_seq_and_resume_finds_the_entry():
    # Entries [1..4], [5..9], [10..10]: ids compare as (last, first).
    ids = [entry_id(1, 4), entry_id(5, 9), entry_id(10, 10)]
    assert ids == ["4-1", "9-5", "10-10"]
    as_tuples = [tuple(map(int, i.split("-"))) for i in ids]
    assert as_tuples == sorted(as_tuples)
    # XRANGE from resume_start(after) returns the first entry with id >= it:
    # the one holding after + 1.
    for after, holder in [(0, 0), (3, 0), (4, 1), (8, 1), (9, 2)]:
        start = tuple(map(int, resume_start(after).split("-")))
        first = next(i for i, t in enumerate(as_tuples) if t >= start)
        assert first == holder


def test_meta_hash_round_trip():
    info = RunInfo(
        run_id="r1",
        key="k",
        owner=None,
        status=RunStatus.CANCELLED,
        created_at=1.5,
        started_at=2.0,
        ended_at=3.25,
        last_seq=42,
        metadata={"a": [1, 2]},
        result={"partial": "text"},
        partial=True,
        error=None,
        reason="user",
    )
    fields = info_to_hash(info)
    assert fields["status"] == "cancelled"
    assert fields["last_seq"] == "42"
    assert info_from_hash(fields) == info
    assert info_from_hash({}) is None


def test_the_url_can_say_it_names_a_cluster():
    assert split_cluster_flag("redis://h:1/0") == ("redis://h:1/0", None)
    assert split_cluster_flag("redis://:pw@h:1/0?cluster=yes") == ("redis://:pw@h:1/0", True)
    url, cluster = split_cluster_flag("rediss://h:1/0?ssl_ca_certs=/ca.pem&cluster=no")
    assert (url, cluster) == ("rediss://h:1/0?ssl_ca_certs=%2Fca.pem", False)
    with pytest.raises(ValueError, match="cluster="):
        split_cluster_flag("redis://h:1/0?cluster=maybe")
