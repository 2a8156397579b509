# What the security checks ask vmmd: the host's policies, unikernels and block devices.
#
# The quota check (quotaguard.py) needs the whole host's usage and the root policy as
# the daemon reports them now; the stats-path rule (rules/naming.py) needs the host's
# unikernel names.  Each query is one command on a short connection of its own, under
# a deadline (the endpoint's --daemon-timeout), with the endpoint's sequence numbers.
#
# Fail closed: a query that gets no reply, or a reply of another kind than asked for,
# becomes a SecurityRefusal whose text says which query and why - the request is
# refused, since quotas that cannot be checked are not granted.
#
# Imports: the protocol core, the endpoint's framed I/O and unix sockets, and the quota
# rule that reads usage from the replies; no state store, no guard, no gate.
from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

from core.errors import AlbatrossError
from core.routing import command_name
from core.wire import (
    DEFAULT_MAX_FRAME,
    ROOT,
    BlockDeviceList,
    BlockInfo,
    Command,
    Failure,
    Header,
    Message,
    Name,
    Payload,
    Policy,
    PolicyInfo,
    PolicyList,
    UnikernelInfo,
    UnikernelInfoList,
)
from tlsendpoint.security import SecurityRefusal
from tlsendpoint.security.rules.quota import Usage, root_policy_from, usage_from_replies
from transport.framed import FramedStream
from transport.unix import open_unix

__all__ = ["QUERY_TIMEOUT", "Query", "daemon_query", "host_unikernels", "host_usage"]

#: Sends one command to vmmd and returns the reply's payload.
Query = Callable[[Name, Command], Awaitable[Payload]]

#: Default deadline for one usage query (connect, send, reply); the endpoint passes its
#: ``Limits.daemon_timeout``.
QUERY_TIMEOUT = 120.0


def daemon_query(
    vmmd_socket: Path,
    next_sequence: Callable[[], int],
    timeout: float = QUERY_TIMEOUT,
    max_frame: int = DEFAULT_MAX_FRAME,
) -> Query:
    """A :data:`Query` that asks vmmd on its own short connection, under *timeout*.

    Any failure to get a reply becomes a :class:`SecurityRefusal` (the request is
    refused: quotas that cannot be checked are not granted).
    """

    async def query(name: Name, command: Command) -> Payload:
        what = f"{command_name(command)} for {name}"
        try:
            with trio.fail_after(timeout):
                stream = await open_unix(str(vmmd_socket))
                daemon = FramedStream(stream, max_frame, "vmmd")
                try:
                    await daemon.send_message(Message(Header(name, next_sequence()), command))
                    return (await daemon.receive_message()).payload
                finally:
                    await trio.aclose_forcefully(stream)
        except trio.TooSlowError:
            raise SecurityRefusal(
                f"cannot check quotas: vmmd did not answer {what} within {timeout:g} s"
            ) from None
        except (OSError, AlbatrossError) as exc:
            detail = exc.message if isinstance(exc, AlbatrossError) else str(exc)
            raise SecurityRefusal(f"cannot check quotas: asking vmmd {what}: {detail}") from None

    return query


def _unexpected(what: str, reply: Payload) -> SecurityRefusal:
    detail = reply.message if isinstance(reply, Failure) else type(reply).__name__
    return SecurityRefusal(f"cannot check quotas: the daemon answered {what} with {detail}")


async def host_usage(query: Query) -> tuple[Policy | None, Usage]:
    """The root policy and everything running on the host, as vmmd reports them now."""
    policies = await query(ROOT, PolicyInfo())
    info = await query(ROOT, UnikernelInfo())
    blocks = await query(ROOT, BlockInfo())
    root = root_policy_from(policies) if isinstance(policies, PolicyList) else None
    if not isinstance(info, UnikernelInfoList):
        raise _unexpected("unikernel info", info)
    if not isinstance(blocks, BlockDeviceList):
        raise _unexpected("block info", blocks)
    return root, usage_from_replies(ROOT, info, blocks)


async def host_unikernels(query: Query) -> list[Name]:
    """The names of every unikernel on the host, as vmmd reports them now."""
    info = await query(ROOT, UnikernelInfo())
    if not isinstance(info, UnikernelInfoList):
        raise _unexpected("unikernel info", info)
    return [name for name, _ in info.unikernels]
