"""A connected stream socket as a trio stream, without trio's per-call overhead.

Named for its first use, the daemon sockets (the endpoint's and the local
client's connections to them); the endpoint also serves its accepted TCP
connections through it (:mod:`tlsendpoint.tlsstream` calls the socket directly
when its transport is one of these).

Every command talks to a daemon over a fresh unix socket: connect, one small
write, one or a few reads, close.  ``trio.SocketStream`` spends more CPU on
that than the endpoint spends on anything but the TLS handshake (measured:
about 170 us per exchange against 70 us for this class; ``bench/``), mostly
in generic machinery: a scheduler round trip after every successful call,
TCP socket options tried and refused on a unix socket, error translation
layers.  This class tries the system call first and only waits (a full trio
checkpoint) when it would block; a call that completes at once is still a
cancellation point (``checkpoint_if_cancelled``).

Semantics are trio's: a closed stream raises ``ClosedResourceError``, a
broken one ``BrokenResourceError`` (with the ``OSError`` as cause), and
``receive_some`` returns ``b""`` at EOF.  Not safe for two concurrent
senders or two concurrent receivers (nor is anything in the endpoint).
"""

from __future__ import annotations

import socket

import trio

__all__ = ["RECEIVE_SIZE", "UnixStream", "lean_stream", "open_unix"]

#: Default and largest read size, as trio's.
RECEIVE_SIZE = 65536


class UnixStream(trio.abc.HalfCloseableStream):
    """A connected, non-blocking stream socket - ``AF_UNIX``, or an accepted TCP
    connection - owned: closed by :meth:`aclose`."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.socket = sock
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("the stream was already closed")

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self._check_open()
        await trio.lowlevel.checkpoint_if_cancelled()
        remaining = memoryview(data)
        while remaining:
            try:
                sent = self.socket.send(remaining)
            except BlockingIOError:
                await trio.lowlevel.wait_writable(self.socket)
                continue
            except OSError as exc:
                raise trio.BrokenResourceError(f"sending failed: {exc}") from exc
            remaining = remaining[sent:]

    async def wait_send_all_might_not_block(self) -> None:
        self._check_open()
        await trio.lowlevel.wait_writable(self.socket)

    async def send_eof(self) -> None:
        self._check_open()
        await trio.lowlevel.checkpoint()
        try:
            self.socket.shutdown(socket.SHUT_WR)
        except OSError as exc:
            raise trio.BrokenResourceError(f"shutdown failed: {exc}") from exc

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        self._check_open()
        size = RECEIVE_SIZE if max_bytes is None else min(max_bytes, RECEIVE_SIZE)
        if size < 1:
            raise ValueError("max_bytes must be >= 1")
        await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            try:
                return self.socket.recv(size)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(self.socket)
            except OSError as exc:
                raise trio.BrokenResourceError(f"receiving failed: {exc}") from exc

    def close(self) -> None:
        """Close now, synchronously (``aclose`` without the checkpoint; cheaper than
        ``trio.aclose_forcefully``, whose cancellation costs an exception)."""
        if not self._closed:
            self._closed = True
            trio.lowlevel.notify_closing(self.socket)  # wakes a task waiting on it
            self.socket.close()

    async def aclose(self) -> None:
        self.close()
        await trio.lowlevel.checkpoint()


def lean_stream(stream: trio.abc.Stream) -> trio.abc.Stream:
    """A ``trio.SocketStream`` (what trio's listeners accept) as a :class:`UnixStream`;
    any other stream as it is.  The descriptor moves: trio's object no longer owns it."""
    if not isinstance(stream, trio.SocketStream):
        return stream
    trio_socket = stream.socket
    fd = trio_socket.detach()
    return UnixStream(
        socket.socket(trio_socket.family, trio_socket.type, trio_socket.proto, fileno=fd)
    )


#: First pause before retrying a connect refused with EAGAIN (doubles up to CONNECT_PAUSE_MAX).
CONNECT_PAUSE = 0.001
CONNECT_PAUSE_MAX = 0.05


async def open_unix(path: str) -> UnixStream:
    """Connect to a daemon socket, retrying while its listen backlog is full.

    A non-blocking connect to a unix socket whose backlog is full fails with
    EAGAIN; ``trio.open_unix_socket`` takes that for "in progress" and returns
    a socket that is not connected (ENOTCONN at the first write).  albatross's
    daemons listen with a backlog of 1, so under load this is routine: retry
    with a short, growing pause (the caller's deadline bounds it).
    """
    pause = CONNECT_PAUSE
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.connect(path)
        except BlockingIOError:
            sock.close()
            await trio.sleep(pause)
            pause = min(pause * 2, CONNECT_PAUSE_MAX)
            continue
        except BaseException:
            sock.close()
            raise
        await trio.lowlevel.checkpoint_if_cancelled()  # connected at once: no scheduler pass
        return UnixStream(sock)  # trio.SocketStream costs 100 us more per command
