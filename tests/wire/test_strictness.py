"""Decoding is strict DER: each malformed input gets our ParseError naming the problem."""

from __future__ import annotations

import pytest

from core.errors import ParseError
from core.wire import (
    UnikernelConfig,
    decode_extension,
    decode_message,
    encode_message,
)
from core.wire.der import INTEGER, TIME, tlv
from core.wire.grammar import INT_SET, UNIKERNEL_CONFIG

# Unikernel info for ':tick1', sequence 7 (case 008), built from parts so that
# each mutation below keeps every other length right.
VERSION = tlv(0x02, b"\x05")
SEQUENCE = tlv(0x04, (7).to_bytes(8, "big"))
NAME = tlv(0x0C, b":tick1")
INFO_CMD = tlv(0xA0, tlv(0xA3, tlv(0xB3, b"\x05\x00")))


def wire(
    version: bytes = VERSION,
    sequence: bytes = SEQUENCE,
    name: bytes = NAME,
    payload: bytes = INFO_CMD,
    outer: int = 0x30,
) -> bytes:
    return tlv(outer, tlv(0x30, version + sequence + name) + payload)


INFO = wire()


def test_baseline_is_the_captured_frame() -> None:
    assert INFO.hex() == "301f3015020105040800000000000000070c063a7469636b31a006a304b3020500"
    assert encode_message(decode_message(INFO)) == INFO


@pytest.mark.parametrize(
    ("data", "match"),
    [
        pytest.param(INFO + b"\x00", "1 trailing octets", id="trailing-bytes"),
        pytest.param(INFO[:-1], "exceeds", id="truncated"),
        pytest.param(b"", "truncated", id="empty"),
        pytest.param(b"\x30\x80" + INFO[2:] + b"\x00\x00", "indefinite", id="indefinite-length"),
        pytest.param(b"\x30\x81\x1f" + INFO[2:], "non-minimal length", id="long-form-for-31"),
        pytest.param(b"\x30\x82\x00\x1f" + INFO[2:], "leading zero", id="length-leading-zero"),
        pytest.param(wire(version=tlv(0x02, b"\x04")), "unknown version number 0x4", id="v4"),
        pytest.param(wire(version=tlv(0x02, b"\x06")), "unknown version number 0x6", id="v6"),
        pytest.param(
            wire(sequence=tlv(0x04, b"\x00" * 7)),
            "int64 must be 8 octets, not 7",
            id="sequence-7-octets",
        ),
        pytest.param(
            wire(sequence=tlv(0x04, b"\x00" * 9)),
            "int64 must be 8 octets, not 9",
            id="sequence-9-octets",
        ),
        pytest.param(wire(outer=0x31), "unexpected tag 0x31", id="wrong-outer-tag"),
        pytest.param(wire(name=tlv(0x0C, b":t!ck")), "invalid label", id="invalid-name"),
        pytest.param(wire(name=tlv(0x0C, b"")), "name: empty string", id="empty-name"),
        pytest.param(
            wire(payload=tlv(0xA0, tlv(0xA3, tlv(0xB3, b"\x05\x01\x00")))),
            "NULL with content",
            id="null-with-content",
        ),
        pytest.param(
            wire(payload=tlv(0xA0, tlv(0xA3, tlv(0xA0, b"\x05\x00")))), "removed", id="removed-tag"
        ),
        pytest.param(
            wire(payload=tlv(0xA2, b"\x05\x00")), "unexpected tag 0x05", id="failure-not-utf8"
        ),
        pytest.param(
            wire(payload=tlv(0xA6, b"\x05\x00")), r"unknown alternative \[6\]", id="bad-payload"
        ),
        pytest.param(
            wire(payload=tlv(0xA0, tlv(0xA2, b"\x05\x00"))), "log was dropped", id="log-command"
        ),
        pytest.param(
            wire(payload=tlv(0xA0, tlv(0xA3, tlv(0xB3, b"\x05\x00") * 2))),
            "more than one element",
            id="explicit-two-children",
        ),
        pytest.param(wire(payload=INFO_CMD + INFO_CMD), "trailing elements", id="extra-field"),
        pytest.param(wire(name=b""), "name: missing", id="missing-field"),
        pytest.param(b"\x3f\x01\x00", "multi-octet identifier", id="high-tag"),
    ],
)
def test_malformed_messages(data: bytes, match: str) -> None:
    with pytest.raises(ParseError, match=match):
        decode_message(data)


def test_error_names_the_field() -> None:
    data = wire(sequence=tlv(0x04, b"\x00" * 3))
    with pytest.raises(ParseError) as info:
        decode_message(data)
    assert str(info.value) == "wire: header: sequence: int64 must be 8 octets, not 3"


