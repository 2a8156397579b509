"""The three sockets' connection handlers (albatrossd.ml ``handle``,
albatross_console.ml ``handle``, albatross_stats.ml ``handle``).

Each connection runs in its own task and catches its own errors: a frame that
does not decode is logged and the connection closed (albatross closes without
a reply), and the other connections carry on.
"""

from __future__ import annotations

import logging
import os
import socket

import trio

from standin.blocks import receive_block, send_block
from standin.conn import Conn, ReadTimeout, describe_error
from standin.daemon import Daemon, Subscriber, Waiter
from standin.vmmd import (
    AddBlock,
    Create,
    DumpBlock,
    Outcome,
    RemoveBlock,
    Reply,
    SetBlock,
    StatsChannel,
    Wait,
    WaitAndCreate,
)
from tlsendpoint.errors import ParseError
from tlsendpoint.wire import (
    ConsoleData,
    ConsoleList,
    ConsoleListInactive,
    ConsoleSubscribe,
    Empty,
    End,
    Failure,
    Header,
    Message,
    Payload,
    StatsSubscribe,
    StringReply,
    decode_message,
)

__all__ = ["serve_console", "serve_stats", "serve_vmmd"]

log = logging.getLogger("standin")


async def _serve(daemon: Daemon, sock: socket.socket, label: str, handler: object) -> None:
    listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))

    async def guarded(stream: trio.SocketStream) -> None:
        conn = Conn(stream, daemon.config.max_frame, label)
        try:
            await handler(daemon, conn)  # type: ignore[operator]
        except (ParseError, ReadTimeout, trio.BrokenResourceError, trio.ClosedResourceError) as e:
            log.warning("%s connection closed: %s", label, describe_error(e))
        except Exception:  # one bad connection must not stop the daemon
            log.exception("%s connection failed", label)
        finally:
            await conn.close()

    await trio.serve_listeners(guarded, [listener])


async def _read_message(conn: Conn, timeout: float) -> Message | None:
    """The next request, or None at EOF/end marker; undecodable frames are logged and end it."""
    item = await conn.read_frame(timeout)
    if item is None or isinstance(item, End):
        return None
    try:
        return decode_message(item)
    except ParseError as e:
        log.warning("%s: undecodable frame (%d octets): %s", conn.label, len(item), e)
        return None


# -- vmmd ---------------------------------------------------------------------


async def serve_vmmd(daemon: Daemon, sock: socket.socket) -> None:
    await _serve(daemon, sock, "vmmd", _vmmd_connection)


async def _vmmd_connection(daemon: Daemon, conn: Conn) -> None:
    while True:
        request = await _read_message(conn, daemon.config.idle_timeout)
        if request is None:
            return
        if not await _vmmd_request(daemon, conn, request):
            return


async def _reply(conn: Conn, request: Message, payload: Payload) -> None:
    await conn.send(Message(request.header, payload))


async def _vmmd_request(daemon: Daemon, conn: Conn, request: Message) -> bool:
    """Handle one request; True if the connection stays open for another."""
    name = request.header.name
    waiter: Waiter | None = None
    outcome: Outcome
    async with daemon.lock:
        outcome = daemon.vmmd.handle(request.header, request.payload)
        daemon.wake_dropped()
        if daemon.vmmd.dirty:
            daemon.vmmd.dirty = False
            daemon.dump_state()
        if isinstance(outcome, Create):
            payload = await daemon.create(outcome.name, outcome.config, needs_dump=True)
            await _reply(conn, request, payload)
            return False
        if isinstance(outcome, Wait | WaitAndCreate):
            daemon.terminate(name)
            waiter = Waiter()
            daemon.vmmd.register(name, waiter)
            daemon.wake_dropped()
        if isinstance(outcome, AddBlock):
            await _reply(conn, request, _add_block(daemon, outcome))
            return False
        if isinstance(outcome, RemoveBlock):
            await _reply(conn, request, _remove_block(daemon, outcome))
            return False
        if isinstance(outcome, SetBlock):
            _empty_block(daemon, outcome)
    if isinstance(outcome, Reply):
        await _reply(conn, request, outcome.payload)
        return outcome.keep_open
    if waiter is not None:
        exit = await waiter.wait()
        log.info("%s exited with %s", name, exit)
        if isinstance(outcome, WaitAndCreate):
            async with daemon.lock:
                payload = await daemon.create(name, outcome.config, needs_dump=True)
            await _reply(conn, request, payload)
        else:
            async with daemon.lock:
                daemon.dump_state()
            await _reply(conn, request, StringReply("destroyed unikernel"))
        return False
    if isinstance(outcome, SetBlock):
        payload = await receive_block(daemon, conn, outcome)
        await _reply(conn, request, payload)
        return False
    if isinstance(outcome, DumpBlock):
        await send_block(daemon, conn, request, outcome)
        return False
    if isinstance(outcome, StatsChannel):
        await _reply(conn, request, Empty())
        return False
    raise AssertionError(f"unhandled outcome {outcome!r}")


