"""Reading replies the way albatross-client does (``output_result`` / ``read``).

A command's reply mode comes from the routing table (:data:`core.routing.ROUTES`,
albatross's ``Vmm_commands.endpoint``): a single reply, a stream that is printed
until the peer closes (console, stats), or a block dump.  ``read_replies`` drives
that state machine over any byte stream, under a deadline for every wait except
while following a stream.

One deliberate difference from albatross: a peer that closes before sending
any reply is an error (exit 121, "closed the connection without replying"),
and so is a block dump that ends before its end marker.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

import trio

from client.errors import CommunicationFailed, InternalError, RemoteCommandFailed
from client.output import (
    error_record,
    format_log,
    format_message,
    format_table,
    json_line,
    log_record,
    reply_record,
    rfc3339,
)
from client.progress import Meter
from core.clock import Clock, system_clock
from core.errors import ParseError
from core.routing import ReplyMode
from core.wire import (
    DEFAULT_MAX_FRAME,
    BlockData,
    BlockDeviceImage,
    End,
    Failure,
    Message,
    Name,
    OldBlockDeviceImage,
    UnikernelImage,
    decode_message,
    is_command,
    is_data,
    is_success,
)
from core.wire.compress import StreamCompressor, StreamDecompressor, decompress
from transport.framed import FramedStream, TransportError

__all__ = [
    "FileUpload",
    "Printer",
    "Settings",
    "data_chunks",
    "read_replies",
    "send_data",
    "send_frame",
]

#: Default deadline for a reply (albatross waits forever; a create may take a while).
REPLY_TIMEOUT = 120.0
#: Largest image we inflate from a ``get`` reply.
MAX_IMAGE = 1 << 30
#: Largest block device we inflate from a dump.
MAX_BLOCK = 1 << 40
#: Chunk size of uncompressed uploads, as albatross-client (4096).
UPLOAD_CHUNK = 4096
#: Largest chunk of a compressed upload (albatross flushes at most 64 KiB).
COMPRESSED_CHUNK = 65536


Write = Callable[[str], None]


@dataclass
class Printer:
    """Where albatross-client's log reporter writes: everything to stdout.

    *format* is ``text`` (albatross's words, byte for byte), ``json`` (one record of
    :mod:`core.jsonout` per line) or ``table`` (lists as aligned columns, the rest as
    text).
    """

    prog: str
    out: Write
    err: Write
    format: str = "text"
    verbose: bool = False

    @property
    def json(self) -> bool:
        return self.format == "json"

    def app(self, text: str, **fields: object) -> None:
        if self.json:
            self.out(json_line(log_record("info", text, **fields)))
        else:
            self.out(format_log("", lambda f: f.text(text)))

    def warn(self, text: str) -> None:
        if self.json:
            self.out(json_line(log_record("warning", text)))
        else:
            self.out(format_log(f"{self.prog}: [WARNING] ", lambda f: f.text(text)))

    def error(self, text: str) -> None:
        """An error the client found itself; its exit code is reported with it in JSON."""
        if self.json:
            self.out(json_line(log_record("error", text)))
        else:
            self.out(format_log(f"{self.prog}: [ERROR] ", lambda f: f.text(text)))

    def message(self, msg: Message) -> None:
        payload = msg.payload
        if self.json:
            if isinstance(payload, Failure):
                code = RemoteCommandFailed.exit_code
                line = error_record(
                    payload.message, code, source="daemon", name=msg.header.name,
                    reply_type=type(payload).__name__,
                )  # fmt: skip
            else:
                line = reply_record(msg)
            self.out(json_line(line))
        elif isinstance(payload, Failure):
            self.out(format_message(msg, f"{self.prog}: [WARNING] ", self.verbose))
        else:
            tabular = format_table(msg) if self.format == "table" else None
            self.out(tabular if tabular is not None else format_message(msg, verbose=self.verbose))


@dataclass
class Settings:
    printer: Printer
    tmpdir: Path = field(default_factory=lambda: Path(os.environ.get("TMPDIR") or "/tmp"))
    started: datetime = field(default_factory=datetime.now)
    reply_timeout: float = REPLY_TIMEOUT
    max_frame: int = DEFAULT_MAX_FRAME
    #: The progress bar of long transfers (a terminal only), see :mod:`client.progress`.
    progress: Meter | None = None
    #: The time leaves are signed at and chains are verified at.
    clock: Clock = system_clock
    #: Certificates (SHA-256) whose coming expiry this command has warned about already.
    expiry_warned: set[bytes] = field(default_factory=set)

    def output_file(self, name: Name) -> Path:
        """``$TMPDIR/<name>.<client start time>``, as albatross names downloads."""
        return self.tmpdir / f"{name}.{rfc3339(self.started)}"


async def _next_message(stream: FramedStream, timeout: float) -> Message | None:
    """The next reply; None when the replies end (end marker, or the peer closed)."""
    try:
        with trio.fail_after(timeout):
            item = await stream.receive_frame()
        if isinstance(item, End):
            return None
        return decode_message(item)
    except TransportError:  # closed or broken: the replies end there, as albatross reads it
        return None
    except ParseError as exc:  # an oversized frame or a reply that does not decode
        raise CommunicationFailed(f"reading reply: {exc.message}") from None


@contextmanager
def _writing() -> Iterator[None]:
    """The connection breaking under a write: albatross-client's communication failure."""
    try:
        yield
    except TransportError as exc:
        raise CommunicationFailed(f"write failed: {exc.cause or exc}") from None


