"""Wire codec benchmark: our strict DER codec, and pyasn1 on the same messages.

Run: ``.venv/bin/python bench/bench_wire.py`` (add ``--quick`` for a fast pass).
Prints a Markdown table of microseconds per encode+decode (best of 5 runs).

pyasn1 is measured on the three messages for which a schema is short enough to
write here (the certificate extension, a console data frame, the 100-entry
info reply); the results are why ``core/wire/der.py`` is hand-written.
It also shows pyasn1's DER decoder accepting what albatross refuses.
"""

from __future__ import annotations

import sys
import timeit
from collections.abc import Callable
from datetime import UTC, datetime

from pyasn1.codec.der import decoder as pyasn1_decoder
from pyasn1.codec.der import encoder as pyasn1_encoder
from pyasn1.type import char, namedtype, tag, univ, useful

from core.wire import (
    ConsoleData,
    Header,
    Message,
    Name,
    Policy,
    PolicyAdd,
    UnikernelConfig,
    UnikernelCreate,
    UnikernelInfoList,
    UnikernelInfoRecord,
    decode_extension,
    decode_message,
    encode_extension,
    encode_message,
)
from core.wire.messages import Quit, Typ

# -- our messages ---------------------------------------------------------

IMAGE = bytes(range(256)) * 4096  # 1 MiB
CREATE = Message(
    Header(Name((), "web"), 1), UnikernelCreate(UnikernelConfig(image=IMAGE, compressed=True))
)
STARTED = datetime(2026, 11, 27, 17, 44, 9, 810000, tzinfo=UTC)
RECORD = UnikernelInfoRecord(
    Typ.SOLO5, Quit(), frozenset({0}), 32, b"\xaa" * 32, argv=("--foo=1", "bar"), started=STARTED
)
INFO = Message(
    Header(Name(("alice",)), 7),
    UnikernelInfoList(tuple((Name(("alice",), f"uk{i}"), RECORD) for i in range(100))),
)
CONSOLE = Message(Header(Name((), "tick1")), ConsoleData(STARTED, "**** Solo5 test_ticker ****"))
POLICY_EXT = PolicyAdd(Policy(2, frozenset({0}), 64, 100, frozenset({"service"})))


def ours_message(msg: Message) -> Callable[[], object]:
    def run() -> object:
        return decode_message(encode_message(msg))

    return run


def ours_extension() -> object:
    return decode_extension(encode_extension(POLICY_EXT))


# -- the same messages with pyasn1 ---------------------------------------


def _explicit(n: int) -> tag.Tag:
    return tag.Tag(tag.tagClassContext, tag.tagFormatConstructed, n)


class PyPolicy(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("cpuids", univ.SequenceOf(componentType=univ.Integer())),
        namedtype.NamedType("unikernels", univ.Integer()),
        namedtype.NamedType("memory", univ.Integer()),
        namedtype.OptionalNamedType("block", univ.Integer()),
        namedtype.NamedType("bridges", univ.SequenceOf(componentType=char.UTF8String())),
    )


class PyPolicyCmd(univ.Choice):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("add", PyPolicy().subtype(explicitTag=_explicit(1)))
    )


class PyCommand(univ.Choice):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("policy", PyPolicyCmd().subtype(explicitTag=_explicit(4)))
    )


class PyExtension(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("version", univ.Integer()),
        namedtype.NamedType("command", PyCommand()),
    )


class PyHeader(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("version", univ.Integer()),
        namedtype.NamedType("sequence", univ.OctetString()),
        namedtype.NamedType("name", char.UTF8String()),
    )


class PyConsole(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("timestamp", useful.GeneralizedTime()),
        namedtype.NamedType("line", char.UTF8String()),
    )


class PyData(univ.Choice):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("console", PyConsole().subtype(explicitTag=_explicit(3)))
    )


class PyTyp(univ.Choice):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("solo5", univ.Null().subtype(explicitTag=_explicit(0)))
    )


class PyFail(univ.Choice):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("quit", univ.Null().subtype(explicitTag=_explicit(0)))
    )


