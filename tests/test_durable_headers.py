"""The Durable Streams request headers' parsing: what each refusal says."""

from __future__ import annotations

import pytest

from trio_streams.durable import _headers as parse
from trio_streams.durable._errors import DurableStreamError


@pytest.mark.parametrize("value", ["315360001", "9223372036854775807", "99999999999999999999999999"])
def test_a_ttl_too_long_says_so(value: str) -> None:
    """A long TTL was refused as not "a non-negative integer without sign or leading
    zeros" once it had 17 digits: the message told the client the wrong rule."""
    with pytest.raises(DurableStreamError, match=r"^Stream-TTL may be at most 315360000 seconds$") as caught:
        parse.ttl(value)
    assert (caught.value.status, caught.value.code) == (400, "invalid_stream_ttl")


@pytest.mark.parametrize("value", ["-1", "1.5", "03600", "+5", "1e3", ""])
def test_a_ttl_that_is_no_plain_integer_says_so(value: str) -> None:
    with pytest.raises(DurableStreamError, match="non-negative integer without sign or leading zeros"):
        parse.ttl(value)


def test_a_sub_offset_with_too_many_digits_is_a_400_not_an_error() -> None:
    """Python refuses int() of a string over 4300 digits: the length is checked first."""
    with pytest.raises(DurableStreamError, match="at most 16 digits"):
        parse.non_negative("1" * 5000, "Stream-Fork-Sub-Offset")
    assert parse.ttl("315360000") == 315360000
