"""``Offset``'s order must be ``(seq, position)``'s: streams, cursors and subscriptions compare offsets."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_streams.durable._offsets import START, Offset

parts = st.integers(min_value=0, max_value=10**16 - 1)
offsets = st.builds(Offset, parts, parts)
near = st.builds(Offset, st.integers(0, 2), st.integers(0, 2))  # (equal parts are common here)


@given(st.one_of(st.tuples(offsets, offsets), st.tuples(near, near)))
def test_the_order_is_that_of_seq_then_position(pair: tuple[Offset, Offset]) -> None:
    a, b = pair
    ta, tb = (a.seq, a.position), (b.seq, b.position)
    assert (a < b, a <= b, a > b, a >= b, a == b) == (ta < tb, ta <= tb, ta > tb, ta >= tb, ta == tb)
    assert max(a, b) == (a if ta >= tb else b)
    assert sorted([a, b, START]) == sorted([a, b, START], key=lambda o: (o.seq, o.position))


def test_offsets_do_not_compare_with_other_types() -> None:
    with pytest.raises(TypeError):
        assert Offset(1, 2) < (1, 3)  # type: ignore[operator]
    with pytest.raises(TypeError):
        assert Offset(1, 2) >= 1  # type: ignore[operator]
