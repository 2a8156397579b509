"""console.sock and stat.sock: subscriptions that stream data until the peer leaves.

Console (albatross_console.ml ``handle``): ``subscribe`` replies
``subscribed`` (or ``waiting for VM``), replays the history (``count`` last
lines or lines ``since`` a time), then forwards live lines until the peer
sends anything or closes.  ``list inactive`` replies the stopped consoles
under a path.  Stats (albatross_stats.ml): ``subscribe`` replies
``subscribed``, then every interval a statistics message per unikernel
below the name; the connection keeps reading commands.

Subscribers are bounded queues: a subscriber that cannot keep up is dropped
like albatross drops one whose socket write fails.
"""

from __future__ import annotations

import logging

import trio

from core.wire import (
    ConsoleAdd,
    ConsoleData,
    ConsoleList,
    ConsoleListInactive,
    ConsoleSubscribe,
    Failure,
    Header,
    Message,
    Payload,
    StatsAdd,
    StatsInitial,
    StatsRemove,
    StatsSubscribe,
    StringReply,
)
from standin.daemon import Daemon, Subscriber
from standin.serving import read_message
from standin.stats import Watched
from transport.framed import FramedStream

__all__ = ["console_connection", "stats_connection", "stats_timer"]

log = logging.getLogger("standin")


async def _reply(conn: FramedStream, request: Message, payload: Payload) -> None:
    await conn.send_message(Message(request.header, payload))


# -- console ------------------------------------------------------------------------------


async def console_connection(daemon: Daemon, conn: FramedStream) -> None:
    request = await read_message(conn, daemon.config.idle_timeout)
    if request is None:
        return
    name, payload = request.header.name, request.payload
    if isinstance(payload, ConsoleListInactive):
        if not name.is_path:
            await _reply(conn, request, Failure("name used"))
            return
        listed = ConsoleList(tuple(daemon.consoles.list_inactive(name.path)))
        await _reply(conn, request, listed)
        return
    if not isinstance(payload, ConsoleSubscribe | ConsoleAdd):
        log.warning("console: unexpected %s, closing", type(payload).__name__)
        return
    if name.is_path:
        await _reply(conn, request, Failure("path used instead of name"))
        return
    if isinstance(payload, ConsoleAdd):
        # albatrossd's own request; ours is built in, and no fifo exists for an outside one.
        await _reply(conn, request, Failure("opening"))
        return
    await _subscribe(daemon, conn, request, payload)


async def _subscribe(
    daemon: Daemon, conn: FramedStream, request: Message, cmd: ConsoleSubscribe
) -> None:
    name = request.header.name
    subscriber = Subscriber()
    ring, text, dropped = daemon.consoles.subscribe(name, request.header.version, subscriber)
    for sub in dropped:
        sub.close()
    try:
        await _reply(conn, request, StringReply(text))
        if ring is not None:
            if cmd.count is not None:
                history = ring.read_last(cmd.count)
            else:
                assert cmd.since is not None
                history = ring.read_history(cmd.since)
            header = Header(name, 0, request.header.version)
            for when, line in history:
                await conn.send_message(Message(header, ConsoleData(when, line)))
        await _pump_until_peer_speaks(conn, subscriber)
    finally:
        daemon.consoles.unsubscribe(name, subscriber)
        subscriber.close()


async def _pump_until_peer_speaks(conn: FramedStream, subscriber: Subscriber) -> None:
    """Forward queued data until the subscriber is dropped or the peer sends anything/closes."""

    async def pump(cancel: trio.CancelScope) -> None:
        async for message in subscriber.receive:
            await conn.send_message(message)
        cancel.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(pump, nursery.cancel_scope)
        await conn.stream.receive_some(1)  # albatross: wait for the next read, then terminate
        nursery.cancel_scope.cancel()


# -- stats ---------------------------------------------------------------------------------


async def stats_timer(daemon: Daemon) -> None:
    """Every interval, one statistics message per watched unikernel to its subscribers."""
    while True:
        await trio.sleep(daemon.config.stats_interval)
        for subscriber, sub_name, message in daemon.stats.tick(daemon.clock()):
            if not subscriber.offer(message):
                daemon.stats.unsubscribe(sub_name, subscriber)


async def stats_connection(daemon: Daemon, conn: FramedStream) -> None:
    subscriber: Subscriber | None = None
    try:
        async with trio.open_nursery() as nursery:
            while True:
                timeout = float("inf") if subscriber else daemon.config.idle_timeout
                request = await read_message(conn, timeout)
                if request is None:
                    break
                if isinstance(request.payload, StatsSubscribe):
                    if subscriber is None:
                        subscriber = Subscriber()
                        nursery.start_soon(_stats_pump, conn, subscriber, nursery.cancel_scope)
                    name, version = request.header.name, request.header.version
                    old = daemon.stats.subscribe(name, version, subscriber)
                    if old is not None and old is not subscriber:
                        old.close()  # albatross #281: the newer subscriber wins
                    await _reply(conn, request, StringReply("subscribed"))
                    continue
                reply = _stats_command(daemon, request)
                await _reply(conn, request, reply)
                if isinstance(reply, Failure):
                    break
            nursery.cancel_scope.cancel()
    finally:
        if subscriber is not None:
            subscriber.close()


def _stats_command(daemon: Daemon, request: Message) -> Payload:
    """stats add/remove from an outside vmmd, or a refusal (albatross_stats_pure.ml)."""
    payload, name = request.payload, request.header.name
    if isinstance(payload, StatsAdd):
        watched = Watched(payload.vmmdev, payload.pid, payload.taps, 0, daemon.clock())
        daemon.stats.add(name, watched)
        return StringReply("added")
    if isinstance(payload, StatsRemove):
        daemon.stats.remove(name)
        return StringReply("removed")
    if isinstance(payload, StatsInitial):
        return Failure("unexpected message initial")
    return Failure("unexpected command")


async def _stats_pump(conn: FramedStream, subscriber: Subscriber, cancel: trio.CancelScope) -> None:
    async for message in subscriber.receive:
        await conn.send_message(message)
    cancel.cancel()  # replaced by a newer subscriber: albatross closes the old socket
