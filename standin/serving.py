"""Accepting connections: one task per connection, each with its own error handling.

A frame that does not decode is logged and the connection closed (albatross
closes without a reply); a peer that sends nothing for too long is dropped;
an unexpected exception is logged with its traceback.  The other connections
carry on in every case.

Each connection is a :class:`transport.framed.FramedStream` over a
:class:`transport.unix.UnixStream` (the endpoint's lean socket stream: the
stand-in shares the cores with what it serves in the benches): reads are bounded
by the daemon's ``max_frame`` and by the timeout each caller passes, a send by
:data:`SEND_TIMEOUT`; a subscriber's pump and the replies to its requests share
the stream, so sends take turns.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Awaitable, Callable

import trio

from core.errors import ParseError
from core.wire import End, Message, decode_message
from transport.framed import FramedStream, PeerClosed, TransportError
from transport.unix import lean_stream

__all__ = [
    "SEND_TIMEOUT",
    "Handler",
    "describe_error",
    "read_frame",
    "read_message",
    "serve_socket",
]

log = logging.getLogger("standin")

#: Seconds a peer has to accept one frame we send (a subscriber that stopped reading).
SEND_TIMEOUT = 60.0

Handler = Callable[[FramedStream], Awaitable[None]]


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, ParseError | TransportError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


async def serve_socket(sock: socket.socket, label: str, max_frame: int, handler: Handler) -> None:
    listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))

    async def guarded(stream: trio.SocketStream) -> None:
        conn = FramedStream(
            lean_stream(stream), max_frame, label, send_timeout=SEND_TIMEOUT, shared_sender=True
        )
        try:
            await handler(conn)
        except (
            ParseError,
            TransportError,
            trio.BrokenResourceError,
            trio.ClosedResourceError,
        ) as e:
            log.warning("%s connection closed: %s", label, describe_error(e))
        except Exception:  # one bad connection must not stop the daemon
            log.exception("%s connection failed", label)
        finally:
            await trio.aclose_forcefully(conn)

    await trio.serve_listeners(guarded, [listener])


async def read_frame(conn: FramedStream, timeout: float) -> bytes | End | None:
    """The next frame body, an end marker, or ``None`` once the peer closed (even mid-frame).

    PeerTimeout after *timeout* seconds without data; ParseError for an oversized frame.
    """
    try:
        return await conn.receive_frame(timeout)
    except PeerClosed:
        return None


async def read_message(conn: FramedStream, timeout: float) -> Message | None:
    """The next request; None at EOF or an end marker.  Undecodable frames end it too."""
    item = await read_frame(conn, timeout)
    if item is None or isinstance(item, End):
        return None
    try:
        return decode_message(item)
    except ParseError as e:
        log.warning("%s: undecodable frame of %d octets, closing: %s", conn.peer, len(item), e)
        return None
