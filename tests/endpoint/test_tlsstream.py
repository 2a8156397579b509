"""The endpoint's TLS stream: trio's generic stream checks, the alert of a refused handshake,
bounded buffers, and nothing left behind when it closes (no reference cycles)."""

from __future__ import annotations

import gc
import socket
import ssl
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest
import trio
import trio.testing

from core.wire import UnikernelInfo
from tests.endpoint.harness import Harness
from tests.endpoint.pki import Identity, Pki
from tests.endpoint.test_refusals import _expired, _foreign, _unknown_critical
from tlsendpoint.tlscontext import load_server_context
from tlsendpoint.tlsstream import WRITE_CHUNK, TLSStream
from transport.unix import UnixStream


@contextmanager
def no_cycle_collector() -> Iterator[None]:
    """Only reference counting frees objects in here: a cycle would keep them."""
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _socket_pair() -> tuple[trio.abc.Stream, trio.abc.Stream]:
    left, right = socket.socketpair()
    return UnixStream(left), UnixStream(right)


TRANSPORTS = {
    "memory": trio.testing.memory_stream_pair,
    "socket": _socket_pair,
}


async def _pair(pki: Pki, identity: Identity, transport: str) -> tuple[TLSStream, TLSStream]:
    """A (client, server) pair of our streams, handshake done."""
    server_side, client_side = TRANSPORTS[transport]()
    server_ctx = load_server_context(pki.ca_file, pki.cert_file, pki.key_file)
    server = TLSStream(server_side, server_ctx)
    client = TLSStream(client_side, pki.client(identity), server_side=False)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.do_handshake)
        nursery.start_soon(client.do_handshake)
    return client, server


@pytest.mark.parametrize("transport", sorted(TRANSPORTS))
async def test_trio_generic_stream_checks(tmp_path: Path, transport: str) -> None:
    pki = Pki(tmp_path)
    identity = pki.leaf("x", UnikernelInfo())

    async def make() -> tuple[TLSStream, TLSStream]:
        return await _pair(pki, identity, transport)

    await trio.testing.check_two_way_stream(make, None)


@pytest.mark.parametrize("transport", sorted(TRANSPORTS))
async def test_large_transfers_both_ways_at_once(tmp_path: Path, transport: str) -> None:
    pki = Pki(tmp_path)
    client, server = await _pair(pki, pki.leaf("x", UnikernelInfo()), transport)
    blob = bytes(range(256)) * 8192  # 2 MiB

    async def drain(stream: TLSStream, into: bytearray) -> None:
        while len(into) < len(blob):
            into += await stream.receive_some()

    got_client, got_server = bytearray(), bytearray()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.send_all, blob)
            nursery.start_soon(server.send_all, blob)
            nursery.start_soon(drain, client, got_client)
            nursery.start_soon(drain, server, got_server)
    assert got_client == blob and got_server == blob
    await client.aclose()
    assert await server.receive_some() == b""  # close_notify
    await server.aclose()


class RecordingStream(trio.abc.Stream):
    """A transport that records the size of each write."""

    def __init__(self, inner: trio.abc.Stream) -> None:
        self.inner = inner
        self.writes: list[int] = []

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(len(data))
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_big_write_is_encrypted_and_sent_a_piece_at_a_time(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    server_side, client_side = trio.testing.memory_stream_pair()
    recorder = RecordingStream(server_side)
    server = TLSStream(recorder, load_server_context(pki.ca_file, pki.cert_file, pki.key_file))
    client = TLSStream(client_side, pki.client(pki.leaf("x", UnikernelInfo())), server_side=False)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.do_handshake)
        nursery.start_soon(client.do_handshake)
    recorder.writes.clear()
    blob = b"\x5a" * (1 << 20)
    received = bytearray()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.send_all, blob)
        while len(received) < len(blob):
            received += await client.receive_some()
    assert received == blob
    # each write: at most one chunk of plaintext plus per-record overhead (5 + 17 per 16 KiB)
    assert len(recorder.writes) == len(blob) // WRITE_CHUNK
    assert max(recorder.writes) < WRITE_CHUNK + 4 * 32


def _holding(pki: Pki) -> Harness:
    """What test_refusals' certificate makers use of a harness: its PKI."""
    return cast(Harness, SimpleNamespace(pki=pki))


HANDSHAKE_ALERTS = {
    "expired": (_expired, "ALERT_CERTIFICATE_EXPIRED"),
    "unknown critical extension": (_unknown_critical, "ALERT_CERTIFICATE_UNKNOWN"),
    "foreign CA": (_foreign, "ALERT_DECRYPT_ERROR"),
}


@pytest.mark.parametrize("case", sorted(HANDSHAKE_ALERTS))
async def test_a_refused_handshake_sends_its_alert(tmp_path: Path, case: str) -> None:
    """The client learns why (trio.SSLStream dropped the alert: the client saw EOF)."""
    make, alert = HANDSHAKE_ALERTS[case]
    pki = Pki(tmp_path)
    identity = make(_holding(pki))
    server_side, client_side = trio.testing.memory_stream_pair()
    server = TLSStream(server_side, load_server_context(pki.ca_file, pki.cert_file, pki.key_file))
    client = TLSStream(client_side, pki.client(identity), server_side=False)
    failures: list[str] = []

    async def serve() -> None:
        with pytest.raises(trio.BrokenResourceError) as refused:
            await server.do_handshake()
        failures.append(str(refused.value))
        await server.aclose()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve)
        await client.do_handshake()  # TLS 1.3: the client is done before the server decides
        with pytest.raises(trio.BrokenResourceError) as seen:
            await client.receive_some()
    assert alert in str(seen.value)
    assert "CERTIFICATE_VERIFY_FAILED" in failures[0]


async def _closed_and_freed(server: TLSStream) -> weakref.ref[ssl.SSLObject]:
    ref = weakref.ref(server.ssl_object)
    await server.aclose()
    return ref


async def test_nothing_is_kept_after_a_failed_handshake(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    identity = _expired(_holding(pki))
    ctx = load_server_context(pki.ca_file, pki.cert_file, pki.key_file)
    client_ctx = pki.client(identity)
    with no_cycle_collector():
        server_side, client_side = trio.testing.memory_stream_pair()
        server = TLSStream(server_side, ctx)
        client = TLSStream(client_side, client_ctx, server_side=False)
        tls_ref = weakref.ref(server.ssl_object)
        stream_ref = weakref.ref(server)

        async def serve(stream: TLSStream) -> None:
            with suppress(trio.BrokenResourceError):
                await stream.do_handshake()
            await stream.aclose()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve, server)
            await client.do_handshake()
            with pytest.raises(trio.BrokenResourceError):
                await client.receive_some()
        assert tls_ref() is None  # dropped at close, whoever holds the stream
        del server
        assert stream_ref() is None  # and the stream itself is in no reference cycle


async def test_nothing_is_kept_after_a_broken_transport(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    identity = pki.leaf("x", UnikernelInfo())
    with no_cycle_collector():
        client, server = await _pair(pki, identity, "socket")
        tls_ref = weakref.ref(server.ssl_object)
        stream_ref = weakref.ref(server)
        await trio.aclose_forcefully(client)  # no close_notify: the server's read fails
        with pytest.raises(trio.BrokenResourceError):
            await server.receive_some()
        with pytest.raises(trio.BrokenResourceError):
            await server.send_all(b"after the failure")
        await server.aclose()
        assert tls_ref() is None
        del server
        assert stream_ref() is None