class PyInfo(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("typ", PyTyp()),
        namedtype.OptionalNamedType("startup", univ.Integer()),
        namedtype.NamedType("fail", PyFail()),
        namedtype.NamedType("cpuids", univ.SetOf(componentType=univ.Integer())),
        namedtype.NamedType("memory", univ.Integer()),
        namedtype.NamedType("digest", univ.OctetString()),
        namedtype.OptionalNamedType(
            "argv",
            univ.SequenceOf(componentType=char.UTF8String()).subtype(explicitTag=_explicit(2)),
        ),
        namedtype.OptionalNamedType(
            "started", useful.GeneralizedTime().subtype(explicitTag=_explicit(3))
        ),
        namedtype.OptionalNamedType("cpus", univ.Integer().subtype(explicitTag=_explicit(4))),
    )


class PyEntry(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("name", char.UTF8String()), namedtype.NamedType("info", PyInfo())
    )


class PySuccess(univ.Choice):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType(
            "info", univ.SequenceOf(componentType=PyEntry()).subtype(explicitTag=_explicit(13))
        )
    )


def _payload(n: int, inner: univ.Asn1Item) -> type[univ.Choice]:
    class PyPayload(univ.Choice):
        componentType = namedtype.NamedTypes(
            namedtype.NamedType("p", inner.subtype(explicitTag=_explicit(n)))
        )

    return PyPayload


def _wire(n: int, inner: univ.Asn1Item) -> univ.Sequence:
    payload = _payload(n, inner)

    class PyWire(univ.Sequence):
        componentType = namedtype.NamedTypes(
            namedtype.NamedType("header", PyHeader()), namedtype.NamedType("payload", payload())
        )

    return PyWire()


PY_CONSOLE_WIRE = _wire(3, PyData())
PY_INFO_WIRE = _wire(1, PySuccess())


NOT_IDENTICAL: list[str] = []


def pyasn1_roundtrip(data: bytes, spec: univ.Asn1Item) -> Callable[[], object]:
    value, rest = pyasn1_decoder.decode(data, asn1Spec=spec)
    assert not rest, "pyasn1 schema mismatch"
    if pyasn1_encoder.encode(value) != data:
        NOT_IDENTICAL.append(spec.__class__.__name__)

    def run() -> object:
        decoded, _ = pyasn1_decoder.decode(data, asn1Spec=spec)
        return pyasn1_encoder.encode(decoded)

    return run


def best_us(fn: Callable[[], object], number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6


def main() -> None:
    quick = "--quick" in sys.argv
    scale = 10 if quick else 1
    rows = [
        ("create command, 1 MiB image", ours_message(CREATE), None, 200 // scale),
        (
            "info reply, 100 unikernels",
            ours_message(INFO),
            pyasn1_roundtrip(encode_message(INFO), PY_INFO_WIRE),
            200 // scale,
        ),
        (
            "console data frame",
            ours_message(CONSOLE),
            pyasn1_roundtrip(encode_message(CONSOLE), PY_CONSOLE_WIRE),
            20000 // scale,
        ),
        (
            "certificate extension (policy add)",
            ours_extension,
            pyasn1_roundtrip(encode_extension(POLICY_EXT), PyExtension()),
            20000 // scale,
        ),
    ]
    print("| encode + decode | ours (µs) | pyasn1 (µs) |")
    print("|---|---:|---:|")
    for label, ours, theirs, number in rows:
        ours_us = best_us(ours, number)
        theirs_us = "n/a" if theirs is None else f"{best_us(theirs, max(1, number // 10)):.1f}"
        print(f"| {label} | {ours_us:.1f} | {theirs_us} |")
    # Strictness: pyasn1's DER decoder takes what albatross refuses.
    lenient = []
    for label, hexed in [
        ("non-minimal length 30 81 03", "308103020105"),
        ("non-minimal integer 02 02 00 01", "02020001"),
    ]:
        try:
            pyasn1_decoder.decode(bytes.fromhex(hexed))
            lenient.append(label)
        except Exception:
            pass
    print()
    print("pyasn1 DER decoder accepts: " + (", ".join(lenient) or "nothing we tried"))
    if NOT_IDENTICAL:
        print(
            "pyasn1 re-encodes differently (GeneralizedTime '.810Z' -> '.81Z'): "
            + ", ".join(NOT_IDENTICAL)
        )


if __name__ == "__main__":
    main()
