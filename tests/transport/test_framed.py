"""FramedStream over trio's in-memory streams: frames, ends, errors naming the peer, deadlines.

Timeouts run on the autojump clock; the stream broken underneath is a fake that raises
what trio's streams raise.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing

from core.errors import ParseError
from core.wire import End, Header, Message, Name, StringReply, encode_message, end_marker, frame
from transport.framed import FramedStream, PeerClosed, PeerTimeout, TransportError

MESSAGE = Message(Header(Name.parse(":t")), StringReply("hello"))


def pair() -> tuple[FramedStream, trio.testing.MemoryReceiveStream]:
    """A framed stream reading from a memory stream the test fills."""
    receiving = trio.testing.MemoryReceiveStream()
    stream = trio.StapledStream(trio.testing.MemorySendStream(), receiving)
    return FramedStream(stream, 1000, "the peer"), receiving


@pytest.mark.parametrize("split", [1, 3, 1000])
async def test_frames_and_the_end_marker_in_any_pieces(split: int) -> None:
    framed, receiving = pair()
    data = frame(encode_message(MESSAGE)) + frame(b"raw") + end_marker()
    for i in range(0, len(data), split):
        receiving.put_data(data[i : i + split])
    assert await framed.receive_message() == MESSAGE
    assert await framed.receive_frame() == b"raw"
    assert isinstance(await framed.receive_frame(), End)


@pytest.mark.parametrize(
    ("data", "where"),
    [(b"", "before sending a frame"), (b"\x00\x00\x00\x05ab", "in the middle of a frame")],
)
async def test_the_peer_closing_is_named_and_remembered(data: bytes, where: str) -> None:
    framed, receiving = pair()
    receiving.put_data(data)
    receiving.put_eof()
    for _ in range(2):  # the end stays the end: no read after it
        with pytest.raises(PeerClosed) as caught:
            await framed.receive_frame()
        assert caught.value.message == f"the peer closed the connection {where}"


async def test_an_oversized_frame_is_a_parse_error_before_its_body() -> None:
    framed, receiving = pair()
    receiving.put_data(b"\x00\x00\x03\xe9")  # 1001 octets announced, 1000 allowed
    with pytest.raises(ParseError, match="exceeds"):
        await framed.receive_frame()


async def test_an_undecodable_message_names_the_peer() -> None:
    framed, receiving = pair()
    receiving.put_data(frame(b"\x30\x00") + end_marker())
    with pytest.raises(ParseError, match=r"^the peer sent an undecodable message: "):
        await framed.receive_message()
    with pytest.raises(ParseError, match="the peer sent an end marker where a message was"):
        await framed.receive_message()


class Broken(trio.abc.Stream):
    """A stream whose connection was reset: trio's error with the OSError as cause."""

    def _broken(self) -> trio.BrokenResourceError:
        error = trio.BrokenResourceError("socket connection broken")
        error.__cause__ = ConnectionResetError(104, "Connection reset by peer")
        return error

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        raise self._broken()

    async def wait_send_all_might_not_block(self) -> None:
        pass

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        raise self._broken()

    async def aclose(self) -> None:
        pass


async def test_a_broken_stream_is_a_transport_error_with_its_cause() -> None:
    framed = FramedStream(Broken(), 1000, "vmmd daemon")
    with pytest.raises(TransportError) as caught:
        await framed.receive_frame()
    assert (
        caught.value.message
        == "vmmd daemon: connection broken ([Errno 104] Connection reset by peer)"
    )
    assert isinstance(caught.value.cause, trio.BrokenResourceError)
    with pytest.raises(TransportError) as caught:
        await framed.send_message(MESSAGE)
    assert (
        caught.value.message == "vmmd daemon: cannot write ([Errno 104] Connection reset by peer)"
    )
    assert str(caught.value.cause) == "socket connection broken"


async def test_a_read_timeout_is_per_wait_for_data(autojump_clock: trio.abc.Clock) -> None:
    framed, receiving = pair()
    with pytest.raises(PeerTimeout) as caught:
        await framed.receive_frame(timeout=7)
    assert caught.value.message == "the peer: no data for 7 s"
    receiving.put_data(frame(b"late"))  # the stream is still usable
    assert await framed.receive_frame(timeout=7) == b"late"


async def test_a_peer_that_takes_nothing_times_the_send_out(
    autojump_clock: trio.abc.Clock,
) -> None:
    sending, _ = trio.testing.lockstep_stream_pair()  # nobody reads the other end
    framed = FramedStream(sending, 1000, "subscriber", send_timeout=60)
    before = trio.current_time()
    with pytest.raises(PeerTimeout) as caught:
        await framed.send_frame(b"x")
    assert caught.value.message == "subscriber: the peer took nothing for 60 s"
    assert trio.current_time() - before == pytest.approx(60)


async def test_shared_senders_never_interleave_big_frames() -> None:
    """Two tasks send frames of 1 MiB (prefix and body written apart) on one stream;
    without the lock trio refuses the second send_all (BusyResourceError), or frames mix."""
    ours, theirs = trio.testing.memory_stream_pair()
    framed = FramedStream(ours, 1 << 21, "shared", shared_sender=True)
    reader = FramedStream(theirs, 1 << 21, "reader")
    bodies = [bytes([n]) * (1 << 20) for n in (1, 2)]

    async def send(body: bytes) -> None:
        for _ in range(3):
            await framed.send_frame(body)

    received: list[bytes | End] = []
    async with trio.open_nursery() as nursery:
        for body in bodies:
            nursery.start_soon(send, body)
        for _ in range(6):
            received.append(await reader.receive_frame())
    assert (
        sorted(received, key=lambda b: b[:1] if isinstance(b, bytes) else b"")
        == [bodies[0]] * 3 + [bodies[1]] * 3
    )
