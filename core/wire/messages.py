"""Typed values for every albatross wire message (protocol version 5).

These are plain frozen dataclasses and enums, in the shape of h11's events:
the codec (:mod:`core.wire.grammar`) turns them into DER and back, and
the rest of the project only ever handles these values.

Where albatross decodes an older variant of a message into the current record
(old create configs, old restart arguments, old info replies), we keep the
variant in a ``variant`` field so that re-encoding gives back the same bytes.

Fields that albatross always writes but tolerates absent when reading (the
``cpus`` of a config, ``started`` of an info record) are ``Optional`` here:
``None`` means "absent on the wire"; constructors default to the value
albatross writes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeAlias

from core.errors import UsageError
from core.wire.names import Name
from core.wire.policy import Policy

__all__ = [
    "BLOCK_COMMANDS",
    "CONSOLE_COMMANDS",
    "DATA_TYPES",
    "POLICY_COMMANDS",
    "STATS_COMMANDS",
    "SUCCESS_TYPES",
    "UNIKERNEL_COMMANDS",
    "VERSION",
    "ArgsVariant",
    "BlockAdd",
    "BlockAddOld",
    "BlockCommand",
    "BlockData",
    "BlockDevice",
    "BlockDeviceEntry",
    "BlockDeviceImage",
    "BlockDeviceList",
    "BlockDump",
    "BlockDumpOld",
    "BlockInfo",
    "BlockInfoRecord",
    "BlockRemove",
    "BlockSet",
    "BlockSetOld",
    "Command",
    "ConfigVariant",
    "ConsoleAdd",
    "ConsoleCommand",
    "ConsoleData",
    "ConsoleList",
    "ConsoleListInactive",
    "ConsoleSubscribe",
    "Data",
    "Empty",
    "FailBehaviour",
    "Failure",
    "Header",
    "Ifdata",
    "InfoVariant",
    "KinfoMem",
    "Message",
    "NetIf",
    "NetInfoRecord",
    "OldBlockDeviceImage",
    "Payload",
    "PolicyAdd",
    "PolicyCommand",
    "PolicyInfo",
    "PolicyList",
    "PolicyRemove",
    "Quit",
    "Restart",
    "Rusage",
    "StatsAdd",
    "StatsCommand",
    "StatsData",
    "StatsInitial",
    "StatsRemove",
    "StatsSubscribe",
    "StringReply",
    "Success",
    "Timeval",
    "Typ",
    "UnikernelArguments",
    "UnikernelCommand",
    "UnikernelConfig",
    "UnikernelCreate",
    "UnikernelDestroy",
    "UnikernelGet",
    "UnikernelImage",
    "UnikernelInfo",
    "UnikernelInfoList",
    "UnikernelInfoRecord",
    "UnikernelRestart",
    "is_command",
    "is_data",
    "is_success",
]

#: The only wire protocol version albatross 2.7 speaks (``AV5``).
VERSION = 5


# -- building blocks ------------------------------------------------------


class Typ(enum.Enum):
    """The kind of virtual machine."""

    SOLO5 = 0
    BHYVE = 1


@dataclass(frozen=True, slots=True)
class Quit:
    """Fail behaviour: do not restart."""


@dataclass(frozen=True, slots=True)
class Restart:
    """Fail behaviour: restart on these exit codes (empty = on any exit code)."""

    exit_codes: frozenset[int] = frozenset()


FailBehaviour: TypeAlias = Quit | Restart


@dataclass(frozen=True, slots=True)
class BlockDevice:
    """A block device in a config: device name in the unikernel, host device, sector size."""

    name: str
    device: str | None = None
    sector_size: int | None = None

    @property
    def host_device(self) -> str:
        return self.device if self.device is not None else self.name


@dataclass(frozen=True, slots=True)
class NetIf:
    """A network interface in a config: device name in the unikernel, bridge, MAC."""

    name: str
    bridge: str | None = None
    mac: bytes | None = None

    def __post_init__(self) -> None:
        if self.mac is not None and len(self.mac) != 6:
            raise UsageError(
                f"network {self.name}: a MAC address has 6 octets, not {len(self.mac)}"
            )

    @property
    def host_bridge(self) -> str:
        return self.bridge if self.bridge is not None else self.name


class ConfigVariant(enum.Enum):
    """Which unikernel-config encoding a create command used."""

    CURRENT = "current"  # create [20] / force-create [21]
    V4 = "v4"  # create-OLD2 [16] / [17]
    V3 = "v3"  # create-OLD [9] / [10]


@dataclass(frozen=True, slots=True)
class UnikernelConfig:
    """Everything albatross needs to run a unikernel (``Unikernel.config``)."""

    image: bytes
    memory: int = 32
    cpuids: frozenset[int] = frozenset({0})
    compressed: bool = False
    typ: Typ = Typ.SOLO5
    fail_behaviour: FailBehaviour = Quit()
    startup: int | None = None
    add_name: bool = True
    blocks: frozenset[BlockDevice] = frozenset()
    bridges: frozenset[NetIf] = frozenset()
    argv: tuple[str, ...] | None = None
    numcpus: int | None = 1
    linux_boot_partition: str | None = None

    def effective_bridges(self) -> list[str]:
        return sorted(n.host_bridge for n in self.bridges)


class ArgsVariant(enum.Enum):
    """Which restart-arguments encoding a restart command used."""

    CURRENT = "current"  # [3]
    V1 = "v1"  # [2]
    V0 = "v0"  # [1]


@dataclass(frozen=True, slots=True)
class UnikernelArguments:
    """Settings that a restart may replace (``Unikernel.arguments``)."""

    memory: int
    cpuids: frozenset[int] = frozenset({0})
    fail_behaviour: FailBehaviour = Quit()
    startup: int | None = None
    add_name: bool = True
    blocks: frozenset[BlockDevice] = frozenset()
    bridges: frozenset[NetIf] = frozenset()
    argv: tuple[str, ...] | None = None
    numcpus: int | None = 1
    linux_boot_partition: str | None = None


# -- commands -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConsoleAdd:
    """vmmd -> console: start reading a unikernel's console; *limit* ring buffers on its path."""

    limit: int


