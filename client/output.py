"""albatross-client's printed forms of replies and data, and their ``--json`` twins.

The texts follow albatross 2.7.2's printers (``src/vmm_commands.ml`` ``pp_wire``,
``src/vmm_core.ml`` ``pp_info``, ``Policy.pp``, ``Stats.pp``) and go through
:class:`core.ocaml_format.Formatter` so that long lines break exactly where the real
client breaks them (case 007 of the vectors).  Pure: text in, text out.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from ca.describe import fail_behaviour_text
from core.ocaml_format import Formatter, bool_text, escaped, rfc3339
from core.wire import (
    BlockData,
    BlockDeviceImage,
    BlockDeviceList,
    ConsoleData,
    ConsoleList,
    Empty,
    Failure,
    Message,
    Name,
    OldBlockDeviceImage,
    Policy,
    PolicyList,
    StatsData,
    StringReply,
    Typ,
    UnikernelImage,
    UnikernelInfoList,
    UnikernelInfoRecord,
)
from core.wire.grammar import BLOCK_INFO, NET_INFO
from core.wire.messages import Ifdata, KinfoMem, Rusage, Timeval
from core.wire.state import StoredUnikernel

__all__ = [
    "escaped",
    "format_config",
    "format_log",
    "format_message",
    "json_line",
    "rfc3339",
    "to_json",
]


# -- small albatross printers ----------------------------------------------------


def _mac(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def _timeval(tv: Timeval) -> str:
    return f"{tv.seconds}.{tv.microseconds:06d}"


def _fields(f: Formatter, pieces: Iterable[str]) -> None:
    """Pieces separated by ``@ `` break hints."""
    for i, piece in enumerate(pieces):
        if i:
            f.brk()
        f.text(piece)


def _pp_info(f: Formatter, info: UnikernelInfoRecord, verbose: bool = False) -> None:
    # Block devices and bridges are DER SETs: albatross decodes them into lists in wire
    # order (sorted by encoding, so shorter entries first) and prints that order.
    typ = "solo5" if info.typ is Typ.SOLO5 else "BHyve"
    started = rfc3339(info.started) if info.started is not None else "unknown"
    blocks = ", ".join(
        f"{b.name} -> {b.device} (sector-size: {b.sector_size} bytes, size {b.size} MB)"
        for b in sorted(info.blocks, key=BLOCK_INFO.encode)
    )
    bridges = ", ".join(
        f"{n.name} -> {n.bridge} (mac {_mac(n.mac)})"
        for n in sorted(info.bridges, key=NET_INFO.encode)
    )
    digest = (
        f"digest {info.digest.hex()}"
        if info.typ is Typ.SOLO5
        else f"bhyve-vmname {info.digest.decode('utf-8', 'replace')}"
    )
    startup = "not specified" if info.startup is None else str(info.startup)
    boot = info.linux_boot_partition or "not specified"
    _fields(
        f,
        [
            f"typ {typ}",
            f"started {started}",
            f"fail behaviour {fail_behaviour_text(info.fail_behaviour)}",
            f"startup at {startup}",
            "CPUids " + ", ".join(str(c) for c in sorted(info.cpuids)),
            f"{info.memory} MB memory",
            f"block devices {blocks}",
            f"bridge {bridges}",
            digest,
            f"#cpus {info.numcpus if info.numcpus is not None else 1}",
            f"linux_boot_partition {boot}",
            *([f"argv {' '.join(info.argv) if info.argv else 'no'}"] if verbose else []),
        ],
    )


def _pp_config(f: Formatter, u: StoredUnikernel, argv: bool) -> None:
    """``Unikernel.pp_config`` (and ``pp_config_with_argv``), as inspect-dump prints it.

    Block devices and bridges come in albatross's list order (the state file's),
    which :class:`StoredUnikernel` keeps.
    """
    c = u.config
    typ = "solo5" if c.typ is Typ.SOLO5 else "BHyve"
    blocks = ", ".join(
        f"{b.name} -> {b.host_device}"
        + (f", sector-size: {b.sector_size}" if b.sector_size is not None else "")
        for b in u.blocks
    )
    bridges = ", ".join(
        f"{n.name} -> {n.host_bridge}" + (f"@{_mac(n.mac)}" if n.mac is not None else "")
        for n in u.bridges
    )
    pieces = [
        f"typ {typ}",
        f"compression {bool_text(c.compressed)} image {len(c.image)} bytes",
        f"fail behaviour {fail_behaviour_text(c.fail_behaviour)}",
        "startup at " + ("not specified" if c.startup is None else str(c.startup)),
        f"add_name {bool_text(c.add_name)}",
        "CPUids " + ", ".join(str(x) for x in sorted(c.cpuids)),
        f"{c.memory} MB memory",
        f"block devices {blocks}",
        f"bridge {bridges}",
        f"#cpus {c.numcpus if c.numcpus is not None else 1}",
        f"linux_boot {c.linux_boot_partition or 'not specified'}",
    ]
    if argv:
        pieces.append("argv " + (" ".join(c.argv) if c.argv else "no"))
    _fields(f, pieces)


def format_config(unikernel: StoredUnikernel, argv: bool = False) -> str:
    """``<name>: <config>`` (inspect-dump), or the config alone with argv (extract-dump)."""

    def build(f: Formatter) -> None:
        if not argv:
            f.text(f"{unikernel.name.pretty()}: ")
        _pp_config(f, unikernel, argv)

    return format_log("", build)


def _list(f: Formatter, empty: str, items: list[Callable[[Formatter], object]]) -> None:
    """``my_fmt_list``: the *empty* text, or the items separated by ``@.``."""
    if not items:
        f.text(empty)
        return
    for i, item in enumerate(items):
        if i:
            f.newline()
        item(f)


def _policy_item(name: Name, policy: Policy) -> Callable[[Formatter], object]:
    return lambda f: f.text(f"{name.pretty()}: {policy}")


def _info_item(
    name: Name, info: UnikernelInfoRecord, verbose: bool
) -> Callable[[Formatter], object]:
    def item(f: Formatter) -> None:
        f.text(f"{name.pretty()}: ")
        _pp_info(f, info, verbose)

    return item


def _text_item(text: str) -> Callable[[Formatter], object]:
    return lambda f: f.text(text)


def _pp_success(f: Formatter, reply: object, verbose: bool = False) -> None:
    if isinstance(reply, Empty):
        f.text("success")
    elif isinstance(reply, StringReply):
        f.text(f"success: {reply.text}")
    elif isinstance(reply, PolicyList):
        _list(f, "no policies", [_policy_item(n, p) for n, p in reply.policies])
    elif isinstance(reply, UnikernelInfoList):
        items = [_info_item(n, i, verbose) for n, i in reply.unikernels]
        _list(f, "no unikernels", items)
    elif isinstance(reply, UnikernelImage):
        f.text(f"image (compression {bool_text(reply.compressed)}) {len(reply.image)} bytes")
    elif isinstance(reply, BlockDeviceList):
        items = [
            _text_item(f"block {d.name.pretty()} size {d.size} MB active {bool_text(d.active)}")
            for d in reply.devices
        ]
        _list(f, "no block devices", items)
    elif isinstance(reply, OldBlockDeviceImage):
        f.text(
            f"old block device compressed {bool_text(reply.compressed)}, {len(reply.image)} bytes"
        )
    elif isinstance(reply, BlockDeviceImage):
        f.text(f"block device compressed {bool_text(reply.compressed)}")
    elif isinstance(reply, ConsoleList):
        _list(f, "no consoles", [_text_item(n.pretty()) for n in reply.consoles])
    else:  # pragma: no cover - every success type is handled above
        f.text(repr(reply))


def _rusage(r: Rusage) -> str:
    return (
        f"utime {_timeval(r.utime)} stime {_timeval(r.stime)} maxrss {r.maxrss} "
        f"ixrss {r.ixrss} idrss {r.idrss} isrss {r.isrss} minflt {r.minflt} "
        f"majflt {r.majflt} nswap {r.nswap} inblock {r.inblock} outblock {r.outblock} "
        f"msgsnd {r.msgsnd} msgrcv {r.msgrcv} signals {r.nsignals} nvcsw {r.nvcsw} "
        f"nivcsw {r.nivcsw}"
    )


def _kinfo(k: KinfoMem) -> str:
    return (
        f"virtual-size {k.vsize} rss {k.rss} text-size {k.tsize} data-size {k.dsize} "
        f"stack-size {k.ssize} runtime {k.runtime} cow {k.cow} start {_timeval(k.start)}"
    )


def _ifdata(i: Ifdata) -> str:
    return (
        f"bridge {i.bridge} flags {i.flags & 0xFFFFFFFF:X} send_length {i.send_length} "
        f"max_send_length {i.max_send_length} send_drops {i.send_drops} mtu {i.mtu} "
        f"baudrate {i.baudrate} input_packets {i.input_packets} "
        f"input_errors {i.input_errors} output_packets {i.output_packets} "
        f"output_errors {i.output_errors} collisions {i.collisions} "
        f"input_bytes {i.input_bytes} output_bytes {i.output_bytes} "
        f"input_mcast {i.input_mcast} output_mcast {i.output_mcast} "
        f"input_dropped {i.input_dropped} output_dropped {i.output_dropped}"
    )


def _pp_stats(f: Formatter, s: StatsData) -> None:
    f.text("stats: " + _rusage(s.rusage)).newline()
    f.text(_kinfo(s.kinfo_mem) if s.kinfo_mem is not None else "no kinfo_mem stats").newline()
    if s.vmm_stats is None:
        f.text("no vmm stats")
    else:
        _list(f, "", [_text_item(f"{k}: {v}") for k, v in s.vmm_stats])
    f.newline()
    for i, ifd in enumerate(s.ifdata):
        if i:
            f.newline().newline()
        f.text(_ifdata(ifd))


def _pp_payload(f: Formatter, msg: Message, verbose: bool) -> None:
    payload = msg.payload
    name = msg.header.name.pretty()
    if isinstance(payload, Failure):
        f.text(f"host {name}: command failed {payload.message}")
    elif isinstance(payload, ConsoleData):
        f.text(f"console {rfc3339(payload.timestamp)}: {escaped(payload.line)}")
    elif isinstance(payload, StatsData):
        _pp_stats(f, payload)
    elif isinstance(payload, BlockData):
        size = "eof" if payload.data is None else f"{len(payload.data)} bytes"
        f.text(f"block data {size}")
    else:
        f.text(f"host {name}: ")
        _pp_success(f, payload, verbose)


def format_log(prefix: str, build: Callable[[Formatter], object]) -> str:
    """One Logs message: *prefix* (e.g. ``prog: [WARNING] ``), then ``@[ ... @]@.``."""
    f = Formatter()
    if prefix:
        f.text(prefix)
    f.open_box()
    build(f)
    f.close_box()
    f.newline()
    return f.getvalue()


def format_message(msg: Message, prefix: str = "", verbose: bool = False) -> str:
    """A reply, failure or data message as albatross-client prints it (with newline).

    *verbose* is albatross's debug level (``-v -v``): info records then show ``argv``.
    """
    return format_log(prefix, lambda f: _pp_payload(f, msg, verbose))


# -- JSON ------------------------------------------------------------------------


def to_json(value: object) -> object:
    """Plain JSON data for any wire value: names as wire strings, octets as hex."""
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
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, object] = {"type": type(value).__name__}
        for field in dataclasses.fields(value):
            out[field.name] = to_json(getattr(value, field.name))
        return out
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat() if value.tzinfo else value.isoformat()
    if isinstance(value, enum.Enum):
        return value.name.lower() if isinstance(value.value, int) else value.value
    if isinstance(value, frozenset):
        items = [to_json(v) for v in value]
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
    if isinstance(value, tuple | list):
        return [to_json(v) for v in value]
    return value


def json_line(obj: object) -> str:
    return json.dumps(obj, sort_keys=True) + "\n"
