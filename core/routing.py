"""Where each command goes, how its reply comes back, and what a leaf may carry.

Every fact about a command's path through the endpoint is in :data:`ROUTES`,
one row per command type (albatross ``Vmm_commands.endpoint`` and the allow-list
of ``Vmm_tls.handle``; spec behaviour.md §1.6 and §2.5 step 6):

* ``socket`` - the daemon socket under ``<tmpdir>/util/``;
* ``mode`` - SINGLE (one reply), READ (a stream until the daemon closes) or
  DUMP (a stream ended by an empty block-data message);
* ``leaf_allowed`` - whether a client leaf certificate may carry the command;
* ``name`` - the text we use in logs and refusal reasons.

The one source of these facts: the endpoint relays by it, the client picks its
local socket and reads replies by it (``client.run``, ``client.session``), and the
stand-in serves the sockets named here.

Two per-value rules complete the table (:func:`uploads_image`,
:func:`streams_upward`): a create whose certificate carries an empty image is
followed by the image as a data stream; block set (and the legacy add/set with
empty data) is followed by a data stream that is relayed to vmmd.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

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
    UnikernelCreate,
    UnikernelDestroy,
    UnikernelGet,
    UnikernelInfo,
    UnikernelRestart,
)

__all__ = [
    "LEAF_ALLOWED_TEXT",
    "ROUTES",
    "ReplyMode",
    "Route",
    "Socket",
    "command_name",
    "route",
    "streams_upward",
    "uploads_image",
]


class Socket(enum.Enum):
    VMMD = "vmmd"
    CONSOLE = "console"
    STATS = "stat"

    @property
    def filename(self) -> str:
        return f"{self.value}.sock"


class ReplyMode(enum.Enum):
    SINGLE = "single"
    READ = "read"
    DUMP = "dump"


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    socket: Socket
    mode: ReplyMode
    leaf_allowed: bool


_V, _C, _S = Socket.VMMD, Socket.CONSOLE, Socket.STATS
_ONE, _READ, _DUMP = ReplyMode.SINGLE, ReplyMode.READ, ReplyMode.DUMP

ROUTES: dict[type[object], Route] = {
    ConsoleAdd: Route("console add", _C, _READ, False),
    ConsoleSubscribe: Route("console subscribe", _C, _READ, True),
    ConsoleListInactive: Route("console list-inactive", _C, _ONE, True),
    StatsAdd: Route("stats add", _S, _ONE, False),
    StatsRemove: Route("stats remove", _S, _ONE, False),
    StatsSubscribe: Route("stats subscribe", _S, _READ, True),
    StatsInitial: Route("stats initial", _S, _ONE, False),
    UnikernelInfo: Route("unikernel info", _V, _ONE, True),
    UnikernelCreate: Route("unikernel create", _V, _ONE, True),
    UnikernelDestroy: Route("unikernel destroy", _V, _ONE, True),
    UnikernelGet: Route("unikernel get", _V, _ONE, True),
    UnikernelRestart: Route("unikernel restart", _V, _ONE, True),
    PolicyInfo: Route("policy info", _V, _ONE, True),
    PolicyAdd: Route("policy add", _V, _ONE, False),
    PolicyRemove: Route("policy remove", _V, _ONE, False),
    BlockInfo: Route("block info", _V, _ONE, True),
    BlockAdd: Route("block add", _V, _ONE, True),
    BlockRemove: Route("block remove", _V, _ONE, True),
    BlockAddOld: Route("old block add", _V, _ONE, True),
    BlockSetOld: Route("old block set", _V, _ONE, True),
    BlockDumpOld: Route("old block dump", _V, _ONE, True),
    BlockDump: Route("block dump", _V, _DUMP, True),
    BlockSet: Route("block set", _V, _ONE, True),
}

#: Said in a refusal so the user learns what would have been accepted.
LEAF_ALLOWED_TEXT = ", ".join(r.name for r in ROUTES.values() if r.leaf_allowed)


def route(command: Command) -> Route:
    return ROUTES[type(command)]


def command_name(command: Command) -> str:
    if isinstance(command, UnikernelCreate) and command.force:
        return "unikernel force-create"
    return route(command).name


def uploads_image(command: Command) -> bool:
    """A create whose certificate carries no image: the image follows as a data stream."""
    return isinstance(command, UnikernelCreate) and command.config.image == b""


def streams_upward(command: Command) -> bool:
    """Commands after which the client's data stream is relayed to vmmd (vmm_tls_lwt)."""
    if isinstance(command, BlockSet):
        return True
    if isinstance(command, BlockAddOld):
        return command.data == b""
    if isinstance(command, BlockSetOld):
        return command.data == b""
    return False