@dataclass(frozen=True, slots=True)
class ConsoleSubscribe:
    """Subscribe to a console: history since a time, or the last *count* lines."""

    since: datetime | None = None
    count: int | None = None

    def __post_init__(self) -> None:
        if (self.since is None) == (self.count is None):
            raise UsageError("console subscribe takes exactly one of since and count")


@dataclass(frozen=True, slots=True)
class ConsoleListInactive:
    """List the consoles of stopped unikernels under a path."""


@dataclass(frozen=True, slots=True)
class StatsAdd:
    """vmmd -> stats: watch a process (vmm device, pid, (bridge, tap) pairs)."""

    vmmdev: str
    pid: int
    taps: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class StatsRemove:
    """vmmd -> stats: stop watching."""


@dataclass(frozen=True, slots=True)
class StatsSubscribe:
    """Subscribe to periodic statistics."""


@dataclass(frozen=True, slots=True)
class StatsInitial:
    """stats -> vmmd: make this connection vmmd's stats channel."""


class InfoVariant(enum.Enum):
    """Which info command (and so which reply encoding) was used."""

    CURRENT = "current"  # info [19] -> reply [13]
    V5 = "v5"  # info-OLD5 [18] -> reply [11]
    V4 = "v4"  # info-OLD4 [15] -> reply [9]


@dataclass(frozen=True, slots=True)
class UnikernelInfo:
    """Describe the unikernels at or below the header name."""

    variant: InfoVariant = InfoVariant.CURRENT


@dataclass(frozen=True, slots=True)
class UnikernelCreate:
    """Create (or, with *force*, replace) the unikernel named in the header."""

    config: UnikernelConfig
    force: bool = False
    variant: ConfigVariant = ConfigVariant.CURRENT


@dataclass(frozen=True, slots=True)
class UnikernelDestroy:
    """Destroy the unikernel named in the header."""


@dataclass(frozen=True, slots=True)
class UnikernelGet:
    """Return the unikernel's image, compressed with *level* (0 = uncompressed)."""

    level: int


@dataclass(frozen=True, slots=True)
class UnikernelRestart:
    """Restart, keeping the arguments (``None``) or replacing them."""

    arguments: UnikernelArguments | None = None
    variant: ArgsVariant = ArgsVariant.CURRENT


@dataclass(frozen=True, slots=True)
class PolicyInfo:
    """List the policies at and below the header path."""


@dataclass(frozen=True, slots=True)
class PolicyAdd:
    """Insert or replace the policy at the header path."""

    policy: Policy


@dataclass(frozen=True, slots=True)
class PolicyRemove:
    """Remove the policy at the header path."""


@dataclass(frozen=True, slots=True)
class BlockInfo:
    """Describe one block device, or all below a path."""


@dataclass(frozen=True, slots=True)
class BlockAdd:
    """Create an empty block device of *size* MB."""

    size: int


