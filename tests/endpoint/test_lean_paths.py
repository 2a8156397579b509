"""The performance work's paths: unjoined big frames, released TLS buffers, lazy log lines."""

from __future__ import annotations

import logging
import socket
import ssl
from pathlib import Path

import pytest
import trio
import trio.testing

from core.errors import ParseError, UsageError
from core.wire import (
    End,
    Header,
    Message,
    Name,
    UnikernelConfig,
    UnikernelCreate,
    UnikernelInfo,
    UnikernelInfoList,
    decode_message,
    encode_message,
    end_marker,
    frame,
    frame_prefix,
)
from core.wire.grammar import MESSAGE
from tests.endpoint.fakedaemon import reply_table
from tests.endpoint.harness import with_fake_daemon
from tests.endpoint.pki import Pki
from tests.vectors import all_frames
from tlsendpoint.connlog import LOGGER
from tlsendpoint.tlscontext import buffers_released, load_server_context, release_buffers
from transport.framed import FramedStream
from transport.unix import UnixStream, open_unix


def test_frame_prefix_is_the_prefix_of_frame() -> None:
    for body in (b"x", b"y" * 300, b"z" * (1 << 20)):
        assert frame_prefix(len(body)) + body == frame(body)
    for bad in (0, -1, 1 << 31):
        with pytest.raises(UsageError, match="no frame body can be"):
            frame_prefix(bad)


class Recorder(trio.abc.SendStream):
    """Records each send_all call."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    async def wait_send_all_might_not_block(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


@pytest.mark.parametrize(("size", "writes"), [(100, 1), ((1 << 20) - 1, 1), (1 << 20, 2)])
async def test_big_frames_are_written_without_joining(size: int, writes: int) -> None:
    recorder = Recorder()
    stream = trio.StapledStream(recorder, trio.testing.MemoryReceiveStream())
    await FramedStream(stream, 1 << 24, "test").send_frame(b"\x07" * size)
    assert len(recorder.writes) == writes
    assert b"".join(recorder.writes) == frame(b"\x07" * size)
    receiving = trio.testing.MemoryReceiveStream()
    receiving.put_data(b"".join(recorder.writes) + end_marker())
    reader = FramedStream(trio.StapledStream(Recorder(), receiving), 1 << 24, "test")
    assert await reader.receive_frame() == b"\x07" * size
    assert isinstance(await reader.receive_frame(), End)


def test_tls_buffers_are_released_when_idle(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    assert buffers_released(load_server_context(pki.ca_file, pki.cert_file, pki.key_file))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    release_buffers(ctx)  # idempotent; reads the mode back
    assert buffers_released(ctx)


async def test_no_chain_description_when_logging_is_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def must_not_run(chain: object) -> str:
        raise AssertionError("describe_chain called with logging off")

    monkeypatch.setattr("tlsendpoint.server.describe_chain", must_not_run)
    level = LOGGER.level
    LOGGER.setLevel(logging.ERROR)  # setLevel, not the attribute: loggers cache isEnabledFor
    info = UnikernelInfoList(())
    try:
        async with with_fake_daemon(tmp_path, {"vmmd": reply_table({UnikernelInfo: info})}) as (
            _,
            harness,
        ):
            messages = await harness.run(harness.pki.leaf("quiet", UnikernelInfo()))
    finally:
        LOGGER.setLevel(level)
    assert [m.payload for m in messages] == [info]


# -- UnixStream and the daemon connect -----------------------------------------------


async def test_unix_stream_round_trip_eof_and_close() -> None:
    ours, theirs = socket.socketpair()
    stream = UnixStream(ours)
    peer = UnixStream(theirs)
    got = b""

    async def send() -> None:
        await stream.send_all(b"x" * 1_000_000)  # more than a socket buffer: waits for the reader
        await stream.send_all(b"y")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send)
        while len(got) < 1_000_001:
            got += await peer.receive_some(65536)
    assert got == b"x" * 1_000_000 + b"y"
    await stream.send_eof()
    assert await peer.receive_some() == b""
    stream.close()
    with pytest.raises(trio.ClosedResourceError):
        await stream.receive_some()
    with pytest.raises(trio.BrokenResourceError):
        for _ in range(10):  # the first write may still be buffered
            await peer.send_all(b"z" * 100_000)
    await peer.aclose()


async def test_unix_stream_close_wakes_a_waiting_reader() -> None:
    ours, theirs = socket.socketpair()
    stream = UnixStream(ours)
    async with trio.open_nursery() as nursery:

        async def reader() -> None:
            with pytest.raises(trio.ClosedResourceError):
                await stream.receive_some()

        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        stream.close()
    theirs.close()


async def test_daemon_connect_waits_while_the_backlog_is_full(tmp_path: Path) -> None:
    path = str(tmp_path / "vmmd.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(0)
    waiting = []
    for _ in range(8):  # fill the backlog: further connects fail with EAGAIN
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.connect(path)
        except BlockingIOError:
            sock.close()
            break
        waiting.append(sock)
    else:
        pytest.fail("the backlog never filled")
    connected: list[UnixStream] = []
    async with trio.open_nursery() as nursery:

        async def connect() -> None:
            connected.append(await open_unix(path))

        nursery.start_soon(connect)
        await trio.sleep(0.05)
        assert not connected  # still retrying, not an unconnected socket
        for _ in waiting:
            listener.accept()[0].close()
    (stream,) = connected
    await stream.send_all(b"hello")
    accepted, _ = listener.accept()
    assert accepted.recv(5) == b"hello"
    accepted.close()
    stream.close()
    for sock in waiting:
        sock.close()
    listener.close()


def test_encoding_in_parts_joins_to_the_captured_frames() -> None:
    """encode_parts (one copy of a big image) gives albatross's bytes for every vector."""
    checked = 0
    for captured in all_frames():
        body = captured.body
        if not body:
            continue
        try:
            message = decode_message(body)
        except ParseError:
            continue  # vectors of refused frames
        parts = MESSAGE.encode_parts(message)
        assert b"".join(parts) == body == encode_message(message)
        checked += 1
    assert checked > 100
    image = UnikernelCreate(UnikernelConfig(image=b"\x01" * 300_000, memory=32))
    parts = MESSAGE.encode_parts(Message(Header(Name((), "big"), 1), image))
    assert any(part is image.config.image for part in parts)  # the image itself, not a copy
