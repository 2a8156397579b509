"""core.hostport: the one reader of HOST[:PORT] for the client and the endpoint's --metrics."""

from __future__ import annotations

import pytest

from core.errors import UsageError
from core.hostport import parse_host_port


@pytest.mark.parametrize(
    ("text", "expected"),
    [("127.0.0.1:9464", ("127.0.0.1", 9464)), ("[::1]:0", ("::1", 0)), ("h:0", ("h", 0))],
)
def test_a_required_port_may_be_zero_when_allowed(text: str, expected: tuple[str, int]) -> None:
    assert parse_host_port(text, None, allow_port_zero=True) == expected


@pytest.mark.parametrize(
    ("text", "default", "zero", "message"),
    [
        ("9464", None, True, "'9464' names no port"),
        ("[::1]", None, True, "'\\[::1\\]' names no port"),
        (":9464", None, True, "empty host"),
        ("h:0", 1025, False, "port 0 is not within 1..65535"),
        ("h:65536", None, True, "port 65536 is not within 0..65535"),
        ("[::1]x", None, True, "write an IPv6 address as"),
    ],
)
def test_what_is_not_an_address(text: str, default: int | None, zero: bool, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_host_port(text, default, allow_port_zero=zero)
