"""The pin extension's DER (core.pins): round trips, strictness, bounds, only ParseError out."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import ParseError, UsageError
from core.pins import (
    MAX_DIGESTS,
    Pins,
    decode_pins,
    encode_pins,
    job_refusal,
    make_pins,
    merge_digests,
    parse_digest,
)

A = hashlib.sha256(b"a").digest()
B = hashlib.sha256(b"b").digest()

digests = st.frozensets(st.binary(min_size=32, max_size=32), min_size=1, max_size=8)
jobs = st.frozensets(
    st.from_regex(r"[a-z0-9_-][a-z0-9._-]{0,20}", fullmatch=True), min_size=1, max_size=5
)


@given(st.one_of(st.none(), digests), st.one_of(st.none(), jobs))
def test_round_trip(ds: frozenset[bytes] | None, js: frozenset[str] | None) -> None:
    if ds is None and js is None:
        with pytest.raises(UsageError):
            Pins(ds, js)
        return
    pins = Pins(ds, js)
    encoded = encode_pins(pins)
    assert decode_pins(encoded) == pins
    # fed as a whole only: the value sits inside one certificate extension, never streamed


@given(st.binary(max_size=200))
def test_garbage_gives_only_parse_errors(data: bytes) -> None:
    try:
        pins = decode_pins(data)
    except ParseError as exc:
        assert exc.message
    else:  # whatever is accepted is canonical DER
        assert encode_pins(pins) == data


def test_exact_encoding() -> None:
    # SEQUENCE { INTEGER 1, [1] { SET { UTF8String "hello" } } }
    assert encode_pins(Pins(None, frozenset({"hello"}))).hex() == "300e020101a10931070c0568656c6c6f"


@pytest.mark.parametrize(
    ("hex_value", "message"),
    [
        ("3003020102", "pins: version 2 is not supported (only 1)"),
        ("3003020101", "pins: a pin needs at least one image digest or builder-web job"),
        ("3007020101a1023100", "pins: between 1 and 64 pinned jobs, not 0"),
        (
            "300a020101a0053103040161",
            "pins: digests: digests[0]: a SHA-256 digest has 32 octets, not 1",
        ),
        ("300c020101a10731050c032e6162", "bad builder-web job name '.ab'"),
        # "b" before "a": a SET OF out of DER order
        ("300d020101a10831060c01620c0161", "elements not in DER order or duplicated"),
        ("3010020101a10931070c0568656c6c6f0500", "trailing"),
        ("30810e020101a10931070c0568656c6c6f", "length"),  # non-minimal length
    ],
)
def test_strict(hex_value: str, message: str) -> None:
    with pytest.raises(ParseError) as info:
        decode_pins(bytes.fromhex(hex_value))
    assert message in info.value.message


def test_bounded() -> None:
    many = frozenset(hashlib.sha256(bytes([i, j])).digest() for i in range(2) for j in range(150))
    with pytest.raises(UsageError, match="between 1 and 256 pinned digests, not 300"):
        Pins(many)
    assert len(many) > MAX_DIGESTS
    with pytest.raises(ParseError, match="more than"):
        decode_pins(b"\x30\x82\x40\x00" + bytes(0x4000))


def test_command_line_values() -> None:
    assert parse_digest(A.hex().upper()) == A
    with pytest.raises(UsageError, match="bad SHA-256 digest 'abc': give 64 hex digits"):
        parse_digest("abc")
    with pytest.raises(UsageError, match="bad builder-web job name 'a/b'"):
        make_pins((), ("a/b",))
    assert make_pins((), ()) is None
    assert make_pins((A.hex(),), ("hello",)) == Pins(frozenset({A}), frozenset({"hello"}))


def test_intersection() -> None:
    top, below = Pins(frozenset({A, B})), Pins(frozenset({B}), frozenset({"web"}))
    assert merge_digests([top, below]) == frozenset({B})
    assert merge_digests([Pins(None, frozenset({"web"}))]) is None
    hops = [("alice", Pins(None, frozenset({"web", "dns"}))), ("alice:bob", below)]
    assert job_refusal(hops, "web") is None
    assert job_refusal(hops, "dns") == (
        "the delegation alice:bob pins builder-web jobs web: job dns is not one of them"
    )
