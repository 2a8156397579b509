"""Drive an :class:`Endpoint` from a TLS client over an in-memory stream pair."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio
import trio.testing

from core.clock import Clock, system_clock
from core.wire import FrameDecoder, Message, decode_message, end_marker, frame
from tests.endpoint.fakedaemon import Behaviour, FakeDaemon, open_fake_daemon
from tests.endpoint.pki import Identity, Pki
from tlsendpoint.connlog import LOGGER
from tlsendpoint.limits import Limits
from tlsendpoint.server import Endpoint
from tlsendpoint.tlscontext import load_server_context

__all__ = ["Client", "Harness", "open_harness", "with_fake_daemon"]

MAX_MESSAGES = 10_000


@dataclass
class Client:
    tls: trio.SSLStream[Any]
    messages: list[Message] = field(default_factory=list)
    clean_close: bool = False

    async def send_frames(self, bodies: list[bytes], end: bool = True) -> None:
        for body in bodies:
            await self.tls.send_all(frame(body))
        if end:
            await self.tls.send_all(end_marker())

    async def read_all(self) -> list[Message]:
        """Every message until the endpoint closes (bounded)."""
        decoder = FrameDecoder(1 << 26)
        while len(self.messages) < MAX_MESSAGES:
            try:
                data = await self.tls.receive_some(65536)
            except trio.BrokenResourceError:
                break
            if not data:
                self.clean_close = True
                break
            decoder.feed(data)
            for item in decoder.frames():
                assert isinstance(item, bytes), "the endpoint never sends an end marker"
                self.messages.append(decode_message(item))
        return self.messages

    async def read_one(self) -> Message:
        decoder = FrameDecoder(1 << 26)
        while True:
            data = await self.tls.receive_some(65536)
            assert data, "closed before a message"
            decoder.feed(data)
            item = decoder.next_frame()
            if item is not None:
                assert isinstance(item, bytes)
                return decode_message(item)


@dataclass
class Harness:
    pki: Pki
    endpoint: Endpoint
    nursery: trio.Nursery

    async def connect(self, identity: Identity) -> Client:
        server_side, client_side = trio.testing.memory_stream_pair()
        self.nursery.start_soon(self.endpoint.handle, server_side, "test-peer")
        tls = trio.SSLStream(client_side, self.pki.client(identity), server_hostname=None)
        await tls.do_handshake()
        return Client(tls)

    async def run(self, identity: Identity, upload: list[bytes] | None = None) -> list[Message]:
        client = await self.connect(identity)
        if upload is not None:
            await client.send_frames(upload)
        return await client.read_all()


@asynccontextmanager
async def open_harness(
    tmp_path: Path,
    socket_dir: Path,
    limits: Limits | None = None,
    pki: Pki | None = None,
    clock: Clock = system_clock,
) -> AsyncIterator[Harness]:
    pki = pki or Pki(tmp_path)
    ctx: ssl.SSLContext = load_server_context(pki.ca_file, pki.cert_file, pki.key_file)
    endpoint = Endpoint(ctx, socket_dir, limits or Limits(), clock=clock)
    async with trio.open_nursery() as nursery:
        yield Harness(pki, endpoint, nursery)
    assert endpoint.active == 0
    LOGGER.debug("harness closed")


@asynccontextmanager
async def with_fake_daemon(
    tmp_path: Path, behaviours: dict[str, Behaviour], limits: Limits | None = None
) -> AsyncIterator[tuple[FakeDaemon, Harness]]:
    """A fake daemon and an endpoint using it."""
    async with (
        open_fake_daemon(behaviours) as daemon,
        open_harness(tmp_path, daemon.socket_dir, limits) as harness,
    ):
        yield daemon, harness