async def send_frame(stream: FramedStream, body: bytes) -> None:
    """One frame (the command) to the peer; CommunicationFailed if the connection broke."""
    with _writing():
        await stream.send_frame(body)


class _Dump:
    """The open output file of a block dump, inflating when the stream is compressed."""

    def __init__(self, path: Path, compressed: bool) -> None:
        self.path = path
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self.file: BinaryIO = os.fdopen(fd, "wb")
        self.inflate = StreamDecompressor(MAX_BLOCK) if compressed else None
        self.written = 0

    def write(self, data: bytes) -> None:
        try:
            out = self.inflate.feed(data) if self.inflate is not None else data
        except ParseError as exc:
            raise CommunicationFailed(f"{exc.message} while dumping {self.path}") from None
        self.file.write(out)
        self.written += len(out)

    def finish(self) -> None:
        try:
            if self.inflate is not None:
                self.inflate.finish()
        except ParseError as exc:
            raise CommunicationFailed(f"{exc.message} while dumping {self.path}") from None
        finally:
            self.file.close()


def _write_image(settings: Settings, name: Name, compressed: bool, image: bytes) -> None:
    printer = settings.printer
    if compressed:
        try:
            image = decompress(image, MAX_IMAGE)
        except ParseError as exc:
            printer.error(f"failed to uncompress image: {exc.message}")
            return
    path = settings.output_file(name)
    try:
        path.write_bytes(image)
    except OSError as exc:
        printer.error(f"failed to write image: {exc.strerror or exc}")
        return
    printer.app(f"dumped image to {path}", file=str(path))