@dataclass(frozen=True, slots=True)
class BlockRemove:
    """Remove a block device."""


@dataclass(frozen=True, slots=True)
class BlockAddOld:
    """Legacy: create a block device with optional inline data."""

    size: int
    compressed: bool
    data: bytes | None = None


@dataclass(frozen=True, slots=True)
class BlockSetOld:
    """Legacy: replace a block device's content with inline data."""

    compressed: bool
    data: bytes


@dataclass(frozen=True, slots=True)
class BlockDumpOld:
    """Legacy: return a block device's content inline."""

    level: int


@dataclass(frozen=True, slots=True)
class BlockDump:
    """Stream a block device's content back, compressed with *level*."""

    level: int


@dataclass(frozen=True, slots=True)
class BlockSet:
    """Replace a block device's content with the data stream that follows."""

    compressed: bool


ConsoleCommand: TypeAlias = ConsoleAdd | ConsoleSubscribe | ConsoleListInactive
StatsCommand: TypeAlias = StatsAdd | StatsRemove | StatsSubscribe | StatsInitial
UnikernelCommand: TypeAlias = (
    UnikernelInfo | UnikernelCreate | UnikernelDestroy | UnikernelGet | UnikernelRestart
)
PolicyCommand: TypeAlias = PolicyInfo | PolicyAdd | PolicyRemove
BlockCommand: TypeAlias = (
    BlockInfo
    | BlockAdd
    | BlockRemove
    | BlockAddOld
    | BlockSetOld
    | BlockDumpOld
    | BlockDump
    | BlockSet
)
Command: TypeAlias = ConsoleCommand | StatsCommand | UnikernelCommand | PolicyCommand | BlockCommand

CONSOLE_COMMANDS = (ConsoleAdd, ConsoleSubscribe, ConsoleListInactive)
STATS_COMMANDS = (StatsAdd, StatsRemove, StatsSubscribe, StatsInitial)
UNIKERNEL_COMMANDS = (
    UnikernelInfo,
    UnikernelCreate,
    UnikernelDestroy,
    UnikernelGet,
    UnikernelRestart,
)
POLICY_COMMANDS = (PolicyInfo, PolicyAdd, PolicyRemove)
BLOCK_COMMANDS = (
    BlockInfo,
    BlockAdd,
    BlockRemove,
    BlockAddOld,
    BlockSetOld,
    BlockDumpOld,
    BlockDump,
    BlockSet,
)


# -- success replies ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BlockInfoRecord:
    """How a unikernel uses a block device (inside an info record)."""

    name: str
    device: str
    sector_size: int
    size: int


@dataclass(frozen=True, slots=True)
class NetInfoRecord:
    """How a unikernel is attached to a bridge (inside an info record)."""

    name: str
    bridge: str
    mac: bytes

    def __post_init__(self) -> None:
        if len(self.mac) != 6:
            raise UsageError(
                f"network {self.name}: a MAC address has 6 octets, not {len(self.mac)}"
            )


@dataclass(frozen=True, slots=True)
class UnikernelInfoRecord:
    """A running unikernel as described by an info reply (``Unikernel.info``)."""

    typ: Typ
    fail_behaviour: FailBehaviour
    cpuids: frozenset[int]
    memory: int
    digest: bytes
    startup: int | None = None
    blocks: frozenset[BlockInfoRecord] = frozenset()
    bridges: frozenset[NetInfoRecord] = frozenset()
    argv: tuple[str, ...] | None = None
    started: datetime | None = None
    numcpus: int | None = 1
    linux_boot_partition: str | None = None


@dataclass(frozen=True, slots=True)
class BlockDeviceEntry:
    """One entry of a block info reply."""

    name: Name
    size: int
    active: bool


@dataclass(frozen=True, slots=True)
class Empty:
    """Success with nothing to say."""


@dataclass(frozen=True, slots=True)
class StringReply:
    """Success with a message, e.g. ``created unikernel``."""

    text: str


@dataclass(frozen=True, slots=True)
class PolicyList:
    """Reply to policy info: (path name, policy) pairs."""

    policies: tuple[tuple[Name, Policy], ...]


@dataclass(frozen=True, slots=True)
class BlockDeviceList:
    """Reply to block info."""

    devices: tuple[BlockDeviceEntry, ...]


@dataclass(frozen=True, slots=True)
class UnikernelImage:
    """Reply to get: the image, compressed or not."""

    compressed: bool
    image: bytes


