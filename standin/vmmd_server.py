"""vmmd.sock: carry out what :class:`~standin.vmmd.Vmmd` decides (albatrossd.ml ``handle``).

The request is decided under the daemon lock; replies copy the request
header.  A policy add leaves the connection open for the next command (the
endpoint sends policies, then the command); everything else replies once and
closes.  Destroy, restart and force-create release the lock while waiting
for the old process to exit.  ``stats initial`` turns the connection into the
stats channel of an external albatross-stats: it then receives ``stats add``
and ``stats remove`` for every unikernel start and exit.
"""

from __future__ import annotations

import logging

from core.errors import UsageError
from core.wire import (
    Empty,
    Failure,
    Message,
    Payload,
    StatsAdd,
    StringReply,
    encode_message,
)
from standin.blocks import (
    add_block,
    empty_block,
    read_block,
    receive_block,
    remove_block,
    send_block,
    write_block,
)
from standin.daemon import Daemon, Subscriber, Waiter
from standin.outcomes import (
    AddBlock,
    Create,
    DumpBlock,
    Outcome,
    ReadBlock,
    RemoveBlock,
    Reply,
    SetBlock,
    StatsChannel,
    Wait,
    WaitAndCreate,
    WriteBlock,
)
from standin.serving import read_message
from transport.framed import FramedStream

__all__ = ["vmmd_connection"]

log = logging.getLogger("standin")

#: How long vmmd waits for external albatross-stats to answer a stats add/remove.
STATS_REPLY_TIMEOUT = 10.0


async def vmmd_connection(daemon: Daemon, conn: FramedStream) -> None:
    while True:
        request = await read_message(conn, daemon.config.idle_timeout)
        if request is None:
            return
        if not await _request(daemon, conn, request):
            return


async def _reply(conn: FramedStream, request: Message, payload: Payload) -> None:
    """Send the reply; one the (old) encoding asked for cannot carry becomes a failure.

    albatross raises ("expected a single CPUid for v4 unikernel info") and drops the
    connection; a failure text tells the peer why.
    """
    try:
        body = encode_message(Message(request.header, payload))
    except UsageError as e:
        log.warning("reply to %s cannot be encoded: %s", request.header.name, e)
        body = encode_message(Message(request.header, Failure(f"cannot encode the reply: {e}")))
    await conn.send_frame(body)


async def _request(daemon: Daemon, conn: FramedStream, request: Message) -> bool:
    """Handle one request; True if the connection stays open for another."""
    waiter: Waiter | None = None
    outcome: Outcome
    # Replies are sent after the lock is released: a peer that does not read must not
    # hold up every other command (albatrossd writes some replies under its lock).
    async with daemon.lock:
        outcome = daemon.vmmd.handle(request.header, request.payload)
        daemon.wake_dropped()
        if daemon.vmmd.dirty:
            daemon.vmmd.dirty = False
            daemon.dump_state()
        immediate = await _under_lock(daemon, outcome)
        if isinstance(outcome, Wait | WaitAndCreate):
            daemon.terminate(outcome.name)
            waiter = Waiter()
            daemon.vmmd.register(outcome.name, waiter)
            daemon.wake_dropped()
    if immediate is not None:
        await _reply(conn, request, immediate)
        return False
    if isinstance(outcome, Reply):
        await _reply(conn, request, outcome.payload)
        return outcome.keep_open
    if isinstance(outcome, Wait | WaitAndCreate):
        assert waiter is not None
        exit = await waiter.wait()
        log.info("%s exited with %s", outcome.name, exit)
        async with daemon.lock:
            if isinstance(outcome, WaitAndCreate):
                payload = await daemon.create(outcome.name, outcome.config, needs_dump=True)
            else:
                daemon.dump_state()
                payload = StringReply("destroyed unikernel")
        await _reply(conn, request, payload)
    elif isinstance(outcome, SetBlock):
        await _reply(conn, request, await receive_block(daemon, conn, outcome))
    elif isinstance(outcome, DumpBlock):
        await send_block(daemon, conn, request, outcome)
    elif isinstance(outcome, StatsChannel):
        await _reply(conn, request, Empty())
        await _stats_channel(daemon, conn, request.header.sequence)
    return False


async def _under_lock(daemon: Daemon, outcome: Outcome) -> Payload | None:
    """Outcomes finished while holding the lock; their reply, else None."""
    if isinstance(outcome, Create):
        return await daemon.create(outcome.name, outcome.config, needs_dump=True)
    if isinstance(outcome, AddBlock):
        return add_block(daemon, outcome)
    if isinstance(outcome, RemoveBlock):
        return remove_block(daemon, outcome)
    if isinstance(outcome, WriteBlock):
        return write_block(daemon, outcome)
    if isinstance(outcome, ReadBlock):
        return read_block(daemon, outcome)
    if isinstance(outcome, SetBlock):
        empty_block(daemon, outcome)
    return None


async def _stats_channel(daemon: Daemon, conn: FramedStream, sequence: int) -> None:
    """Forward stats add/remove to an external albatross-stats (albatrossd.ml ``stat_out``)."""
    channel = Subscriber()
    async with daemon.lock:
        daemon.vmmd.stats_counter = sequence + 1  # handle_stats_initial
        old = daemon.stats_channel
        daemon.stats_channel = channel
        if old is not None:
            old.close()
        for name, u in daemon.vmmd.running():
            daemon.vmmd.stats_counter += 1
            taps = tuple(
                (n.name, tap)
                for n, (tap, _mac) in zip(
                    sorted(u.config.bridges, key=lambda n: n.name), u.taps, strict=False
                )
            )
            channel.offer(daemon.stats_message(name, StatsAdd(f"solo5-hvt-{u.pid}", u.pid, taps)))
    try:
        async for message in channel.receive:
            await conn.send_message(message)
            reply = await read_message(conn, STATS_REPLY_TIMEOUT)
            if reply is None:
                log.warning("stats channel closed")
                return
            if isinstance(reply.payload, Failure):
                log.error("stats: %s", reply.payload.message)
    finally:
        if daemon.stats_channel is channel:
            daemon.stats_channel = None
        channel.close()