async def read_replies(stream: FramedStream, mode: ReplyMode, settings: Settings) -> None:
    """Read and print replies until the mode says stop; raise ClientError on failure."""
    printer = settings.printer
    dump: _Dump | None = None
    got_reply = False
    if settings.progress is not None:
        settings.progress.finish()  # an upload's bar ends before the reply is printed
    try:
        while True:
            following = mode is ReplyMode.READ and got_reply
            timeout = math.inf if following else settings.reply_timeout
            try:
                msg = await _next_message(stream, timeout)
            except trio.TooSlowError:
                raise CommunicationFailed(
                    f"no reply within {settings.reply_timeout:g} s (raise it with --timeout)"
                ) from None
            if msg is None:
                if not got_reply:
                    raise CommunicationFailed(
                        "the server closed the connection without replying "
                        "(the command was refused or the server failed)"
                    )
                if dump is not None:
                    raise CommunicationFailed(
                        f"the block dump ended early; {dump.path} is incomplete"
                    )
                return
            got_reply = True
            payload = msg.payload
            if isinstance(payload, Failure):
                printer.message(msg)
                raise RemoteCommandFailed(payload.message, log="none")
            if is_success(payload):
                printer.message(msg)
                if isinstance(payload, UnikernelImage | OldBlockDeviceImage):
                    _write_image(settings, msg.header.name, payload.compressed, payload.image)
                    return
                if isinstance(payload, BlockDeviceImage):
                    dump = _Dump(settings.output_file(msg.header.name), payload.compressed)
                    mode = ReplyMode.DUMP
                    if settings.progress is not None:  # the size is not told: bytes and rate
                        settings.progress.begin(None, "downloading")
                    continue
                if mode is ReplyMode.SINGLE:
                    return
                continue
            if isinstance(payload, BlockData):
                if dump is None:
                    what = "EOF" if payload.data is None else "data"
                    printer.warn(f"Unexpected block dump {what} received")
                    raise CommunicationFailed("unexpected block dump", log="none")
                if payload.data is None:
                    if settings.progress is not None:
                        settings.progress.finish()
                    dump.finish()
                    path, dump = dump.path, None
                    printer.app(f"dumped to {path}", file=str(path))
                    return
                dump.write(payload.data)
                if settings.progress is not None:
                    settings.progress(dump.written)
                continue
            if is_data(payload):
                if mode is not ReplyMode.READ:
                    printer.warn("Unexpected console data received")
                    raise CommunicationFailed("unexpected data", log="none")
                printer.message(msg)
                continue
            if is_command(payload):
                printer.error("received unexpected command")
                raise InternalError("received a command as a reply", log="none")
    finally:
        if settings.progress is not None:
            settings.progress.finish()
        if dump is not None:
            dump.file.close()


def data_chunks(data: Iterable[bytes], level: int) -> Iterator[bytes]:
    """The upload stream's chunks: 4096-octet raw pieces, or zlib output like albatross."""
    if level == 0:
        for piece in data:
            for i in range(0, len(piece), UPLOAD_CHUNK):
                yield piece[i : i + UPLOAD_CHUNK]
        return
    compressor = StreamCompressor(level)
    for piece in data:
        out = compressor.feed(piece)
        for i in range(0, len(out), COMPRESSED_CHUNK):
            yield out[i : i + COMPRESSED_CHUNK]
    tail = compressor.finish()
    body, trailer = tail[:-4], tail[-4:]
    for i in range(0, len(body), COMPRESSED_CHUNK):
        yield body[i : i + COMPRESSED_CHUNK]
    yield trailer  # the Adler-32 as its own chunk, as albatross-client sends it


def read_file(path: Path, piece: int = UPLOAD_CHUNK) -> Iterator[bytes]:
    with path.open("rb") as fh:
        while chunk := fh.read(piece):
            yield chunk


class FileUpload:
    """A file uploaded as a data stream (set-block): its chunks, its size, how far it got.

    Progress counts the file's octets read, so a compressed upload also ends at 100 %.
    """

    def __init__(self, path: Path, level: int) -> None:
        self.path = path
        self.level = level
        try:
            self.total: int | None = path.stat().st_size
        except OSError:
            self.total = None  # reading it will say why
        self.done = 0

    def _pieces(self) -> Iterator[bytes]:
        for piece in read_file(self.path):
            self.done += len(piece)
            yield piece

    def __call__(self) -> Iterator[bytes]:
        """The chunks, read lazily while the connection is open."""
        self.done = 0
        return data_chunks(self._pieces(), self.level)


async def send_data(
    stream: FramedStream,
    chunks: Iterable[bytes],
    progress: Callable[[int], None] | None = None,
    stall_timeout: float = REPLY_TIMEOUT,
) -> None:
    """Send a raw data stream: framed chunks, then the empty terminator.

    Each chunk must go out within *stall_timeout* seconds (a peer that stops reading).
    """
    sent = 0
    try:
        for chunk in chunks:
            if chunk:
                with trio.fail_after(stall_timeout), _writing():
                    await stream.send_frame(chunk)
                sent += len(chunk)
                if progress is not None:
                    progress(sent)
        with trio.fail_after(stall_timeout), _writing():
            await stream.send_end()
    except trio.TooSlowError:
        raise CommunicationFailed(
            f"upload stalled: the peer took no data for {stall_timeout:g} s"
        ) from None
