"""albatross-client's printed forms of replies and data, their JSON records and tables.

``--format`` (defined once here, :func:`output_format_options`) picks one of three:
``text``, albatross-client's words byte for byte (the default); ``json``, one record
of the output model :mod:`core.jsonout` per line; ``table``, aligned columns for the
list replies (info, block, policy) and the text for everything else.

The texts follow albatross 2.7.2's printers (``src/vmm_commands.ml`` ``pp_wire``,
``src/vmm_core.ml`` ``pp_info``, ``Policy.pp``, ``Stats.pp``) and go through
:class:`core.ocaml_format.Formatter` so that long lines break exactly where the real
client breaks them (case 007 of the vectors).  Pure: text in, text out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import click

from ca.describe import fail_behaviour_text
from client.errors import RemoteCommandFailed
from core.errors import AlbatrossError
from core.jsonout import json_line, mac_text, record, to_json
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
    is_success,
)
from core.wire.grammar import BLOCK_INFO, NET_INFO
from core.wire.messages import Ifdata, KinfoMem, Rusage, Timeval
from core.wire.state import StoredUnikernel

__all__ = [
    "FORMATS",
    "chosen_format",
    "error_record",
    "escaped",
    "exception_record",
    "format_config",
    "format_log",
    "format_message",
    "format_table",
    "json_line",
    "log_record",
    "output_format_options",
    "record",
    "reply_record",
    "rfc3339",
    "table",
    "to_json",
]

F = TypeVar("F", bound=Callable[..., Any])


# -- small albatross printers ----------------------------------------------------


_mac = mac_text


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


# -- JSON and tables ------------------------------------------------------------

#: The ``--format`` choices: albatross's text (the default), JSON Lines, aligned columns.
FORMATS = ("text", "json", "table")


def output_format_options(func: F) -> F:
    """``--format text|json|table`` and ``--json`` (its alias), defined once for every command.

    The two land in ``output_format`` and ``json_output``; :func:`chosen_format` reads them.
    """
    func = click.option(
        "--json", "json_output", is_flag=True, help="Print JSON lines (same as --format json)."
    )(func)
    return click.option(
        "--format",
        "output_format",
        type=click.Choice(FORMATS),
        default="text",
        show_default=True,
        help="text: as albatross-client prints it; json: JSON lines (README 'JSON output'); "
        "table: aligned columns for lists (info, block, policy).",
    )(func)


def chosen_format(params: dict[str, object]) -> str:
    """The output format the options ask for (``--json`` wins: it is the older spelling)."""
    if params.get("json_output"):
        return "json"
    chosen = params.get("output_format")
    return chosen if isinstance(chosen, str) and chosen in FORMATS else "text"


def reply_record(msg: Message) -> dict[str, object]:
    """A reply or data message as one output record (a failure is an error record)."""
    payload = msg.payload
    kind = "reply" if is_success(payload) else "data"
    return record(kind, name=str(msg.header.name), reply=to_json(payload))


def error_record(
    message: str,
    exit_code: int,
    *,
    source: str = "client",
    name: Name | None = None,
    reply_type: str | None = None,
) -> dict[str, object]:
    """An error, the client's own or the daemon's refusal, in the one error shape.

    *source* is ``"client"`` (nothing reached the daemon, or the connection failed) or
    ``"daemon"`` (its Failure reply, *reply_type* ``"Failure"``).
    """
    return record(
        "error",
        source=source,
        exit_code=exit_code,
        message=message,
        name=None if name is None else str(name),
        reply_type=reply_type,
    )


def exception_record(exc: AlbatrossError, exit_code: int) -> dict[str, object] | None:
    """The error record ending a failed ``--json`` run; None if the daemon's is printed."""
    if isinstance(exc, RemoteCommandFailed) and exc.log == "none":
        return None  # the daemon's Failure reply was printed as the error record
    return error_record(exc.message, exit_code)


def log_record(level: str, message: str, **fields: object) -> dict[str, object]:
    """An informational or warning line of the client (``dumped image to …``)."""
    return record("log", level=level, message=message, **fields)


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Left-aligned columns separated by two spaces, the last one unpadded.

    Written by hand: a dozen lines that keep the output plain ASCII for grep and awk,
    where a table library would add borders and terminal-width logic.
    """
    lines = [list(header), *(list(r) for r in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    out = []
    for line in lines:
        cells = [cell.ljust(width) for cell, width in zip(line, widths, strict=False)]
        out.append("  ".join([*cells, line[-1]]).rstrip())
    return "\n".join(out) + "\n"


def _info_row(name: Name, info: UnikernelInfoRecord) -> list[str]:
    return [
        str(name),
        "solo5" if info.typ is Typ.SOLO5 else "bhyve",
        str(info.memory),
        ",".join(str(c) for c in sorted(info.cpuids)),
        rfc3339(info.started) if info.started is not None else "unknown",
        ",".join(f"{b.name}->{b.device}" for b in sorted(info.blocks, key=BLOCK_INFO.encode))
        or "-",
        ",".join(
            f"{n.name}->{n.bridge}@{_mac(n.mac)}" for n in sorted(info.bridges, key=NET_INFO.encode)
        )
        or "-",
    ]


def _policy_row(name: Name, p: Policy) -> list[str]:
    return [
        str(name),
        str(p.unikernels),
        str(p.memory),
        ",".join(str(c) for c in sorted(p.cpuids)),
        "-" if p.block is None else str(p.block),
        ",".join(sorted(p.bridges)) or "-",
    ]


def format_table(msg: Message) -> str | None:
    """The reply as a table, or None when it is no list (then the text is printed)."""
    payload = msg.payload
    if isinstance(payload, UnikernelInfoList):
        header = ["NAME", "TYPE", "MEMORY-MB", "CPUS", "STARTED", "BLOCKS", "BRIDGES"]
        return table(header, [_info_row(n, i) for n, i in payload.unikernels])
    if isinstance(payload, PolicyList):
        header = ["NAME", "UNIKERNELS", "MEMORY-MB", "CPUS", "BLOCK-MB", "BRIDGES"]
        return table(header, [_policy_row(n, p) for n, p in payload.policies])
    if isinstance(payload, BlockDeviceList):
        rows = [[str(d.name), str(d.size), bool_text(d.active)] for d in payload.devices]
        return table(["NAME", "SIZE-MB", "ACTIVE"], rows)
    return None
