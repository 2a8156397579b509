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

from core.errors import ParseError
from core.wire import (
    BlockData,
    BlockDeviceImage,
    End,
    Failure,
    Message,
    OldBlockDeviceImage,
    Payload,
    StringReply,
)
from core.wire.compress import StreamCompressor, StreamDecompressor, compress
from standin.daemon import Daemon
from standin.outcomes import AddBlock, DumpBlock, ReadBlock, RemoveBlock, SetBlock, WriteBlock
from standin.serving import read_frame
from transport.framed import FramedStream

__all__ = [
    "DUMP_PIECE",
    "add_block",
    "empty_block",
    "read_block",
    "receive_block",
    "remove_block",
    "send_block",
    "write_block",
]

log = logging.getLogger("standin")

#: albatross reads block devices in pieces of this size when dumping.
DUMP_PIECE = 4096


class _TooBig(Exception):
    pass


def _create_file(daemon: Daemon, outcome: AddBlock | WriteBlock) -> str | None:
    """Create the device file with its data, truncated to its size; an error text or None."""
    path = daemon.block_file(outcome.name)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return "file already exists"
    except OSError as e:
        return f"error creating block device: {e.strerror}"
    try:
        if outcome.data:
            os.write(fd, outcome.data)
        os.ftruncate(fd, outcome.size << 20)
    except OSError as e:
        return f"error writing block device: {e.strerror}"
    finally:
        os.close(fd)
    return None


def add_block(daemon: Daemon, outcome: AddBlock) -> Payload:
    problem = _create_file(daemon, outcome)
    if problem is not None:
        return Failure(problem)
    daemon.vmmd.commit_block(outcome.name, outcome.size)
    return StringReply("added block device")


def remove_block(daemon: Daemon, outcome: RemoveBlock) -> Payload:
    daemon.block_file(outcome.name).unlink(missing_ok=True)
    daemon.vmmd.forget_block(outcome.name)
    return StringReply("removed block")


def empty_block(daemon: Daemon, outcome: SetBlock) -> None:
    """albatross deletes and recreates the file before the stream arrives (data is lost)."""
    path = daemon.block_file(outcome.name)
    path.unlink(missing_ok=True)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def write_block(daemon: Daemon, outcome: WriteBlock) -> Payload:
    daemon.block_file(outcome.name).unlink(missing_ok=True)
    problem = _create_file(daemon, outcome)
    return Failure(problem) if problem is not None else StringReply("set block device")


def read_block(daemon: Daemon, outcome: ReadBlock) -> Payload:
    try:
        data = daemon.block_file(outcome.name).read_bytes()
    except OSError:
        return Failure("file does not exist")
    if outcome.level == 0:
        return OldBlockDeviceImage(False, data)
    return OldBlockDeviceImage(True, compress(data, max(1, min(outcome.level, 9))))


async def receive_block(daemon: Daemon, conn: FramedStream, outcome: SetBlock) -> Payload:
    path = daemon.block_file(outcome.name)
    limit = outcome.size_bytes
    inflate = StreamDecompressor(limit) if outcome.compressed else None
    written = 0
    failure: str | None = None
    with open(path, "r+b") as f:
        while True:
            item = await read_frame(conn, daemon.config.stream_timeout)
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


async def send_block(
    daemon: Daemon, conn: FramedStream, request: Message, outcome: DumpBlock
) -> None:
    header = request.header
    level = max(0, min(outcome.level, 9))
    path = daemon.block_file(outcome.name)
    try:
        f = open(path, "rb")  # noqa: SIM115  (closed in finally; reads interleave with awaits)
    except OSError as e:
        await conn.send_message(Message(header, Failure(f"dump block: {e.strerror}")))
        return
    await conn.send_message(Message(header, BlockDeviceImage(outcome.level != 0)))
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
                await conn.send_message(Message(header, BlockData(out)))
            await trio.lowlevel.checkpoint()
        if compressor is not None:
            tail = compressor.finish()
            if tail:
                await conn.send_message(Message(header, BlockData(tail)))
    finally:
        f.close()
    await conn.send_message(Message(header, BlockData(None)))
    if failure is not None:
        await conn.send_message(Message(header, Failure(failure)))
