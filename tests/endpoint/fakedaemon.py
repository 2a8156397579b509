"""A scriptable fake albatross daemon for fault injection (unix sockets, in-process).

Each socket (``vmmd``, ``console``, ``stat``) runs a *behaviour*: an async
function given the connection, which receives and answers frames as the test
wants - including closing mid-stream, never answering and sending garbage.
Everything received is recorded per connection.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import trio

from core.wire import (
    ROOT,
    BlockSet,
    End,
    Header,
    Message,
    Payload,
    PolicyAdd,
    StringReply,
    decode_message,
    encode_message,
    frame,
)
from transport.framed import FramedStream, PeerClosed, TransportError

__all__ = ["Behaviour", "Conn", "FakeDaemon", "open_fake_daemon", "reply_table"]


@dataclass
class Conn:
    """One daemon-side connection, with everything it received."""

    socket: str
    framed: FramedStream
    received: list[Message | bytes | End] = field(default_factory=list)
    closed_by_peer: bool = False
    finished: bool = False  # the behaviour returned or failed, the socket is closed

    async def receive(self) -> Message:
        body = await self.framed.receive_frame()
        assert not isinstance(body, End), "expected a message"
        message = decode_message(body)
        self.received.append(message)
        return message

    async def receive_stream(self) -> None:
        """Record raw frames up to and including the end marker."""
        while True:
            item = await self.framed.receive_frame()
            self.received.append(item)
            if isinstance(item, End):
                return

    async def send(self, payload: Payload, name: object = ROOT, sequence: int = 0) -> None:
        await self.framed.send_bytes(
            frame(encode_message(Message(Header(name, sequence), payload)))  # type: ignore[arg-type]
        )

    async def send_raw(self, data: bytes) -> None:
        await self.framed.send_bytes(data)

    async def wait_closed(self) -> None:
        """Wait until the endpoint closes this connection."""
        try:
            while await self.framed.stream.receive_some(4096):
                pass
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        self.closed_by_peer = True


Behaviour = Callable[[Conn], Awaitable[None]]


def reply_table(replies: dict[type[object], Payload]) -> Behaviour:
    """vmmd-like: accept policies, answer the command from *replies*, read block-set streams."""

    async def behave(conn: Conn) -> None:
        while True:
            try:
                message = await conn.receive()
            except PeerClosed:
                return
            if isinstance(message.payload, PolicyAdd):
                await conn.send(StringReply("added policy"), message.header.name)
                continue
            if isinstance(message.payload, BlockSet):
                await conn.receive_stream()
            await conn.send(replies[type(message.payload)], message.header.name)

    return behave


@dataclass
class FakeDaemon:
    tmpdir: Path
    behaviours: dict[str, Behaviour]
    connections: list[Conn] = field(default_factory=list)

    @property
    def socket_dir(self) -> Path:
        return self.tmpdir / "util"

    def conns(self, socket: str) -> list[Conn]:
        return [c for c in self.connections if c.socket == socket]

    async def _serve_conn(self, socket: str, stream: trio.SocketStream) -> None:
        conn = Conn(socket, FramedStream(stream, 1 << 26, "endpoint"))
        self.connections.append(conn)
        try:
            await self.behaviours[socket](conn)
        except (TransportError, trio.BrokenResourceError, trio.ClosedResourceError):
            conn.closed_by_peer = True
        finally:
            await trio.aclose_forcefully(stream)
            conn.finished = True

    async def _serve(self, socket: str, task_status: trio.TaskStatus[None]) -> None:
        sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
        await sock.bind(str(self.socket_dir / f"{socket}.sock"))
        sock.listen(16)
        listener = trio.SocketListener(sock)
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                stream = await listener.accept()
                nursery.start_soon(self._serve_conn, socket, stream)


@asynccontextmanager
async def open_fake_daemon(behaviours: dict[str, Behaviour]) -> AsyncIterator[FakeDaemon]:
    """Serve *behaviours* (by socket name) under a short temporary directory."""
    tmpdir = Path(tempfile.mkdtemp(prefix="fakealb-", dir="/tmp"))
    (tmpdir / "util").mkdir()
    daemon = FakeDaemon(tmpdir, behaviours)
    try:
        async with trio.open_nursery() as nursery:
            for socket in behaviours:
                await nursery.start(daemon._serve, socket)
            yield daemon
            nursery.cancel_scope.cancel()
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
