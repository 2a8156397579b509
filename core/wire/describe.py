"""Wire values in plain words (for inspect and logs); their JSON is :mod:`core.jsonout`.

The rendering is generic over the frozen dataclasses of
:mod:`core.wire.messages`, so a new message kind needs no code here;
only the human names of the kinds live in a table.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import re
from datetime import datetime
from typing import Any

from core.wire import messages as m
from core.wire.der import format_time
from core.wire.names import Name
from core.wire.policy import Policy

__all__ = ["describe", "kind"]

#: Inline byte strings up to this size; larger ones are summarised by size and digest.
INLINE_BYTES = 64

_KINDS: dict[type[Any], str] = {
    m.ConsoleAdd: "console add",
    m.ConsoleSubscribe: "console subscribe",
    m.ConsoleListInactive: "console list inactive",
    m.StatsAdd: "stats add",
    m.StatsRemove: "stats remove",
    m.StatsSubscribe: "stats subscribe",
    m.StatsInitial: "stats initial",
    m.UnikernelInfo: "unikernel info",
    m.UnikernelCreate: "unikernel create",
    m.UnikernelDestroy: "unikernel destroy",
    m.UnikernelGet: "unikernel get",
    m.UnikernelRestart: "unikernel restart",
    m.PolicyInfo: "policy info",
    m.PolicyAdd: "policy add",
    m.PolicyRemove: "policy remove",
    m.BlockInfo: "block info",
    m.BlockAdd: "block add",
    m.BlockRemove: "block remove",
    m.BlockAddOld: "block add (old)",
    m.BlockSetOld: "block set (old)",
    m.BlockDumpOld: "block dump (old)",
    m.BlockDump: "block dump",
    m.BlockSet: "block set",
    m.Empty: "success",
    m.StringReply: "success",
    m.PolicyList: "policies",
    m.BlockDeviceList: "block devices",
    m.UnikernelImage: "unikernel image",
    m.OldBlockDeviceImage: "block device image (old)",
    m.UnikernelInfoList: "unikernel info",
    m.BlockDeviceImage: "block device image",
    m.ConsoleList: "inactive consoles",
    m.Failure: "failure",
    m.StatsData: "statistics",
    m.ConsoleData: "console line",
    m.BlockData: "block data",
}


def kind(value: object) -> str:
    """Human name of a message kind, e.g. ``unikernel create`` (force-create says so)."""
    if isinstance(value, m.UnikernelCreate) and value.force:
        return "unikernel force-create"
    return _KINDS.get(type(value), _words(type(value).__name__))


def _words(identifier: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", " ", identifier).lower().replace("_", " ")


def _text(value: object) -> str:
    if isinstance(value, Name):
        return str(value)
    if isinstance(value, bytes):
        if len(value) <= 16:
            return value.hex() or "(empty)"
        return f"{len(value)} octets, sha256 {hashlib.sha256(value).hexdigest()[:16]}…"
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, enum.Enum):
        return str(value.name).lower()
    if isinstance(value, Policy):
        return value.describe()
    if isinstance(value, frozenset):
        return ", ".join(_text(v) for v in sorted(value, key=repr)) or "none"
    if isinstance(value, tuple):
        return "[" + "; ".join(_text(v) for v in value) + "]"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _fields(value) if dataclasses.fields(value) else kind(value)
    return str(value)


def _fields(value: Any) -> str:
    parts = []
    for f in dataclasses.fields(value):
        v = getattr(value, f.name)
        if (
            v is None
            or v == frozenset()
            or (f.default is not dataclasses.MISSING and v == f.default)
        ):
            continue  # say only what differs from the default
        parts.append(f"{f.name.replace('_', ' ')} {_text(v)}")
    return ", ".join(parts)


def describe(value: object) -> str:
    """One line in plain words, e.g. ``unikernel create: image 2827 octets…, memory 32``."""
    if isinstance(value, m.Message):
        h = value.header
        what = f"{kind(value.payload)} for {h.name} (version {h.version}, sequence {h.sequence})"
        detail = _fields(value.payload)
        return f"{what}: {detail}" if detail else what
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        detail = _fields(value) if dataclasses.fields(value) else ""
        return f"{kind(value)}: {detail}" if detail else kind(value)
    return _text(value)
