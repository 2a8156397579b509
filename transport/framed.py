"""Framed reads and writes on a trio stream, bounded in size (albatross chunk framing).

The one framed stream of the project: the endpoint (both sides of a command), the
stand-in (every daemon socket) and the client (its replies and uploads) all read and
write frames through :class:`FramedStream`.

A thin shell over :class:`core.wire.FrameDecoder`: it pulls bytes from a stream
until a frame is complete.  The decoder refuses a length prefix above
``max_frame`` before buffering the body, so a peer can make us hold at most
``max_frame`` + one read of octets.

Errors name the peer (the *peer* label given at construction) and say what broke:

* the connection closing in the middle of a frame, or before one starts, is
  :class:`PeerClosed` (again on every later read: the end is remembered);
* a read or write on a broken stream is :class:`TransportError`, its ``cause``
  the stream's own exception;
* an oversized frame is the decoder's :class:`core.errors.ParseError`;
* a deadline given as a parameter that passes is :class:`PeerTimeout`.

Deadlines: the endpoint and the client put their own around each call (one
deadline for a whole exchange); the stand-in passes them as parameters (a read
*timeout* per wait for data, a *send_timeout* per frame sent).  Without them no
cancel scope is opened: every call here is on the endpoint's per-command path.

Not safe for two concurrent readers; concurrent senders only with ``shared_sender``
(sends then take turns under a lock: the stand-in's subscriber pump and its replies).
"""

from __future__ import annotations

import math
from typing import Protocol

import trio

from core.errors import AlbatrossError, ParseError
from core.wire import (
    End,
    FrameDecoder,
    Message,
    decode_message,
    encode_message,
    end_marker,
    frame,
    frame_prefix,
)

__all__ = ["ByteStream", "FramedStream", "PeerClosed", "PeerTimeout", "TransportError"]

_READ_SIZE = 65536
#: Frames at least this big are written as prefix and body, without joining them.
_SEPARATE_PREFIX = 1 << 20
#: What a broken stream raises (trio's streams, ours, or an OSError from below).
_BROKEN = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


class ByteStream(Protocol):
    """What a framed stream needs of its stream: a ``trio.abc.Stream`` has it."""

    async def send_all(self, data: bytes) -> None: ...
    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray: ...
    async def aclose(self) -> None: ...


def _why(exc: BaseException) -> str:
    cause = exc.__cause__ or exc
    return str(cause) or type(cause).__name__


class TransportError(AlbatrossError):
    """A stream broke (reset, TLS error); the message says which side and how.

    ``cause`` is the stream's own exception (None when the peer only went away).
    """

    def __init__(self, message: str, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.cause = cause


class PeerClosed(TransportError):
    """The peer closed the connection (cleanly or not) where a frame was expected."""


class PeerTimeout(TransportError):
    """The peer sent nothing for too long, or did not take what we sent."""


class FramedStream(trio.abc.AsyncResource):
    """Frames in and out of one stream; see the module comment."""

    def __init__(
        self,
        stream: ByteStream,
        max_frame: int,
        peer: str,
        *,
        send_timeout: float = math.inf,
        shared_sender: bool = False,
    ) -> None:
        self.stream = stream
        self.peer = peer
        self._send_timeout = send_timeout
        self._decoder = FrameDecoder(max_frame)
        self._closed_by_peer = False
        self._send_lock = trio.Lock() if shared_sender else None
        self._plain = send_timeout == math.inf and not shared_sender  # no scope, no lock

    async def receive_frame(self, timeout: float | None = None) -> bytes | End:
        """The next frame body, or :data:`END` for an end marker.

        *timeout*: how long to wait for each piece of data (:class:`PeerTimeout`).
        """
        while True:
            item = self._decoder.next_frame()  # ParseError for an oversized frame
            if item is not None:
                return item
            if self._closed_by_peer:
                raise self._closed()
            try:
                if timeout is None:  # the endpoint's path: its caller holds the deadline
                    data = await self.stream.receive_some(_READ_SIZE)
                else:
                    data = await self._receive_within(timeout)
            except _BROKEN as exc:
                raise TransportError(
                    f"{self.peer}: connection broken ({exc.__cause__ or exc})", exc
                ) from exc
            if not data:
                self._closed_by_peer = True
                raise self._closed()
            self._decoder.feed(data)

    async def _receive_within(self, timeout: float) -> bytes | bytearray:
        try:
            with trio.fail_after(timeout):
                return await self.stream.receive_some(_READ_SIZE)
        except trio.TooSlowError:
            raise PeerTimeout(f"{self.peer}: no data for {timeout:g} s") from None

    def _closed(self) -> PeerClosed:
        partial = self._decoder.buffered or self._decoder.pending_length
        where = "in the middle of a frame" if partial else "before sending a frame"
        return PeerClosed(f"{self.peer} closed the connection {where}")

    async def receive_message(self, timeout: float | None = None) -> Message:
        """The next wire message; an end marker here is a protocol error."""
        item = await self.receive_frame(timeout)
        if isinstance(item, End):
            raise ParseError(f"{self.peer} sent an end marker where a message was expected")
        try:
            return decode_message(item)
        except ParseError as exc:
            raise exc.within(f"{self.peer} sent an undecodable message") from None

    async def send_bytes(self, data: bytes) -> None:
        """Send *data* as it is (already framed)."""
        if not self._plain:
            await self._send_guarded((data,))
            return
        try:  # the endpoint's path: nothing around the write
            await self.stream.send_all(data)
        except _BROKEN as exc:
            raise self._cannot_write(exc) from exc

    async def send_frame(self, body: bytes) -> None:
        if len(body) < _SEPARATE_PREFIX:
            await self.send_bytes(frame(body))  # one write for the usual small frame
        elif self._plain:  # a big image: no copy just to put four octets in front
            await self.send_bytes(frame_prefix(len(body)))
            await self.send_bytes(body)
        else:
            await self._send_guarded((frame_prefix(len(body)), body))

    async def _send_guarded(self, pieces: tuple[bytes, ...]) -> None:
        """Write *pieces* together within ``send_timeout``, in turn if the sender is shared."""
        try:
            with trio.fail_after(self._send_timeout):
                if self._send_lock is None:
                    await self._write(pieces)
                else:
                    async with self._send_lock:  # no other frame between prefix and body
                        await self._write(pieces)
        except trio.TooSlowError:
            raise PeerTimeout(
                f"{self.peer}: the peer took nothing for {self._send_timeout:g} s"
            ) from None

    async def _write(self, pieces: tuple[bytes, ...]) -> None:
        try:
            for piece in pieces:
                await self.stream.send_all(piece)
        except _BROKEN as exc:
            raise self._cannot_write(exc) from exc

    def _cannot_write(self, exc: BaseException) -> TransportError:
        return TransportError(f"{self.peer}: cannot write ({_why(exc)})", exc)

    async def send_end(self) -> None:
        await self.send_bytes(end_marker())

    async def send_message(self, message: Message) -> None:
        await self.send_frame(encode_message(message))

    async def aclose(self) -> None:
        """Close the stream (gracefully: a TLS stream says close_notify; bound it yourself)."""
        await self.stream.aclose()
