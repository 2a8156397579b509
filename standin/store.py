"""The stand-in's state file: policies and unikernel configs, as wire messages.

albatross writes ``<dbdir>/state`` as one DER ``State`` value (wire.md §11).
We store the same information with the codec we already trust: a sequence of
framed wire messages (4-octet length, DER body), ``policy add`` at each path
then ``unikernel create`` at each name, headed by a ``policy info`` at the
name ``standin-state-1`` as a format marker.  It is read back with a bounded
:class:`FrameDecoder` and ``decode_message``, so a corrupt file gives a
:class:`ParseError`, never a crash.  Block device contents are plain files
``<state_dir>/block/<name>`` (name in wire form), as albatross keeps them.
"""

from __future__ import annotations

from tlsendpoint.errors import ParseError
from tlsendpoint.wire import (
    END,
    FrameDecoder,
    Header,
    Message,
    Name,
    Policy,
    PolicyAdd,
    PolicyInfo,
    UnikernelConfig,
    UnikernelCreate,
    decode_message,
    encode_message,
    frame,
)

__all__ = ["MARKER", "decode_state", "encode_state"]

#: Name of the first message; changes when the format does.
MARKER = Name((), "standin-state-1")
_MAX_STATE_FRAME = 128 * 1024 * 1024


def encode_state(
    policies: list[tuple[Name, Policy]], unikernels: list[tuple[Name, UnikernelConfig]]
) -> bytes:
    out = [frame(encode_message(Message(Header(MARKER), PolicyInfo())))]
    out += [frame(encode_message(Message(Header(n), PolicyAdd(p)))) for n, p in policies]
    out += [frame(encode_message(Message(Header(n), UnikernelCreate(c)))) for n, c in unikernels]
    return b"".join(out)


def decode_state(
    data: bytes,
) -> tuple[list[tuple[Name, Policy]], list[tuple[Name, UnikernelConfig]]]:
    decoder = FrameDecoder(_MAX_STATE_FRAME)
    decoder.feed(data)
    messages: list[Message] = []
    for body in decoder.frames():
        if body is END or not isinstance(body, bytes):
            raise ParseError("state file: unexpected end marker")
        messages.append(decode_message(body))
    if decoder.buffered:
        raise ParseError("state file: truncated")
    if not messages or messages[0] != Message(Header(MARKER), PolicyInfo()):
        raise ParseError("state file: not a stand-in state file (marker missing)")
    policies: list[tuple[Name, Policy]] = []
    unikernels: list[tuple[Name, UnikernelConfig]] = []
    for msg in messages[1:]:
        payload = msg.payload
        if isinstance(payload, PolicyAdd):
            policies.append((msg.header.name, payload.policy))
        elif isinstance(payload, UnikernelCreate):
            unikernels.append((msg.header.name, payload.config))
        else:
            raise ParseError(f"state file: unexpected {type(payload).__name__}")
    return policies, unikernels
