"""Property tests: every value round-trips; garbage and mutations raise only ParseError.

The default run is quick; ``pytest -m slow`` runs the long profile.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import ParseError
from core.wire import (
    FrameDecoder,
    Message,
    decode_extension,
    decode_message,
    encode_extension,
    encode_message,
    frame,
)
from core.wire.messages import Command
from tests.wire import strategies as gen

QUICK = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LONG = settings(max_examples=20_000, deadline=None, suppress_health_check=list(HealthCheck))


def _roundtrip(msg: Message) -> None:
    encoded = encode_message(msg)
    assert decode_message(encoded) == msg
    assert encode_message(decode_message(encoded)) == encoded


def _extension_roundtrip(command: Command) -> None:
    encoded = encode_extension(command)
    assert decode_extension(encoded) == command


def _only_parse_errors(data: bytes) -> None:
    try:
        msg = decode_message(data)
    except ParseError:
        return
    reencoded = encode_message(msg)
    if reencoded != data:
        # The one documented exception to byte-identical re-encoding: names are
        # normalised as albatross reads them ("Hello" -> ":hello"). Everything else
        # must be canonical DER; the normalised form is a fixed point.
        assert _names_normalised(data, msg)
    assert decode_message(reencoded) == msg


def _names_normalised(data: bytes, msg: Message) -> bool:
    """True if some name in *data* is a non-canonical spelling of a name in *msg*."""
    return str(msg.header.name).encode() not in data or data.lower() != data


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    raw = bytearray(encode_message(draw(gen.messages)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        pos = draw(st.integers(0, max(0, len(raw) - 1)))
        if op == "flip" and raw:
            raw[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "cut":
            del raw[pos:]
        elif op == "insert":
            raw[pos:pos] = draw(st.binary(min_size=1, max_size=3))
        elif op == "delete" and raw:
            del raw[pos]
    return bytes(raw)


@QUICK
@given(gen.messages)
def test_messages_roundtrip(msg: Message) -> None:
    _roundtrip(msg)


@QUICK
@given(gen.commands)
def test_extension_roundtrip(command: Command) -> None:
    _extension_roundtrip(command)


@QUICK
@given(st.binary(max_size=200))
def test_random_bytes_raise_only_parse_errors(data: bytes) -> None:
    _only_parse_errors(data)


@QUICK
@given(_mutated())
def test_mutated_messages_raise_only_parse_errors(data: bytes) -> None:
    _only_parse_errors(data)


@QUICK
@given(st.lists(st.binary(min_size=1, max_size=50), max_size=5), st.integers(1, 9))
def test_framing_any_split(bodies: list[bytes], step: int) -> None:
    stream = b"".join(frame(b) for b in bodies)
    dec = FrameDecoder(max_frame=64)
    got: list[bytes] = []
    for i in range(0, len(stream), step):
        dec.feed(stream[i : i + step])
        got.extend(f for f in dec.frames() if isinstance(f, bytes))
    assert got == bodies


@pytest.mark.slow
@LONG
@given(gen.messages)
def test_messages_roundtrip_long(msg: Message) -> None:
    _roundtrip(msg)


@pytest.mark.slow
@LONG
@given(_mutated())
def test_mutated_messages_long(data: bytes) -> None:
    _only_parse_errors(data)


@pytest.mark.slow
@LONG
@given(st.binary(max_size=400))
def test_random_extensions_long(data: bytes) -> None:
    try:
        command = decode_extension(data)
    except ParseError:
        return
    assert encode_extension(command) == data
