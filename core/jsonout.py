"""The one JSON model of every machine-readable output (schema 1), pure.

``alba … --json``, ``alba ca inspect --json`` and ``albatross-inspect --json`` all
print JSON Lines: one compact object per line, keys sorted, each carrying
``"schema": SCHEMA`` and a ``"record"`` naming its shape (README "JSON output").
Values follow one set of rules, :func:`to_json`, so a serial, a MAC, a time or a
name looks the same whichever program printed it:

* a wire dataclass is an object whose ``"type"`` is the class name;
* a ``(name, value)`` pair of a reply (info, policy) is one object with ``"name"``;
* a MAC is ``00:80:41:b8:a0:fd``, as the text shows it; other octets are lowercase hex
  up to :data:`INLINE_BYTES`, then ``{"length", "sha256"}`` (an image is never inlined);
* a time is ISO 8601 in UTC (``2024-05-01T10:00:00+00:00``);
* an enum is its lowercase name (``"solo5"``), a set a sorted list;
* a certificate serial is :func:`serial_text`: the hex of its INTEGER content octets,
  as albatross's certificate database writes it.

Bumping :data:`SCHEMA` is for a change that renames or removes a key; adding a key
keeps it.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from core.pem import integer_octets
from core.wire.names import Name
from core.wire.policy import Policy

__all__ = ["INLINE_BYTES", "SCHEMA", "json_line", "mac_text", "record", "serial_text", "to_json"]

#: The version of the output model; a consumer checks it before reading a record.
SCHEMA = 1
#: Octet strings up to this size are inlined as hex; larger ones are summarised.
INLINE_BYTES = 64


def mac_text(mac: bytes) -> str:
    """``00:80:41:b8:a0:fd``, as albatross prints a MAC."""
    return ":".join(f"{b:02x}" for b in mac)


def serial_text(serial: int) -> str:
    """A certificate serial as albatross's database writes it: ``009f2a52ee9a854b443973``.

    The hex of the INTEGER's content octets (so a leading ``00`` when the top bit is
    set), lowercase, without ``0x`` or colons (behaviour.md, CA ``sign`` step 5).
    """
    return integer_octets(serial).hex()


def _bytes(data: bytes) -> object:
    if len(data) <= INLINE_BYTES:
        return data.hex()
    return {"length": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _pair(value: tuple[Any, ...]) -> dict[str, Any] | None:
    """A reply's ``(name, record)`` pair as one object, or None if *value* is no such pair."""
    if len(value) != 2 or not isinstance(value[0], Name):
        return None
    inner = to_json(value[1])
    if not isinstance(inner, dict):
        return None
    return {"name": str(value[0]), **inner}


def to_json(value: object) -> Any:
    """Plain JSON data for a wire value, a time, octets or a Python scalar (rules above)."""
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, Name):
        return str(value)
    if isinstance(value, Policy):
        return {
            "unikernels": value.unikernels,
            "cpuids": sorted(value.cpuids),
            "memory": value.memory,
            "block": value.block,
            "bridges": sorted(value.bridges),
        }
    if isinstance(value, bytes):
        return _bytes(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat() if value.tzinfo else value.isoformat()
    if isinstance(value, enum.Enum):
        return value.name.lower()
    if isinstance(value, frozenset | set):
        items = [to_json(v) for v in value]
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
    if isinstance(value, tuple | list):
        if isinstance(value, tuple):
            pair = _pair(value)
            if pair is not None:
                return pair
        return [to_json(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {"type": type(value).__name__}
        for field in dataclasses.fields(value):
            item = getattr(value, field.name)
            is_mac = field.name == "mac" and isinstance(item, bytes) and len(item) == 6
            out[field.name] = mac_text(item) if is_mac else to_json(item)
        return out
    raise TypeError(f"no JSON form for {type(value).__name__}")


def record(kind: str, **fields: object) -> dict[str, object]:
    """One output record: ``{"schema": 1, "record": kind, ...}``."""
    return {"schema": SCHEMA, "record": kind, **fields}


def json_line(obj: object) -> str:
    """One JSON Lines line: compact, keys sorted, ASCII-safe, with its newline."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":")) + "\n"
