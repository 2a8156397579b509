"""Chunk framing: a 4-byte big-endian *signed* length, then that many bytes.

A length of zero or below (any prefix with the top bit set) is albatross's end
marker.  albatross allocates whatever length it reads; :class:`FrameDecoder`
refuses a frame longer than its maximum as soon as the 4-byte prefix is in,
before buffering any of the body.  It is fed bytes in pieces of any size (one
at a time works) and yields complete frames, in the bring-your-own-I/O style
of h11.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from core.errors import ParseError, UsageError

__all__ = [
    "DEFAULT_MAX_FRAME",
    "END",
    "End",
    "FrameDecoder",
    "end_marker",
    "frame",
    "frame_prefix",
]

#: Largest frame body we accept by default: a 16 MiB image plus its envelope.
DEFAULT_MAX_FRAME = 32 * 1024 * 1024

_PREFIX = struct.Struct(">i")


@dataclass(frozen=True, slots=True)
class End:
    """The end-of-stream marker (a length prefix <= 0)."""

    length: int = 0


END = End()


def frame(body: bytes) -> bytes:
    """Prefix *body* with its length; an empty body cannot be framed (it would mean "end")."""
    if not body:
        raise UsageError("an empty frame body would read as the end marker")
    if len(body) > 0x7FFFFFFF:
        raise UsageError("frame body larger than 2^31-1 octets")
    return frame_prefix(len(body)) + body


def frame_prefix(length: int) -> bytes:
    """The length prefix of a frame body of *length* octets (for writing a big body unjoined)."""
    if not 0 < length <= 0x7FFFFFFF:
        raise UsageError(f"no frame body can be {length} octets long")
    return _PREFIX.pack(length)


def end_marker() -> bytes:
    return b"\x00\x00\x00\x00"


class FrameDecoder:
    """Incremental frame reader with a size limit.

    ``feed(data)`` adds bytes; ``frames()`` yields each complete frame body
    (``bytes``) or :data:`END` for an end marker.  After a :class:`ParseError`
    the decoder is unusable: the stream is out of sync.
    """

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        if max_frame <= 0:
            raise UsageError("max_frame must be positive")
        self.max_frame = max_frame
        self._buf = bytearray()
        self._need: int | None = None  # body length once the prefix is read
        self._broken: str | None = None

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if self._broken is not None:
            raise ParseError(self._broken)
        self._buf += data

    @property
    def buffered(self) -> int:
        """Octets held but not yet returned as a frame."""
        return len(self._buf)

    def next_frame(self) -> bytes | End | None:
        """The next complete frame, or ``None`` if more bytes are needed."""
        if self._broken is not None:
            raise ParseError(self._broken)
        if self._need is None:
            if len(self._buf) < 4:
                return None
            (length,) = _PREFIX.unpack_from(self._buf)
            del self._buf[:4]
            if length <= 0:
                return End(length)
            if length > self.max_frame:
                self._broken = (
                    f"frame of {length} octets exceeds the limit of {self.max_frame} octets"
                )
                self._buf.clear()
                raise ParseError(self._broken)
            self._need = length
        if len(self._buf) < self._need:
            return None
        body = bytes(self._buf[: self._need])
        del self._buf[: self._need]
        self._need = None
        return body

    def frames(self) -> Iterator[bytes | End]:
        while (item := self.next_frame()) is not None:
            yield item

    @property
    def pending_length(self) -> int | None:
        """Length of the frame being read, once its prefix is in."""
        return self._need
