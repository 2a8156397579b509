"""Block device data streams (vmm_unix.ml ``stream_to_block``, ``dump_file_stream``).

*Set*: the device file was emptied under the lock; the raw chunks that follow
the command (zlib-compressed or not) are written until the end marker, never
more than the device's size (``stream exceeds size``), then the file is
truncated to its size.  *Dump*: ``Block_device_image`` then the file in 4 KiB
reads, deflated if a level is given, each piece a ``Block_data`` message, and
a final ``Block_data None``.  Every wait for the peer has a deadline.
"""

from __future__ import annotations

import logging
import os

import trio

from standin.conn import Conn
from standin.vmmd import DumpBlock, SetBlock
from tlsendpoint.errors import ParseError
from tlsendpoint.wire import (
    BlockData,
    BlockDeviceImage,
    End,
    Failure,
    Message,
    Payload,
    StringReply,
)
from tlsendpoint.wire.compress import StreamCompressor, StreamDecompressor

__all__ = ["DUMP_PIECE", "receive_block", "send_block"]

log = logging.getLogger("standin")

#: albatross reads block devices in pieces of this size when dumping.
DUMP_PIECE = 4096


class _TooBig(Exception):
    pass


async def receive_block(daemon: object, conn: Conn, outcome: SetBlock) -> Payload:
    from standin.daemon import Daemon

    assert isinstance(daemon, Daemon)
    path = daemon.block_file(outcome.name)
    limit = outcome.size_bytes
    inflate = StreamDecompressor(limit) if outcome.compressed else None
    written = 0
    failure: str | None = None
    with open(path, "r+b") as f:
        while True:
            item = await conn.read_frame(daemon.config.stream_timeout)
            if item is None or isinstance(item, End):
                break
            if failure is not None:
                continue  # keep reading to the end marker, as albatross drains the stream
            try:
                data = inflate.feed(item) if inflate is not None else item
            except ParseError as e:
                failure = "stream exceeds size" if "inflates beyond" in e.message else e.message
                continue
            if len(data) > limit - written:
                failure = "stream exceeds size"
                continue
            f.write(data)
            written += len(data)
        if failure is None and inflate is not None:
            try:
                inflate.finish()
            except ParseError as e:
                failure = e.message
        f.truncate(limit)
    if failure is not None:
        log.error("set block %s: %s", outcome.name, failure)
        return Failure(failure)
    return StringReply("set block device")


async def send_block(daemon: object, conn: Conn, request: Message, outcome: DumpBlock) -> None:
    from standin.daemon import Daemon

    assert isinstance(daemon, Daemon)
    header = request.header
    level = max(0, min(outcome.level, 9))
    path = daemon.block_file(outcome.name)
    try:
        f = open(path, "rb")  # noqa: SIM115  (closed in finally; reads interleave with awaits)
    except OSError as e:
        await conn.send(Message(header, Failure(f"dump block: {e.strerror}")))
        return
    await conn.send(Message(header, BlockDeviceImage(outcome.level != 0)))
    compressor = StreamCompressor(level) if outcome.level != 0 else None
    failure: str | None = None
    try:
        while True:
            try:
                piece = f.read(DUMP_PIECE)
            except OSError as e:
                failure = f"error streaming {path.name}: {e.strerror}"
                break
            if not piece:
                break
            out = compressor.feed(piece) if compressor is not None else piece
            if out:
                await conn.send(Message(header, BlockData(out)))
            await trio.lowlevel.checkpoint()
        if compressor is not None:
            tail = compressor.finish()
            if tail:
                await conn.send(Message(header, BlockData(tail)))
    finally:
        f.close()
    await conn.send(Message(header, BlockData(None)))
    if failure is not None:
        await conn.send(Message(header, Failure(failure)))
    _ = os