@dataclass(frozen=True, slots=True)
class OldBlockDeviceImage:
    """Reply to the legacy dump: the whole block device inline."""

    compressed: bool
    image: bytes


@dataclass(frozen=True, slots=True)
class UnikernelInfoList:
    """Reply to info: (name, record) pairs, in the encoding the command asked for."""

    unikernels: tuple[tuple[Name, UnikernelInfoRecord], ...]
    variant: InfoVariant = InfoVariant.CURRENT


@dataclass(frozen=True, slots=True)
class BlockDeviceImage:
    """First reply to a block dump; block data messages follow."""

    compressed: bool


@dataclass(frozen=True, slots=True)
class ConsoleList:
    """Reply to console list-inactive."""

    consoles: tuple[Name, ...]


Success: TypeAlias = (
    Empty
    | StringReply
    | PolicyList
    | BlockDeviceList
    | UnikernelImage
    | OldBlockDeviceImage
    | UnikernelInfoList
    | BlockDeviceImage
    | ConsoleList
)

SUCCESS_TYPES = (
    Empty,
    StringReply,
    PolicyList,
    BlockDeviceList,
    UnikernelImage,
    OldBlockDeviceImage,
    UnikernelInfoList,
    BlockDeviceImage,
    ConsoleList,
)


@dataclass(frozen=True, slots=True)
class Failure:
    """A failure reply with albatross's human-readable reason."""

    message: str


# -- data -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Timeval:
    seconds: int
    microseconds: int


@dataclass(frozen=True, slots=True)
class Rusage:
    """getrusage(2) of a unikernel process."""

    utime: Timeval
    stime: Timeval
    maxrss: int = 0
    ixrss: int = 0
    idrss: int = 0
    isrss: int = 0
    minflt: int = 0
    majflt: int = 0
    nswap: int = 0
    inblock: int = 0
    outblock: int = 0
    msgsnd: int = 0
    msgrcv: int = 0
    nsignals: int = 0
    nvcsw: int = 0
    nivcsw: int = 0


@dataclass(frozen=True, slots=True)
class KinfoMem:
    """Memory figures of a process (FreeBSD kinfo_proc, or /proc on Linux)."""

    vsize: int
    rss: int
    tsize: int
    dsize: int
    ssize: int
    runtime: int
    cow: int
    start: Timeval


@dataclass(frozen=True, slots=True)
class Ifdata:
    """Counters of one network interface."""

    bridge: str
    flags: int = 0
    send_length: int = 0
    max_send_length: int = 0
    send_drops: int = 0
    mtu: int = 0
    baudrate: int = 0
    input_packets: int = 0
    input_errors: int = 0
    output_packets: int = 0
    output_errors: int = 0
    collisions: int = 0
    input_bytes: int = 0
    output_bytes: int = 0
    input_mcast: int = 0
    output_mcast: int = 0
    input_dropped: int = 0
    output_dropped: int = 0


@dataclass(frozen=True, slots=True)
class StatsData:
    """One statistics sample of one unikernel."""

    rusage: Rusage
    ifdata: tuple[Ifdata, ...] = ()
    vmm_stats: tuple[tuple[str, int], ...] | None = None
    kinfo_mem: KinfoMem | None = None


@dataclass(frozen=True, slots=True)
class ConsoleData:
    """One console line (no trailing newline; may hold any bytes, kept via surrogateescape)."""

    timestamp: datetime
    line: str


@dataclass(frozen=True, slots=True)
class BlockData:
    """A piece of a block dump; ``data is None`` is the end marker (no-data)."""

    data: bytes | None


Data: TypeAlias = StatsData | ConsoleData | BlockData
Payload: TypeAlias = Command | Success | Failure | Data

DATA_TYPES = (StatsData, ConsoleData, BlockData)


# -- the whole message ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Header:
    """Version, sequence number and subject name of a message."""

    name: Name
    sequence: int = 0
    version: int = VERSION


@dataclass(frozen=True, slots=True)
class Message:
    """One wire message: a header and a payload."""

    header: Header
    payload: Payload = field()


def is_command(payload: Payload) -> bool:
    return isinstance(
        payload,
        CONSOLE_COMMANDS + STATS_COMMANDS + UNIKERNEL_COMMANDS + POLICY_COMMANDS + BLOCK_COMMANDS,
    )


def is_success(payload: Payload) -> bool:
    return isinstance(payload, SUCCESS_TYPES)


def is_data(payload: Payload) -> bool:
    return isinstance(payload, DATA_TYPES)
