"""Accepting connections: one task per connection, each with its own error handling.

A frame that does not decode is logged and the connection closed (albatross
closes without a reply); a peer that sends nothing for too long is dropped;
an unexpected exception is logged with its traceback.  The other connections
carry on in every case.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Awaitable, Callable

import trio

from core.errors import ParseError
from core.wire import End, Message, decode_message
from standin.conn import Conn, PeerTimeout, describe_error

__all__ = ["Handler", "read_message", "serve_socket"]

log = logging.getLogger("standin")

Handler = Callable[[Conn], Awaitable[None]]


async def serve_socket(sock: socket.socket, label: str, max_frame: int, handler: Handler) -> None:
    listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))

    async def guarded(stream: trio.SocketStream) -> None:
        conn = Conn(stream, max_frame, label)
        try:
            await handler(conn)
        except (ParseError, PeerTimeout, trio.BrokenResourceError, trio.ClosedResourceError) as e:
            log.warning("%s connection closed: %s", label, describe_error(e))
        except Exception:  # one bad connection must not stop the daemon
            log.exception("%s connection failed", label)
        finally:
            await conn.close()

    await trio.serve_listeners(guarded, [listener])


async def read_message(conn: Conn, timeout: float) -> Message | None:
    """The next request; None at EOF or an end marker.  Undecodable frames end it too."""
    item = await conn.read_frame(timeout)
    if item is None or isinstance(item, End):
        return None
    try:
        return decode_message(item)
    except ParseError as e:
        log.warning("%s: undecodable frame of %d octets, closing: %s", conn.label, len(item), e)
        return None
