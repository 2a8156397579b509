# No name collisions between a delegate's path and its parent's objects (issue 6 point 3).
#
# albatross keys its tries by path + label, so the path-only name ``alice:``
# (a leaf with CN "." or ":" under delegate alice) has the same key as the
# operator's unikernel or block ``:alice`` (behaviour.md §1.1, §9.3).  Through
# it a delegate can destroy, restart, fetch or dump the parent's object, and
# info/stats at its path include it.  (Reproduced on the stand-in: block remove
# at ``alice:`` removes the root's block ``:alice``.)
#
# Three rules close it:
# * a command that acts on one object needs a real name: a path-only name is
#   refused (check_object_name) - path-only names stay fine for listings;
# * a listing at a non-root path drops the entry whose relative name is the
#   path itself (``:`` relative to the path): that object is the parent's;
# * a stats subscription at a non-root path is a stream the endpoint does not
#   filter, and the stats daemon keys subscribers by name: it would report the
#   parent's same-named unikernel and replace the parent's subscriber there.
#   It is refused while that unikernel exists (check_stats_path, given the
#   host's unikernels as the daemon reports them).
# Pure: request or payload in, refusal or filtered payload out.
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from core.authorize import Request
from core.routing import command_name
from core.wire import (
    BlockAdd,
    BlockAddOld,
    BlockDeviceList,
    BlockDump,
    BlockDumpOld,
    BlockRemove,
    BlockSet,
    BlockSetOld,
    ConsoleList,
    ConsoleSubscribe,
    Name,
    Payload,
    StatsSubscribe,
    UnikernelCreate,
    UnikernelDestroy,
    UnikernelGet,
    UnikernelInfoList,
    UnikernelRestart,
)
from tlsendpoint.security import SecurityRefusal

__all__ = [
    "OBJECT_COMMANDS",
    "NameRefusal",
    "check_object_name",
    "check_stats_path",
    "filter_listing",
    "is_parents",
    "parents_object",
]

#: Commands that act on exactly one unikernel or block device.
OBJECT_COMMANDS: frozenset[type[object]] = frozenset(
    {
        UnikernelCreate,
        UnikernelDestroy,
        UnikernelRestart,
        UnikernelGet,
        ConsoleSubscribe,
        BlockAdd,
        BlockRemove,
        BlockSet,
        BlockDump,
        BlockAddOld,
        BlockSetOld,
        BlockDumpOld,
    }
)


class NameRefusal(SecurityRefusal):
    """A single-object command with a path-only name."""


def check_object_name(request: Request) -> None:
    """Refuse a single-object command whose name is a path (leaf CN ``.``/``:``/none)."""
    if type(request.command) in OBJECT_COMMANDS and request.name.is_path:
        raise NameRefusal(
            f"{command_name(request.command)} needs a unikernel or block name, but the leaf "
            f"certificate names the path {request.name} (CN '.', ':' or none); that name would "
            "reach the object of the same name one level up: put the object's name in the CN"
        )


def parents_object(request: Request) -> Name | None:
    """For a stats subscription at a delegate's path, the parent's same-keyed name, else None."""
    at = request.name
    if not isinstance(request.command, StatsSubscribe) or at.is_root or not at.is_path:
        return None
    return Name(at.path[:-1], at.path[-1])


def check_stats_path(request: Request, running: Iterable[Name]) -> None:
    """Refuse a stats subscription at a path whose key is the parent's running unikernel."""
    parent = parents_object(request)
    if parent is not None and any(name.key == parent.key for name in running):
        raise NameRefusal(
            f"stats subscribe at the path {request.name} would also report (and take over the "
            f"subscription of) the unikernel {parent} one level up, which has the same daemon "
            "key: subscribe per unikernel (its name in the CN)"
        )


def is_parents(relative: Name, at: Name) -> bool:
    """Whether an entry named *relative* in a listing at path *at* is the parent's object."""
    return not at.is_root and at.is_path and relative.is_root


def filter_listing(at: Name, payload: Payload) -> Payload:
    """*payload* without the parent's object, for a listing requested at *at*."""
    if at.is_root or not at.is_path:
        return payload
    if isinstance(payload, UnikernelInfoList):
        kept = tuple(e for e in payload.unikernels if not e[0].is_root)
        return replace(payload, unikernels=kept)
    if isinstance(payload, BlockDeviceList):
        return replace(payload, devices=tuple(d for d in payload.devices if not d.name.is_root))
    if isinstance(payload, ConsoleList):
        return replace(payload, consoles=tuple(n for n in payload.consoles if not n.is_root))
    return payload
