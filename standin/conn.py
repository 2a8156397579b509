"""Framed wire messages over a trio stream (one connection to one of our sockets).

Reads are bounded twice: a frame may not exceed ``max_frame`` octets (checked
on the length prefix, before buffering the body) and every read waits at most
``timeout`` seconds.  EOF before a complete frame reads as ``None``.  A send
waits at most :data:`SEND_TIMEOUT` seconds for the peer to take the frame.
"""

from __future__ import annotations

import logging

import trio

from core.errors import AlbatrossError, ParseError
from core.wire import End, FrameDecoder, Message, encode_message, end_marker, frame

__all__ = ["SEND_TIMEOUT", "Conn", "PeerTimeout"]

log = logging.getLogger("standin")

_RECV = 65536


class PeerTimeout(AlbatrossError):
    """The peer sent nothing for too long, or did not take what we sent."""


#: Seconds a peer has to accept one frame we send (a subscriber that stopped reading).
SEND_TIMEOUT = 60.0


class Conn:
    def __init__(self, stream: trio.abc.Stream, max_frame: int, label: str) -> None:
        self.stream = stream
        self.label = label
        self._decoder = FrameDecoder(max_frame)
        self._eof = False
        self._send_lock = trio.Lock()  # a subscriber's pump and replies share the stream

    async def read_frame(self, timeout: float) -> bytes | End | None:
        """The next frame body, an end marker, or ``None`` at EOF; ParseError if oversized."""
        while True:
            item = self._decoder.next_frame()
            if item is not None:
                return item
            if self._eof:
                return None
            with trio.move_on_after(timeout) as scope:
                data = await self.stream.receive_some(_RECV)
            if scope.cancelled_caught:
                raise PeerTimeout(f"{self.label}: no data for {timeout:g} s")
            if not data:
                self._eof = True
                continue
            self._decoder.feed(data)

    async def send(self, message: Message) -> None:
        await self._send(frame(encode_message(message)))

    async def send_body(self, body: bytes) -> None:
        """Send an already encoded message."""
        await self._send(frame(body))

    async def send_end(self) -> None:
        await self._send(end_marker())

    async def _send(self, data: bytes) -> None:
        with trio.move_on_after(SEND_TIMEOUT) as scope:
            async with self._send_lock:
                await self.stream.send_all(data)
        if scope.cancelled_caught:
            raise PeerTimeout(f"{self.label}: the peer took nothing for {SEND_TIMEOUT:g} s")

    async def close(self) -> None:
        await trio.aclose_forcefully(self.stream)


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, ParseError | PeerTimeout):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
