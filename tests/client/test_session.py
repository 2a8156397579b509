"""The reply state machine over in-memory streams (pytest-trio, autojump clock for deadlines)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import trio
import trio.testing

from client.errors import CommunicationFailed, InternalError, RemoteCommandFailed
from client.session import Printer, Settings, read_replies, send_data, send_frame
from core.routing import ReplyMode
from core.wire import (
    BlockData,
    ConsoleData,
    Failure,
    Name,
    StringReply,
    UnikernelDestroy,
    end_marker,
)
from tests.client.helpers import reply
from transport.framed import FramedStream

NAME = Name.parse(":t")


class Memory:
    """A byte stream over a list of chunks; ``hang`` waits forever after them."""

    def __init__(self, chunks: list[bytes], hang: bool = False) -> None:
        self.chunks = chunks
        self.hang = hang

    async def send_all(self, data: bytes) -> None:
        raise AssertionError("nothing is sent while reading")

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self.chunks:
            return self.chunks.pop(0)
        if self.hang:
            await trio.sleep_forever()
        return b""

    async def aclose(self) -> None:
        pass


def framed(stream: Memory, max_frame: int = 1 << 20) -> FramedStream:
    return FramedStream(stream, max_frame, "the server")


def settings(tmp_path: Path, out: list[str]) -> Settings:
    printer = Printer("albatross-client", out.append, out.append)
    return Settings(printer, tmpdir=tmp_path, started=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))


async def test_reply_fed_one_byte_at_a_time(tmp_path: Path) -> None:
    data = reply(NAME, StringReply("destroyed unikernel"))
    out: list[str] = []
    one_byte_each = framed(Memory([data[i : i + 1] for i in range(len(data))]))
    await read_replies(one_byte_each, ReplyMode.SINGLE, settings(tmp_path, out))
    assert out == ["host [unikernel: :t]: success: destroyed unikernel\n"]


async def test_no_reply_times_out(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    out: list[str] = []
    s = settings(tmp_path, out)
    s.reply_timeout = 5
    with pytest.raises(CommunicationFailed, match=r"no reply within 5 s"):
        await read_replies(framed(Memory([], hang=True)), ReplyMode.SINGLE, s)


async def test_following_a_stream_has_no_deadline(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    out: list[str] = []
    s = settings(tmp_path, out)
    s.reply_timeout = 5
    stream = framed(Memory([reply(NAME, StringReply("subscribed"))], hang=True))
    with trio.move_on_after(3600) as scope:
        await read_replies(stream, ReplyMode.READ, s)
    assert scope.cancelled_caught  # still following after an hour of silence
    assert out == ["host [unikernel: :t]: success: subscribed\n"]


@pytest.mark.parametrize(
    ("frames", "error", "printed"),
    [
        ([reply(NAME, UnikernelDestroy())], InternalError,
         "albatross-client: [ERROR] received unexpected command\n"),
        ([reply(NAME, ConsoleData(dt.datetime(2026, 1, 1, tzinfo=dt.UTC), "x"))],
         CommunicationFailed, "albatross-client: [WARNING] Unexpected console data received\n"),
        ([reply(NAME, BlockData(b"x"))], CommunicationFailed,
         "albatross-client: [WARNING] Unexpected block dump data received\n"),
        ([reply(NAME, Failure("no"))], RemoteCommandFailed,
         "albatross-client: [WARNING] host [unikernel: :t]: command failed no\n"),
        ([b"\x00\x00\x00\x03abc"], CommunicationFailed, None),
        ([end_marker()], CommunicationFailed, None),
    ],
)  # fmt: skip
async def test_bad_replies(
    tmp_path: Path, frames: list[bytes], error: type[Exception], printed: str | None
) -> None:
    out: list[str] = []
    with pytest.raises(error):
        await read_replies(framed(Memory(frames)), ReplyMode.SINGLE, settings(tmp_path, out))
    assert out == ([printed] if printed else [])


async def test_oversized_frame_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CommunicationFailed, match="exceeds the limit"):
        await read_replies(framed(Memory([b"\x00\x10\x00\x00"]), 100), ReplyMode.SINGLE,
                           settings(tmp_path, []))  # fmt: skip


async def test_stalled_upload_times_out(autojump_clock: trio.testing.MockClock) -> None:
    class Stalled(Memory):
        async def send_all(self, data: bytes) -> None:
            await trio.sleep_forever()

    with pytest.raises(CommunicationFailed, match=r"upload stalled: the peer took no data for 7 s"):
        await send_data(framed(Stalled([])), [b"abc"], stall_timeout=7)


async def test_upload_frames_and_terminator() -> None:
    sent: list[bytes] = []

    class Sink(Memory):
        async def send_all(self, data: bytes) -> None:
            sent.append(data)

    progress: list[int] = []
    await send_data(framed(Sink([])), [b"ab", b"", b"cde"], progress.append)
    assert sent == [b"\x00\x00\x00\x02ab", b"\x00\x00\x00\x03cde", b"\x00\x00\x00\x00"]
    assert progress == [2, 5]


class Broken(Memory):
    """A connection reset under us: trio's error, as UnixStream and SocketStream raise it."""

    async def send_all(self, data: bytes) -> None:
        raise trio.BrokenResourceError("sending failed: [Errno 32] Broken pipe")

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        raise trio.BrokenResourceError("receiving failed: [Errno 104] Connection reset by peer")


async def test_a_write_on_a_broken_connection_is_a_communication_failure() -> None:
    for send in (send_frame(framed(Broken([])), b"command"), send_data(framed(Broken([])), [b"x"])):
        with pytest.raises(CommunicationFailed) as caught:
            await send
        assert caught.value.message == "write failed: sending failed: [Errno 32] Broken pipe"


async def test_a_broken_read_ends_the_replies(tmp_path: Path) -> None:
    """As albatross-client reads it: the connection is over (here: before any reply)."""
    with pytest.raises(CommunicationFailed) as caught:
        await read_replies(framed(Broken([])), ReplyMode.SINGLE, settings(tmp_path, []))
    assert caught.value.message == (
        "the server closed the connection without replying "
        "(the command was refused or the server failed)"
    )