def _add_block(daemon: Daemon, outcome: AddBlock) -> Payload:
    path = daemon.block_file(outcome.name)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return Failure("file already exists")
    except OSError as e:
        return Failure(f"error creating block device: {e.strerror}")
    try:
        os.ftruncate(fd, outcome.size << 20)
    finally:
        os.close(fd)
    daemon.vmmd.commit_block(outcome.name, outcome.size)
    return StringReply("added block device")


def _remove_block(daemon: Daemon, outcome: RemoveBlock) -> Payload:
    daemon.block_file(outcome.name).unlink(missing_ok=True)
    daemon.vmmd.forget_block(outcome.name)
    return StringReply("removed block")


def _empty_block(daemon: Daemon, outcome: SetBlock) -> None:
    path = daemon.block_file(outcome.name)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)


# -- console ------------------------------------------------------------------


async def serve_console(daemon: Daemon, sock: socket.socket) -> None:
    await _serve(daemon, sock, "console", _console_connection)


async def _console_connection(daemon: Daemon, conn: Conn) -> None:
    request = await _read_message(conn, daemon.config.idle_timeout)
    if request is None:
        return
    name, payload = request.header.name, request.payload
    if isinstance(payload, ConsoleListInactive):
        if not name.is_path:
            await _reply(conn, request, Failure("name used"))
            return
        await _reply(conn, request, ConsoleList(tuple(daemon.consoles.list_inactive(name.path))))
        return
    if not isinstance(payload, ConsoleSubscribe):
        # ConsoleAdd comes from vmmd only, in-process here; anything else: close, no reply.
        log.warning("console: unexpected %s, closing", type(payload).__name__)
        return
    if name.is_path:
        await _reply(conn, request, Failure("path used instead of name"))
        return
    subscriber = Subscriber()
    version = request.header.version
    ring, text, dropped = daemon.consoles.subscribe(name, version, subscriber)
    for sub in dropped:
        sub.close()
    try:
        await _reply(conn, request, StringReply(text))
        if ring is not None:
            history = (
                ring.read_last(payload.count)
                if payload.count is not None
                else ring.read_history(payload.since)  # type: ignore[arg-type]
            )
            for when, line in history:
                header = Header(name, 0, request.header.version)
                await conn.send(Message(header, ConsoleData(when, line)))
        await _pump_until_peer_speaks(conn, subscriber)
    finally:
        daemon.consoles.unsubscribe(name, subscriber)
        subscriber.close()


async def _pump_until_peer_speaks(conn: Conn, subscriber: Subscriber) -> None:
    """Forward queued data until the subscriber is dropped or the peer sends anything/closes."""

    async def pump(cancel: trio.CancelScope) -> None:
        async for message in subscriber.receive:
            await conn.send(message)
        cancel.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(pump, nursery.cancel_scope)
        await conn.stream.receive_some(1)  # albatross: wait for the next read, then terminate
        nursery.cancel_scope.cancel()


# -- stats --------------------------------------------------------------------


async def serve_stats(daemon: Daemon, sock: socket.socket) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_stats_timer, daemon)
        await _serve(daemon, sock, "stat", _stats_connection)


async def _stats_timer(daemon: Daemon) -> None:
    while True:
        await trio.sleep(daemon.config.stats_interval)
        for subscriber, sub_name, message in daemon.stats.tick(daemon.clock()):
            if not subscriber.offer(message):
                daemon.stats.unsubscribe(sub_name, subscriber)


async def _stats_connection(daemon: Daemon, conn: Conn) -> None:
    subscriber: Subscriber | None = None
    try:
        async with trio.open_nursery() as nursery:
            while True:
                request = await _read_message(
                    conn, float("inf") if subscriber else daemon.config.idle_timeout
                )
                if request is None:
                    break
                if isinstance(request.payload, StatsSubscribe):
                    if subscriber is None:
                        subscriber = Subscriber()
                        nursery.start_soon(_stats_pump, conn, subscriber, nursery.cancel_scope)
                    old = daemon.stats.subscribe(
                        request.header.name, request.header.version, subscriber
                    )
                    if old is not None and old is not subscriber:
                        old.close()
                    await _reply(conn, request, StringReply("subscribed"))
                else:
                    text = _stats_refusal(request.payload)
                    await _reply(conn, request, Failure(text))
                    break
            nursery.cancel_scope.cancel()
    finally:
        if subscriber is not None:
            subscriber.close()


def _stats_refusal(payload: Payload) -> str:
    from tlsendpoint.wire import StatsAdd, StatsInitial, StatsRemove

    if isinstance(payload, StatsInitial):
        return "unexpected message initial"
    if isinstance(payload, StatsAdd | StatsRemove):
        return "stats add/remove come from vmmd, which is built into this stand-in"
    return "unexpected command"


async def _stats_pump(conn: Conn, subscriber: Subscriber, cancel: trio.CancelScope) -> None:
    async for message in subscriber.receive:
        await conn.send(message)
    cancel.cancel()  # replaced by a newer subscriber: albatross closes the old socket
