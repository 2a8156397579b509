"""The performance work's paths: unjoined big frames, released TLS buffers, lazy log lines."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

import pytest
import trio
import trio.testing

from tests.endpoint.fakedaemon import reply_table
from tests.endpoint.harness import with_fake_daemon
from tests.endpoint.pki import Pki
from tlsendpoint.connlog import LOGGER
from tlsendpoint.errors import UsageError
from tlsendpoint.framedio import FramedStream
from tlsendpoint.tlscontext import buffers_released, load_server_context, release_buffers
from tlsendpoint.wire import End, UnikernelInfo, UnikernelInfoList, end_marker, frame, frame_prefix


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
