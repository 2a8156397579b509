"""Commands in albatross's words (``Vmm_commands.pp ~verbose:false``), pure.

``albatross-client sign`` prints ``signing <command>``; users compare that line
with what they asked for, so we reproduce the text of src/vmm_commands.ml and
src/vmm_core.ml.  albatross prints through OCaml's Format module, whose break
hints (``@ ``) turn into newlines once a line would pass the 78-column margin
(case 079 shows a create spread over three lines).  :func:`describe_command`
returns the pieces between break hints and :func:`render` lays them out with
:class:`core.ocaml_format.Formatter`, the one OCaml Format engine, in a box
opened at a given column.
"""

from __future__ import annotations

from core.ocaml_format import Formatter, bool_text, rfc3339
from core.wire import (
    BlockAdd,
    BlockAddOld,
    BlockDump,
    BlockDumpOld,
    BlockInfo,
    BlockRemove,
    BlockSet,
    BlockSetOld,
    Command,
    ConsoleAdd,
    ConsoleListInactive,
    ConsoleSubscribe,
    PolicyAdd,
    PolicyInfo,
    PolicyRemove,
    StatsAdd,
    StatsInitial,
    StatsRemove,
    StatsSubscribe,
    Typ,
    UnikernelArguments,
    UnikernelConfig,
    UnikernelCreate,
    UnikernelDestroy,
    UnikernelGet,
    UnikernelInfo,
    UnikernelRestart,
)
from core.wire.messages import BlockDevice, FailBehaviour, NetIf, Restart

__all__ = ["MARGIN", "command_text", "describe_command", "fail_behaviour_text", "render"]

#: OCaml Format's default margin (``Format.get_margin ()``).
MARGIN = 78


def render(pieces: list[str], column: int = 0, margin: int = MARGIN) -> str:
    """Join *pieces* with Format break hints (``@ ``) in a box (``@[``) opened at *column*.

    A break becomes a space if the next piece still fits before the margin,
    otherwise a newline indented to the box's column (Format's ``Pp_box`` rule).
    The text before *column* is not part of the result; *column* stays within Format's
    maximum indentation (68), as albatross's one use (column 0) does.
    """
    if not pieces:
        return ""
    f = Formatter(margin=margin)
    f.text(" " * column).open_box()
    for i, piece in enumerate(pieces):
        if i:
            f.brk()
        f.text(piece)
    f.newline()
    return f.getvalue()[column:-1]


def command_text(command: Command) -> str:
    """The command on one line (break hints as spaces)."""
    return " ".join(describe_command(command))


def fail_behaviour_text(behaviour: FailBehaviour) -> str:
    """``Vmm_core.pp_fail_behaviour``."""
    if isinstance(behaviour, Restart):
        if not behaviour.exit_codes:
            return "restart all except 1"
        return "restart " + ", ".join(str(c) for c in sorted(behaviour.exit_codes))
    return "quit"


def _opt(value: object | None) -> str:
    return "not specified" if value is None else str(value)


def _block(block: BlockDevice) -> str:
    sector = "" if block.sector_size is None else f", sector-size: {block.sector_size}"
    return f"{block.name} -> {block.host_device}{sector}"


def _net(net: NetIf) -> str:
    mac = "" if net.mac is None else "@" + ":".join(f"{b:02x}" for b in net.mac)
    return f"{net.name} -> {net.host_bridge}{mac}"


def _common(args: UnikernelConfig | UnikernelArguments, boot_word: str) -> list[str]:
    blocks = ", ".join(_block(b) for b in sorted(args.blocks, key=lambda b: b.name))
    nets = ", ".join(_net(n) for n in sorted(args.bridges, key=lambda n: n.name))
    return [
        f"fail behaviour {fail_behaviour_text(args.fail_behaviour)}",
        f"startup at {_opt(args.startup)}",
        f"add_name {bool_text(args.add_name)}",
        "CPUids " + ", ".join(str(c) for c in sorted(args.cpuids)),
        f"{args.memory} MB memory",
        f"block devices {blocks}",
        f"bridge {nets}",
        f"#cpus {args.numcpus if args.numcpus is not None else 1}",
        f"{boot_word} {_opt(args.linux_boot_partition)}",
    ]


def _config(config: UnikernelConfig) -> list[str]:
    typ = "solo5" if config.typ is Typ.SOLO5 else "BHyve"
    return [
        f"typ {typ}",
        f"compression {bool_text(config.compressed)} image {len(config.image)} bytes",
        *_common(config, "linux_boot"),
    ]


def describe_command(command: Command) -> list[str]:
    """The pieces of albatross's text for *command*, split at Format break hints."""
    match command:
        case ConsoleAdd(limit):
            return [f"console add (max unikernels {limit})"]
        case ConsoleSubscribe(since, count):
            what = f"since {rfc3339(since)}" if since is not None else f"number {count}"
            return [f"console subscribe {what}"]
        case ConsoleListInactive():
            return ["console list inactive available ringbuffers"]
        case StatsAdd(vmmdev, pid, taps):
            pairs = ", ".join(f"{bridge}: {tap}" for bridge, tap in taps)
            return [f"stats add: vmm device {vmmdev} pid {pid} taps {pairs}"]
        case StatsRemove():
            return ["stat remove"]
        case StatsSubscribe():
            return ["stat subscribe"]
        case StatsInitial():
            return ["stat initial"]
        case UnikernelInfo():
            return ["unikernel info"]
        case UnikernelCreate(config, force, _):
            pieces = _config(config)
            verb = "unikernel force create " if force else "unikernel create "
            return [verb + pieces[0], *pieces[1:]]
        case UnikernelDestroy():
            return ["unikernel destroy"]
        case UnikernelGet(level):
            return [f"unikernel get compress level {level}"]
        case UnikernelRestart(arguments, _):
            if arguments is None:
                return ["unikernel restart"]
            pieces = _common(arguments, "linux_boot_partition")
            return ["unikernel restart " + pieces[0], *pieces[1:]]
        case PolicyInfo():
            return ["policy info"]
        case PolicyAdd(policy):
            return [f"policy add {policy}"]
        case PolicyRemove():
            return ["policy remove"]
    return _describe_block(command)


def _describe_block(command: Command) -> list[str]:
    match command:
        case BlockInfo():
            return ["block info"]
        case BlockRemove():
            return ["block remove"]
        case BlockAddOld(size, compressed, data):
            shown = "no data" if data is None else str(len(data))
            return [f"old block add {size} (compressed {bool_text(compressed)} data {shown})"]
        case BlockSetOld(compressed, data):
            return [f"old block set compressed {bool_text(compressed)} {len(data)} bytes"]
        case BlockDumpOld(level):
            return [f"old block dump, compress level {level}"]
        case BlockDump(level):
            return [f"block dump, compress level {level}"]
        case BlockAdd(size):
            return [f"block add {size}"]
        case BlockSet(compressed):
            return [f"block set compressed {bool_text(compressed)}"]
    raise AssertionError(f"unknown command {command!r}")
