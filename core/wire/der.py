"""A strict DER codec with combinators, shaped after asn1-combinators.

Why by hand: albatross decodes with asn1-combinators' strict DER reader, and we
must accept what it accepts and nothing more, name the failing field in every
error, and stay fast enough that the endpoint's per-command CPU is almost all
TLS.  pyasn1 (the well-kept pure-Python ASN.1 library) is lenient about
lengths and far too slow for that budget; ``bench/bench_der.py`` measures both
on the same messages and the README has the figures.  The grammar itself is
still declared once, as data, in :mod:`core.wire.grammar`.

Rules enforced when decoding (beyond asn1-combinators, we also refuse the few
non-canonical forms it lets through, so that re-encoding any accepted message
gives the same bytes):

* identifiers: one octet; lengths: definite, minimal (no ``81 7F``);
* INTEGER: 1-8 minimal two's complement octets within OCaml's 63-bit ``int``;
* BOOLEAN: exactly ``00`` or ``FF``; NULL: empty; OCTET STRING: primitive;
* SET OF: elements in DER order and no duplicates;
* SEQUENCE: fields in order, OPTIONAL fields by tag, nothing left over;
* EXPLICIT tags: exactly one child.

Every failure raises :class:`~core.errors.ParseError`.  Decoders work on
``memoryview`` slices, so large OCTET STRINGs are copied once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from core.errors import ParseError, UsageError

T = TypeVar("T")
U = TypeVar("U")

INT_MIN = -(1 << 62)
INT_MAX = (1 << 62) - 1

TAG_BOOLEAN = 0x01
TAG_INTEGER = 0x02
TAG_OCTET_STRING = 0x04
TAG_NULL = 0x05
TAG_UTF8STRING = 0x0C
TAG_GENERALIZED_TIME = 0x18
TAG_SEQUENCE = 0x30
TAG_SET = 0x31


def context_tag(n: int) -> int:
    """Identifier octet of ``[n]`` EXPLICIT/IMPLICIT-constructed, context class."""
    return 0xA0 | n


# -- length and TLV -------------------------------------------------------


def encode_length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


def tlv(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes((tag, n)) + content
    return bytes((tag,)) + encode_length(n) + content


def head(tag: int, n: int) -> bytes:
    """Identifier and length octets of an element with *n* content octets."""
    return bytes((tag, n)) if n < 0x80 else bytes((tag,)) + encode_length(n)


def tlv_parts(tag: int, parts: Sequence[bytes]) -> bytes:
    """``tlv(tag, b"".join(parts))`` with one copy of the content instead of two."""
    return b"".join((head(tag, sum(map(len, parts))), *parts))


def read_tlv(buf: memoryview, pos: int) -> tuple[int, int, int]:
    """Read one element at *pos*: return (identifier, content start, content end)."""
    end = len(buf)
    if pos + 2 > end:
        raise ParseError("truncated element")
    tag = buf[pos]
    if tag & 0x1F == 0x1F:
        raise ParseError(f"multi-octet identifier 0x{tag:02x} is not used by albatross")
    first = buf[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    elif first == 0x80:
        raise ParseError("indefinite length is not DER")
    else:
        k = first & 0x7F
        if k > 4:
            raise ParseError(f"length of {k} octets is too large")
        if pos + k > end:
            raise ParseError("truncated length")
        raw = buf[pos : pos + k]
        if raw[0] == 0:
            raise ParseError("non-minimal length (leading zero octet)")
        length = int.from_bytes(raw, "big")
        if length < 0x80:
            raise ParseError(f"non-minimal length: long form for {length}")
        pos += k
    if pos + length > end:
        raise ParseError(f"length {length} exceeds the {end - pos} octets available")
    return tag, pos, pos + length


def iter_children(buf: memoryview) -> Iterator[tuple[int, memoryview]]:
    pos = 0
    while pos < len(buf):
        tag, start, stop = read_tlv(buf, pos)
        yield tag, buf[start:stop]
        pos = stop


# -- codecs ---------------------------------------------------------------


class Codec(Generic[T]):
    """Encodes values of one type to a DER element and back.

    ``tags`` is the set of identifier octets the element may start with; a
    SEQUENCE uses it to tell whether an OPTIONAL field is present and a CHOICE
    to pick an alternative.
    """

    tags: frozenset[int]
    label: str

    def encode(self, value: T) -> bytes:
        raise NotImplementedError

    def encode_parts(self, value: T) -> list[bytes]:
        """The encoding as pieces to join once (``b"".join`` of them is :meth:`encode`).

        A ``create`` carries an image of up to 16 MiB five elements deep; built
        bottom-up as bytes, every level would copy it.  Constructed codecs
        override this and define ``encode`` as the one join.
        """
        return [self.encode(value)]

    def decode_content(self, tag: int, content: memoryview) -> T:
        raise NotImplementedError

    def decode_element(self, tag: int, content: memoryview) -> T:
        if tag not in self.tags:
            raise ParseError(f"{self.label}: unexpected tag 0x{tag:02x}")
        return self.decode_content(tag, content)

    def decode(self, data: bytes | memoryview) -> T:
        """Decode exactly one element filling *data*."""
        buf = memoryview(data)
        tag, start, stop = read_tlv(buf, 0)
        if stop != len(buf):
            raise ParseError(f"{len(buf) - stop} trailing octets after the {self.label}")
        try:
            return self.decode_element(tag, buf[start:stop])
        except ParseError as e:
            if isinstance(self, Sequence_) or e.message.startswith(f"{self.label}:"):
                raise
            raise e.within(self.label) from None


class Primitive(Codec[T]):
    def __init__(
        self,
        tag: int,
        label: str,
        enc: Callable[[T], bytes],
        dec: Callable[[memoryview], T],
    ) -> None:
        self.tags = frozenset({tag})
        self.label = label
        self._tag = tag
        self._enc = enc
        self._dec = dec

    def encode(self, value: T) -> bytes:
        return tlv(self._tag, self._enc(value))

    def encode_parts(self, value: T) -> list[bytes]:
        content = self._enc(value)
        return [head(self._tag, len(content)), content]

    def decode_content(self, tag: int, content: memoryview) -> T:
        return self._dec(content)


def _enc_int(value: int) -> bytes:
    if not INT_MIN <= value <= INT_MAX:
        raise UsageError(f"integer {value} does not fit albatross's 63-bit int")
    magnitude = value if value >= 0 else ~value
    return value.to_bytes((magnitude.bit_length() + 8) // 8, "big", signed=True)


def _dec_int(content: memoryview) -> int:
    n = len(content)
    if n == 0:
        raise ParseError("empty integer")
    if n > 1 and (
        (content[0] == 0 and content[1] < 0x80) or (content[0] == 0xFF and content[1] >= 0x80)
    ):
        raise ParseError("non-minimal integer encoding")
    if n > 8:
        raise ParseError("integer out of range")
    value = int.from_bytes(content, "big", signed=True)
    if not INT_MIN <= value <= INT_MAX:
        raise ParseError("integer out of range")
    return value


def _enc_int32(value: int) -> bytes:
    if not -(1 << 31) <= value < (1 << 31):
        raise UsageError(f"integer {value} does not fit an int32")
    return _enc_int(value)


def _dec_int32(content: memoryview) -> int:
    value = _dec_int(content)
    if not -(1 << 31) <= value < (1 << 31):
        raise ParseError("int32 out of range")
    return value


def _dec_bool(content: memoryview) -> bool:
    if len(content) != 1:
        raise ParseError("boolean must be one octet")
    if content[0] == 0xFF:
        return True
    if content[0] == 0:
        return False
    raise ParseError(f"boolean octet 0x{content[0]:02x} is not DER (00 or FF)")


def _dec_null(content: memoryview) -> None:
    if len(content):
        raise ParseError("NULL with content")


def _enc_int64(value: int) -> bytes:
    if not -(1 << 63) <= value < (1 << 63):
        raise UsageError(f"integer {value} does not fit an int64")
    return value.to_bytes(8, "big", signed=True)


def _dec_int64(content: memoryview) -> int:
    if len(content) != 8:
        raise ParseError(f"int64 must be 8 octets, not {len(content)}")
    return int.from_bytes(content, "big", signed=True)


def _dec_mac(content: memoryview) -> bytes:
    if len(content) != 6:
        raise ParseError(f"bad mac address: {len(content)} octets")
    return bytes(content)


def _enc_text(value: str) -> bytes:
    # albatross never validates UTF-8; surrogateescape keeps arbitrary bytes round-tripping.
    return value.encode("utf-8", "surrogateescape")


def _dec_text(content: memoryview) -> str:
    return bytes(content).decode("utf-8", "surrogateescape")


def format_time(ts: datetime) -> str:
    """GeneralizedTime as asn1-combinators writes it: UTC, truncated ``.fff`` if non-zero."""
    if ts.tzinfo is None:
        raise UsageError("a timestamp must carry a time zone")
    ts = ts.astimezone(UTC)
    # Not strftime: its %Y does not pad years below 1000 on every platform.
    text = f"{ts.year:04d}{ts.month:02d}{ts.day:02d}{ts.hour:02d}{ts.minute:02d}{ts.second:02d}"
    if ts.microsecond:
        text += f".{ts.microsecond // 1000:03d}"
    return text + "Z"


def _enc_time(ts: datetime) -> bytes:
    return format_time(ts).encode("ascii")


def _dec_time(content: memoryview) -> datetime:
    raw = bytes(content)
    # Canonical forms only: YYYYMMDDHHMMSSZ or YYYYMMDDHHMMSS.fffZ (what albatross writes).
    if len(raw) not in (15, 19) or not raw.endswith(b"Z"):
        raise ParseError(f"time {raw!r} is not YYYYMMDDHHMMSS[.fff]Z")
    digits = raw[:14]
    frac = raw[15:18] if len(raw) == 19 else b""
    if not digits.isdigit() or (len(raw) == 19 and (raw[14:15] != b"." or not frac.isdigit())):
        raise ParseError(f"time {raw!r} is not YYYYMMDDHHMMSS[.fff]Z")
    ms = int(frac) if frac else 0
    if len(raw) == 19 and ms == 0:
        # ".000" is written for a non-zero fraction below 1 ms; 1 µs keeps it so.
        micro = 1
    elif len(raw) == 15:
        micro = 0
    else:
        micro = ms * 1000
    try:
        return datetime(
            int(digits[0:4]),
            int(digits[4:6]),
            int(digits[6:8]),
            int(digits[8:10]),
            int(digits[10:12]),
            int(digits[12:14]),
            micro,
            tzinfo=UTC,
        )
    except ValueError as e:
        raise ParseError(f"time {raw!r}: {e}") from None


INTEGER: Codec[int] = Primitive(TAG_INTEGER, "integer", _enc_int, _dec_int)
INT32: Codec[int] = Primitive(TAG_INTEGER, "int32", _enc_int32, _dec_int32)
BOOLEAN: Codec[bool] = Primitive(
    TAG_BOOLEAN, "boolean", lambda b: b"\xff" if b else b"\x00", _dec_bool
)
NULL: Codec[None] = Primitive(TAG_NULL, "null", lambda _: b"", _dec_null)
OCTETS: Codec[bytes] = Primitive(TAG_OCTET_STRING, "octet string", bytes, bytes)
INT64: Codec[int] = Primitive(TAG_OCTET_STRING, "int64", _enc_int64, _dec_int64)
MAC: Codec[bytes] = Primitive(TAG_OCTET_STRING, "mac address", bytes, _dec_mac)
UTF8: Codec[str] = Primitive(TAG_UTF8STRING, "utf8 string", _enc_text, _dec_text)
TIME: Codec[datetime] = Primitive(TAG_GENERALIZED_TIME, "generalized time", _enc_time, _dec_time)


class Mapped(Codec[U], Generic[T, U]):
    """A codec for U through a codec for T and a pair of conversion functions."""

    def __init__(
        self, inner: Codec[T], to_inner: Callable[[U], T], from_inner: Callable[[T], U]
    ) -> None:
        self.inner = inner
        self.tags = inner.tags
        self.label = inner.label
        self._to = to_inner
        self._from = from_inner

    def encode(self, value: U) -> bytes:
        return self.inner.encode(self._to(value))

    def encode_parts(self, value: U) -> list[bytes]:
        return self.inner.encode_parts(self._to(value))

    def decode_content(self, tag: int, content: memoryview) -> U:
        return self._from(self.inner.decode_content(tag, content))


class Explicit(Codec[T]):
    """``[n] EXPLICIT inner``: a constructed context tag around exactly one element."""

    def __init__(self, n: int, inner: Codec[T]) -> None:
        self.n = n
        self.inner = inner
        self._tag = context_tag(n)
        self.tags = frozenset({self._tag})
        self.label = f"[{n}]"

    def encode(self, value: T) -> bytes:
        return b"".join(self.encode_parts(value))

    def encode_parts(self, value: T) -> list[bytes]:
        parts = self.inner.encode_parts(value)
        parts.insert(0, head(self._tag, sum(map(len, parts))))
        return parts

    def decode_content(self, tag: int, content: memoryview) -> T:
        inner_tag, start, stop = read_tlv(content, 0)
        if stop != len(content):
            raise ParseError(f"explicit [{self.n}] holds more than one element")
        return self.inner.decode_element(inner_tag, content[start:stop])


class Field(Generic[T]):
    """One SEQUENCE field: a name for error messages, a codec, and optionality."""

    def __init__(self, name: str, codec: Codec[T], optional: bool = False) -> None:
        self.name = name
        self.codec = codec
        self.optional = optional


class Sequence_(Codec[T]):
    """SEQUENCE of fields, built into a value by *build* and taken apart by *parts*."""

    def __init__(
        self,
        label: str,
        fields: Sequence[Field[Any]],
        build: Callable[..., T],
        parts: Callable[[T], tuple[Any, ...]],
        tag: int = TAG_SEQUENCE,
    ) -> None:
        self.label = label
        self.fields = tuple(fields)
        self.tags = frozenset({tag})
        self._tag = tag
        self._build = build
        self._parts = parts

    def encode(self, value: T) -> bytes:
        return b"".join(self.encode_parts(value))

    def encode_parts(self, value: T) -> list[bytes]:
        out = [b""]  # the head, once the length is known
        for f, v in zip(self.fields, self._parts(value), strict=True):
            if v is None and f.optional:
                continue
            try:
                out.extend(f.codec.encode_parts(v))
            except UsageError as e:
                raise UsageError(f"{self.label}: {f.name}: {e.message}") from None
        out[0] = head(self._tag, sum(map(len, out)))
        return out

    def decode_content(self, tag: int, content: memoryview) -> T:
        values: list[Any] = []
        pos = 0
        end = len(content)
        for f in self.fields:
            if pos >= end:
                if f.optional:
                    values.append(None)
                    continue
                raise ParseError(f"{self.label}: {f.name}: missing")
            try:
                ctag, start, stop = read_tlv(content, pos)
                if f.optional and ctag not in f.codec.tags:
                    values.append(None)
                    continue
                values.append(f.codec.decode_element(ctag, content[start:stop]))
            except ParseError as e:
                # A nested SEQUENCE already names itself; don't say "header: header:".
                inner = e if e.message.startswith(f"{f.name}:") else e.within(f.name)
                raise inner.within(self.label) from None
            pos = stop
        if pos != end:
            raise ParseError(f"{self.label}: trailing elements after the last field")
        try:
            return self._build(*values)
        except UsageError as e:
            raise ParseError(f"{self.label}: {e.message}") from None


class SequenceOf(Codec[tuple[T, ...]]):
    def __init__(self, label: str, inner: Codec[T]) -> None:
        self.label = label
        self.inner = inner
        self.tags = frozenset({TAG_SEQUENCE})

    def encode(self, value: tuple[T, ...]) -> bytes:
        return tlv_parts(TAG_SEQUENCE, [self.inner.encode(v) for v in value])

    def decode_content(self, tag: int, content: memoryview) -> tuple[T, ...]:
        out = []
        for i, (ctag, child) in enumerate(iter_children(content)):
            try:
                out.append(self.inner.decode_element(ctag, child))
            except ParseError as e:
                raise e.within(f"{self.label}[{i}]") from None
        return tuple(out)


class SetOf(Codec[frozenset[T]]):
    """SET OF: written sorted by encoding (X.690 11.6); read only in that order, no duplicates."""

    def __init__(self, label: str, inner: Codec[T]) -> None:
        self.label = label
        self.inner = inner
        self.tags = frozenset({TAG_SET})

    def encode(self, value: frozenset[T]) -> bytes:
        return tlv_parts(TAG_SET, sorted(self.inner.encode(v) for v in value))

    def decode_content(self, tag: int, content: memoryview) -> frozenset[T]:
        out: list[T] = []
        previous = b""
        pos = 0
        while pos < len(content):
            ctag, start, stop = read_tlv(content, pos)
            encoded = bytes(content[pos:stop])
            if out and encoded <= previous:
                raise ParseError(f"{self.label}: elements not in DER order or duplicated")
            try:
                out.append(self.inner.decode_element(ctag, content[start:stop]))
            except ParseError as e:
                raise e.within(f"{self.label}[{len(out)}]") from None
            previous = encoded
            pos = stop
        result = frozenset(out)
        if len(result) != len(out):
            raise ParseError(f"{self.label}: duplicated element")
        return result


class Alt(Generic[T]):
    """One CHOICE alternative ``[n] EXPLICIT codec``.

    *make* turns the decoded inner value into the choice's value; *take*
    returns the inner value for a value this alternative encodes, or the
    sentinel :data:`NO` when the value belongs to another alternative.
    """

    def __init__(
        self,
        n: int,
        name: str,
        codec: Codec[Any],
        make: Callable[[Any], T],
        take: Callable[[T], Any],
    ) -> None:
        self.n = n
        self.name = name
        self.explicit = Explicit(n, codec)
        self.make = make
        self.take = take


class _No:
    def __repr__(self) -> str:
        return "NO"


NO: Any = _No()


class Choice(Codec[T]):
    """An untagged CHOICE of explicitly tagged alternatives (flattened like asn1-combinators)."""

    def __init__(self, label: str, alts: Sequence[Alt[T]], removed: dict[int, str] | None = None):
        self.label = label
        self.alts = tuple(alts)
        self._by_tag = {context_tag(a.n): a for a in self.alts}
        if len(self._by_tag) != len(self.alts):
            raise ValueError(f"{label}: two alternatives share a tag")
        self._removed = {context_tag(n): why for n, why in (removed or {}).items()}
        self.tags = frozenset(self._by_tag) | frozenset(self._removed)

    def encode(self, value: T) -> bytes:
        return b"".join(self.encode_parts(value))

    def encode_parts(self, value: T) -> list[bytes]:
        for alt in self.alts:
            inner = alt.take(value)
            if inner is not NO:
                return alt.explicit.encode_parts(inner)
        raise UsageError(f"{self.label}: cannot encode {value!r}")

    def decode_content(self, tag: int, content: memoryview) -> T:
        alt = self._by_tag.get(tag)
        if alt is None:
            why = self._removed.get(tag)
            if why is not None:
                raise ParseError(f"{self.label}: [{tag & 0x1F}] {why}")
            raise ParseError(f"{self.label}: unknown alternative [{tag & 0x1F}]")
        try:
            inner = alt.explicit.decode_content(tag, content)
            return alt.make(inner)
        except ParseError as e:
            raise e.within(alt.name) from None
        except UsageError as e:
            raise ParseError(f"{alt.name}: {e.message}") from None

    def decode_element(self, tag: int, content: memoryview) -> T:
        if tag & 0xE0 != 0xA0:  # not a constructed context tag: no alternative can match
            raise ParseError(f"{self.label}: unexpected tag 0x{tag:02x}")
        return self.decode_content(tag, content)


def when(
    cls: type[Any],
    *,
    check: Callable[[Any], bool] | None = None,
    get: Callable[[Any], Any] | None = None,
) -> Callable[[Any], Any]:
    """Build an :class:`Alt` *take* function: match instances of *cls* (and *check*)."""

    def take(value: Any) -> Any:
        if isinstance(value, cls) and (check is None or check(value)):
            return None if get is None else get(value)
        return NO

    return take
