"""A tiny framed-message client for the stand-in's sockets (tests only)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import trio

from core.wire import (
    END,
    FrameDecoder,
    Header,
    Message,
    Name,
    Payload,
    decode_message,
    encode_message,
    frame,
)
from tests.vectors import MKFAKE

TIMEOUT = 30.0


class Client:
    """One connection to a stand-in socket."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.decoder = FrameDecoder()
        self.seq = 0

    @classmethod
    async def connect(cls, path: Path) -> Client:
        return cls(await trio.open_unix_socket(str(path)))

    async def send(self, name: Name | str, payload: Payload, sequence: int | None = None) -> None:
        if isinstance(name, str):
            name = Name.parse(name)
        self.seq += 1
        seq = self.seq if sequence is None else sequence
        await self.stream.send_all(frame(encode_message(Message(Header(name, seq), payload))))

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def receive(self) -> Message | None:
        """The next message, or None at EOF."""
        with trio.fail_after(TIMEOUT):
            while True:
                item = self.decoder.next_frame()
                if item is not None:
                    assert item is not END
                    assert isinstance(item, bytes)
                    return decode_message(item)
                data = await self.stream.receive_some(65536)
                if not data:
                    return None
                self.decoder.feed(data)

    async def reply(self) -> Payload:
        msg = await self.receive()
        assert msg is not None, "connection closed without a reply"
        return msg.payload

    async def close(self) -> None:
        await self.stream.aclose()


async def request(path: Path, name: Name | str, payload: Payload) -> Payload:
    """Send one command on a fresh connection and return the first reply."""
    client = await Client.connect(path)
    try:
        await client.send(name, payload)
        return await client.reply()
    finally:
        await client.close()


def make_image(tmp_path: Path, name: str, *args: str) -> bytes:
    """Run the shared mkfake.py tool and return the image bytes."""
    out = tmp_path / f"{name}.hvt"
    subprocess.run(
        [sys.executable, str(MKFAKE), str(out), *args],
        check=True,
        capture_output=True,
    )
    return out.read_bytes()
