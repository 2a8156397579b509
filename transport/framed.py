"""Framed reads and writes on a trio stream, bounded in size (albatross chunk framing).

A thin shell over :class:`core.wire.FrameDecoder`: it pulls bytes from a
``trio.abc.Stream`` until a frame is complete.  The decoder refuses a length
prefix above ``max_frame`` before buffering the body, so a peer can make us
hold at most ``max_frame`` + one read of octets.  The connection closing in
the middle of a frame, or before one starts, is :class:`PeerClosed`.
Callers put the deadline around each call.
"""

from __future__ import annotations

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

__all__ = ["FramedStream", "PeerClosed", "TransportError"]

_READ_SIZE = 65536
#: Frames at least this big are written as prefix and body, without joining them.
_SEPARATE_PREFIX = 1 << 20


def _why(exc: BaseException) -> str:
    cause = exc.__cause__ or exc
    return str(cause) or type(cause).__name__


class TransportError(AlbatrossError):
    """A stream broke (reset, TLS error); the message says which side and how."""


class PeerClosed(TransportError):
    """The peer closed the connection (cleanly or not) where a frame was expected."""


class FramedStream:
    """Frames in and out of one stream; not safe for two concurrent readers."""

    def __init__(self, stream: trio.abc.Stream, max_frame: int, peer: str) -> None:
        self.stream = stream
        self.peer = peer
        self._decoder = FrameDecoder(max_frame)

    async def receive_frame(self) -> bytes | End:
        """The next frame body, or :data:`END` for an end marker."""
        while True:
            item = self._decoder.next_frame()  # ParseError for an oversized frame
            if item is not None:
                return item
            try:
                data = await self.stream.receive_some(_READ_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise TransportError(
                    f"{self.peer}: connection broken ({exc.__cause__ or exc})"
                ) from exc
            if not data:
                partial = self._decoder.buffered or self._decoder.pending_length
                where = "in the middle of a frame" if partial else "before sending a frame"
                raise PeerClosed(f"{self.peer} closed the connection {where}")
            self._decoder.feed(data)

    async def receive_message(self) -> Message:
        """The next wire message; an end marker here is a protocol error."""
        item = await self.receive_frame()
        if isinstance(item, End):
            raise ParseError(f"{self.peer} sent an end marker where a message was expected")
        try:
            return decode_message(item)
        except ParseError as exc:
            raise exc.within(f"{self.peer} sent an undecodable message") from None

    async def send_bytes(self, data: bytes) -> None:
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise TransportError(f"{self.peer}: cannot write ({_why(exc)})") from exc

    async def send_frame(self, body: bytes) -> None:
        if len(body) < _SEPARATE_PREFIX:
            await self.send_bytes(frame(body))  # one write for the usual small frame
        else:  # a big image: no copy just to put four octets in front
            await self.send_bytes(frame_prefix(len(body)))
            await self.send_bytes(body)

    async def send_end(self) -> None:
        await self.send_bytes(end_marker())

    async def send_message(self, message: Message) -> None:
        await self.send_frame(encode_message(message))
