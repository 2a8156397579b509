"""zlib helpers for images and block streams (RFC 1950, 15-bit window).

albatross compresses with the OCaml ``decompress`` library; any conforming
zlib stream interoperates, the bytes need not match.  Decompression is always
bounded: a hostile peer must not turn 16 MiB into gigabytes.
"""

from __future__ import annotations

import zlib

from core.errors import ParseError, UsageError

__all__ = ["StreamCompressor", "StreamDecompressor", "compress", "decompress"]


def compress(data: bytes, level: int = 9) -> bytes:
    if not 0 <= level <= 9:
        raise UsageError(f"compression level {level} is not within 0..9")
    return zlib.compress(data, level)


def decompress(data: bytes, limit: int) -> bytes:
    """Inflate a whole zlib stream of at most *limit* output octets."""
    d = StreamDecompressor(limit)
    out = d.feed(data)
    d.finish()
    return out


class StreamDecompressor:
    """Inflate a zlib stream that arrives in chunks, refusing more than *limit* octets."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.total = 0
        self._z = zlib.decompressobj()

    def feed(self, chunk: bytes) -> bytes:
        try:
            out = self._z.decompress(chunk, self.limit - self.total + 1)
        except zlib.error as e:
            raise ParseError(f"compressed data: {e}") from None
        self.total += len(out)
        if self.total > self.limit or self._z.unconsumed_tail:
            raise ParseError(f"compressed data inflates beyond {self.limit} octets")
        if self._z.unused_data:
            raise ParseError("compressed data: trailing bytes after the zlib stream")
        return out

    def finish(self) -> None:
        if not self._z.eof:
            raise ParseError("compressed data: truncated zlib stream")


class StreamCompressor:
    """Deflate data that is produced in pieces; ``finish`` returns the tail with Adler-32."""

    def __init__(self, level: int = 9) -> None:
        if not 0 <= level <= 9:
            raise UsageError(f"compression level {level} is not within 0..9")
        self._z = zlib.compressobj(level)

    def feed(self, data: bytes) -> bytes:
        return self._z.compress(data)

    def finish(self) -> bytes:
        return self._z.flush()