def test_error_names_the_nested_field() -> None:
    fields = UNIKERNEL_CONFIG.encode(UnikernelConfig(image=b"x", memory=16))[2:]
    assert b"\x02\x01\x10" in fields  # memory 16
    too_big = fields.replace(b"\x02\x01\x10", b"\x02\x08\x40" + b"\x00" * 7)
    ext = tlv(0x30, tlv(0x02, b"\x05") + tlv(0xA3, tlv(0xB4, tlv(0x30, too_big))))
    with pytest.raises(ParseError) as info:
        decode_extension(ext)
    assert str(info.value) == (
        "albatross extension: command: unikernel: create: unikernel config: memory: "
        "integer out of range"
    )


@pytest.mark.parametrize(
    ("hexed", "match"),
    [
        ("020100", None),
        ("0200", "empty integer"),
        ("02020001", "non-minimal integer"),
        ("0202ff80", "non-minimal integer"),
        ("0208" + "40" + "00" * 7, "out of range"),
        ("0209" + "00" * 9, "non-minimal"),
        ("0209" + "01" + "00" * 8, "out of range"),
        ("0208" + "3f" + "ff" * 7, None),
        ("0208" + "c0" + "00" * 7, None),
        ("0208" + "bf" + "ff" * 7, "out of range"),
    ],
)
def test_integer_range(hexed: str, match: str | None) -> None:
    if match is None:
        assert INTEGER.encode(INTEGER.decode(bytes.fromhex(hexed))) == bytes.fromhex(hexed)
    else:
        with pytest.raises(ParseError, match=match):
            INTEGER.decode(bytes.fromhex(hexed))


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        (b"20261127174211.153Z", True),
        (b"20260101000000Z", True),
        (b"20260101000000.000Z", True),
        (b"2026010100Z", False),
        (b"20260101000000", False),
        (b"20260101000000.5Z", False),
        (b"20260101000000+0100", False),
        (b"20261301000000Z", False),
        (b"2026010100000aZ", False),
    ],
)
def test_generalized_time(text: bytes, ok: bool) -> None:
    der = bytes((0x18, len(text))) + text
    if ok:
        assert TIME.encode(TIME.decode(der)) == der
    else:
        with pytest.raises(ParseError):
            TIME.decode(der)


def test_boolean_must_be_der() -> None:
    # set block, compressed: 01 01 ff is TRUE; 01 01 01 is BER-only.
    good = bytes.fromhex("300a020105a505a7030101ff")
    decode_extension(good)
    with pytest.raises(ParseError, match="boolean octet 0x01 is not DER"):
        decode_extension(bytes.fromhex("300a020105a505a703010101"))


def test_set_of_order_and_duplicates() -> None:
    # Restart with exit codes {0, 7} in DER order, then swapped, then duplicated.
    assert INT_SET.decode(bytes.fromhex("3106020100020107")) == frozenset({0, 7})
    with pytest.raises(ParseError, match="not in DER order"):
        INT_SET.decode(bytes.fromhex("3106020107020100"))
    with pytest.raises(ParseError, match="not in DER order or duplicated"):
        INT_SET.decode(bytes.fromhex("3106020107020107"))


def test_policy_lists_must_be_sorted() -> None:
    # alice's policy add with cpuids [1, 0] instead of [0, 1]
    ok = bytes.fromhex(
        "3025020105a420a11e301c300602010002010102010202014002016430090c0773657276696365"
    )
    decode_extension(ok)
    bad = bytes.fromhex(ok.hex().replace("3006020100020101", "3006020101020100"))
    with pytest.raises(ParseError, match="cpuids: not in ascending order"):
        decode_extension(bad)
    # cpuids [0, 0]: a duplicate is refused like the wrong order (a set would hide it)
    twice = bytes.fromhex(ok.hex().replace("3006020100020101", "3006020100020100"))
    with pytest.raises(ParseError, match="cpuids: not in ascending order or duplicated"):
        decode_extension(twice)
    # the same for the bridges: ["service", "service"]
    service = "0c0773657276696365"
    doubled = bytes.fromhex(
        ok.hex()
        .replace("30090c0773657276696365", "3012" + service + service)
        .replace("3025020105a420a11e301c", "302e020105a429a1273025")
    )
    with pytest.raises(ParseError, match="bridges: not in ascending order or duplicated"):
        decode_extension(doubled)


def test_empty_optional_set_is_refused() -> None:
    # A config with an explicit empty blocks set `a0 02 31 00` where albatross omits it.
    fields = bytes.fromhex("a002050001010004000101ffa00205003103020100020120a0023100a303020101")
    ext = tlv(0x30, tlv(0x02, b"\x05") + tlv(0xA3, tlv(0xB4, tlv(0x30, fields))))
    with pytest.raises(ParseError, match="blocks: present but empty"):
        decode_extension(ext)
