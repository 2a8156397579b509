"""Chunk framing: incremental decoding, end markers and the size limit."""

from __future__ import annotations

import pytest

from core.errors import ParseError, UsageError
from core.wire import END, End, FrameDecoder, end_marker, frame

STREAM = frame(b"abc") + frame(b"\x30" * 300) + end_marker() + frame(b"z")
EXPECTED: list[bytes | End] = [b"abc", b"\x30" * 300, END, b"z"]


def _feed(chunks: list[bytes], max_frame: int = 1000) -> list[bytes | End]:
    dec = FrameDecoder(max_frame)
    out: list[bytes | End] = []
    for chunk in chunks:
        dec.feed(chunk)
        out.extend(dec.frames())
    assert dec.buffered == 0
    return out


@pytest.mark.parametrize(
    "split",
    [
        pytest.param(lambda b: [b], id="whole"),
        pytest.param(lambda b: [b[i : i + 1] for i in range(len(b))], id="byte-by-byte"),
        pytest.param(lambda b: [b[i : i + 7] for i in range(0, len(b), 7)], id="sevens"),
    ],
)
def test_frames_fed_three_ways(split: object) -> None:
    assert _feed(split(STREAM)) == EXPECTED  # type: ignore[operator]


def test_negative_length_is_an_end_marker() -> None:
    dec = FrameDecoder()
    dec.feed(b"\xff\xff\xff\xfe")
    assert dec.next_frame() == End(-2)


def test_oversized_frame_is_refused_before_buffering() -> None:
    dec = FrameDecoder(max_frame=1024)
    dec.feed((1025).to_bytes(4, "big"))
    with pytest.raises(ParseError, match="frame of 1025 octets exceeds the limit of 1024"):
        dec.next_frame()
    # The decoder is now out of sync and stays refused; nothing was buffered.
    assert dec.buffered == 0
    with pytest.raises(ParseError):
        dec.feed(b"more")


def test_limit_is_inclusive() -> None:
    assert _feed([frame(b"x" * 1000)]) == [b"x" * 1000]


def test_incomplete_frame_waits() -> None:
    dec = FrameDecoder()
    dec.feed(frame(b"hello")[:-1])
    assert dec.next_frame() is None
    assert dec.pending_length == 5
    dec.feed(b"o")
    assert dec.next_frame() == b"hello"


def test_empty_body_cannot_be_framed() -> None:
    with pytest.raises(UsageError, match="end marker"):
        frame(b"")
