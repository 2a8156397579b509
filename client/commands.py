"""From command-line values to albatross commands, names and leaf CNs (pure).

The parsing rules and texts are albatross-client's (``client/albatross_client.ml``
``create_unikernel``, ``restart``, ``policy``; ``command-line`` converters in
``albatross_client.ml``): ``--block name[:device][@sector]``,
``--net name[:bridge][@mac]``, sets of device names, non-empty CPU ids, and the
leaf-CN rule of remote and CSR mode.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from client.manifest import check_devices
from core.errors import UsageError
from core.wire import (
    BlockDevice,
    Command,
    Name,
    NetIf,
    Policy,
    PolicyAdd,
    Quit,
    Restart,
    Typ,
    UnikernelArguments,
    UnikernelConfig,
    UnikernelCreate,
    UnikernelRestart,
    check_label,
)
from core.wire.compress import compress
from core.wire.messages import POLICY_COMMANDS

__all__ = [
    "UnikernelOptions",
    "build_arguments",
    "build_create",
    "build_policy",
    "default_level",
    "leaf_cn",
    "parse_block",
    "parse_mac",
    "parse_name",
    "parse_net",
    "parse_path",
]

_MAC = re.compile(r"[0-9A-Fa-f]{2}([:-])[0-9A-Fa-f]{2}(\1[0-9A-Fa-f]{2}){4}")


def parse_name(text: str) -> Name:
    """A unikernel or block name as albatross reads it (``Name.of_string``)."""
    if text == "":
        raise UsageError("empty name: give a name like tick1 or alice:tick1")
    if text.endswith(":"):
        parts, label = text[:-1].split(":"), None
    else:
        parts = text.split(":")
        label = parts.pop()
    if parts and parts[0] == "":
        parts = parts[1:]
    return Name.of(tuple(parts), label)


def parse_path(text: str) -> Name:
    """A path such as ``alice`` or ``alice:bob`` (``Name.Path.of_string``), as a path name."""
    parts = text.split(":")
    if parts and parts[0] == "":
        parts = parts[1:]
    if parts and parts[-1] == "":
        parts = parts[:-1]
    return Name.of(tuple(parts), None)


def _split_device(text: str, what: str) -> tuple[str, str | None]:
    parts = text.split(":")
    if len(parts) == 1:
        return text, None
    if len(parts) == 2:
        return parts[0], parts[1]
    raise UsageError(f"{what} {text!r}: format is 'name' or 'name:device-name'")


def parse_block(text: str) -> BlockDevice:
    """``--block name[:device][@sector-size]``."""
    pieces = text.split("@")
    if len(pieces) > 2:
        raise UsageError("format is 'name[@sector-size]' or 'name:block-device-name[@sector-size]'")
    sector: int | None = None
    if len(pieces) == 2:
        try:
            sector = int(pieces[1])
        except ValueError:
            raise UsageError("sector size must be an integer") from None
        if sector < 512 or sector & (sector - 1):
            raise UsageError("sector size must be a power of two greater than or equal 512")
    name, device = _split_device(pieces[0], "block")
    return BlockDevice(name, device, sector)


def parse_mac(text: str) -> bytes:
    if not _MAC.fullmatch(text):
        raise UsageError(f"MAC address {text!r}: write six hex octets like 00:80:41:aa:bb:cc")
    return bytes(int(p, 16) for p in re.split("[:-]", text))


def parse_net(text: str) -> NetIf:
    """``--net [name:]bridge[@mac]``."""
    pieces = text.split("@")
    if len(pieces) > 2:
        raise UsageError("format is [name:]bridge[@mac]")
    mac = parse_mac(pieces[1]) if len(pieces) == 2 else None
    name, bridge = _split_device(pieces[0], "network")
    return NetIf(name, bridge, mac)


def _unique(names: Sequence[str], what: str) -> None:
    if len(set(names)) != len(names):
        raise UsageError(f"{what} must be a set")


def default_level(level: int | None, local: bool) -> int:
    """``--compression-level``: 0 for local sockets, 9 for remote and CSR."""
    if level is None:
        return 0 if local else 9
    if not 0 <= level <= 9:
        raise UsageError(f"compression level {level} is not within 0..9")
    return level


@dataclass(frozen=True)
class UnikernelOptions:
    """The argument flags shared by ``create`` and ``restart --replace-arguments``."""

    cpuids: Sequence[int] = (0,)
    memory: int = 32
    argv: Sequence[str] = ()
    blocks: Sequence[BlockDevice] = ()
    nets: Sequence[NetIf] = ()
    startup: int | None = None
    no_add_name: bool = False
    restart_on_fail: bool = False
    exit_codes: Sequence[int] = ()
    numcpus: int = 1
    linux_boot: str | None = None

    def check(self, cpu_text: str = "CPUids may not be empty") -> None:
        _unique([n.name for n in self.nets], "Bridge names")
        _unique([b.name for b in self.blocks], "Block devices")
        if not self.cpuids:
            raise UsageError(cpu_text)

    @property
    def fail_behaviour(self) -> Quit | Restart:
        return Restart(frozenset(self.exit_codes)) if self.restart_on_fail else Quit()


def build_create(
    opts: UnikernelOptions, image: bytes, level: int, force: bool, typ: Typ = Typ.SOLO5
) -> UnikernelCreate:
    """``create``: check names and manifest, compress the image at *level* (0 = raw)."""
    opts.check()
    if typ is Typ.SOLO5:
        check_devices(image, [n.name for n in opts.nets], [b.name for b in opts.blocks])
        compressed = level > 0
        data = compress(image, level) if compressed else image
    else:
        compressed, data = False, b""
    config = UnikernelConfig(
        image=data,
        memory=opts.memory,
        cpuids=frozenset(opts.cpuids),
        compressed=compressed,
        typ=typ,
        fail_behaviour=opts.fail_behaviour,
        startup=opts.startup,
        add_name=not opts.no_add_name,
        blocks=frozenset(opts.blocks),
        bridges=frozenset(opts.nets),
        argv=tuple(opts.argv) if opts.argv else None,
        numcpus=opts.numcpus,
        linux_boot_partition=opts.linux_boot,
    )
    return UnikernelCreate(config, force=force)


def build_arguments(opts: UnikernelOptions | None) -> UnikernelRestart:
    """``restart``: keep the arguments (None) or replace all of them."""
    if opts is None:
        return UnikernelRestart(None)
    opts.check("CPUids cannot be empty")
    return UnikernelRestart(
        UnikernelArguments(
            memory=opts.memory,
            cpuids=frozenset(opts.cpuids),
            fail_behaviour=opts.fail_behaviour,
            startup=opts.startup,
            add_name=not opts.no_add_name,
            blocks=frozenset(opts.blocks),
            bridges=frozenset(opts.nets),
            argv=tuple(opts.argv) if opts.argv else None,
            numcpus=opts.numcpus,
            linux_boot_partition=opts.linux_boot,
        )
    )


def build_policy(
    unikernels: int,
    memory: int,
    cpus: Sequence[int],
    block: int | None,
    bridges: Sequence[str],
    warn: Callable[[str], None],
) -> PolicyAdd:
    """``add-policy``: the command; albatross's warnings go to *warn*; raises if unusable."""
    if len(set(bridges)) != len(bridges):
        warn("Bridges is not a set")
    if len(set(cpus)) != len(cpus):
        warn("CPUids is not a set")
    policy = Policy(unikernels, frozenset(cpus), memory, block, frozenset(bridges))
    policy.check_usable()
    if not policy.bridges:
        warn("policy without any network access")
    return PolicyAdd(policy)


def leaf_cn(command: Command, name: Name) -> str:
    """The CN of the request leaf or CSR (``jump``'s ``name_str``).

    Policy commands carry their path (root: ``""``); everything else must have the
    root path, because the path comes from the CA chain: its label, or ``.``.
    """
    if isinstance(command, POLICY_COMMANDS):
        return ":".join(name.path)
    if name.path:
        raise UsageError("non-empty path")
    return name.label if name.label is not None else "."


def check_policy_label(text: str) -> str:
    return check_label(text)
