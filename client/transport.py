"""Connections to a daemon socket or to a TLS endpoint, under deadlines (the I/O shell)."""

from __future__ import annotations

import datetime as dt

import trio
from cryptography import x509

from client.errors import ClientError, CommunicationFailed, ConnectFailed
from client.leafcert import LeafChain
from client.tls import TLSClientStream, check_server_cert

__all__ = ["CONNECT_TIMEOUT", "HANDSHAKE_TIMEOUT", "UnixStream", "connect_local", "connect_remote"]

#: Deadline for opening a socket or a TCP connection.
CONNECT_TIMEOUT = 10.0
#: Deadline for the TLS handshake.
HANDSHAKE_TIMEOUT = 30.0
_CHUNK = 65536


class UnixStream:
    """A trio stream with the small interface the session needs."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self._stream = stream

    async def send_all(self, data: bytes) -> None:
        try:
            await self._stream.send_all(data)
        except (trio.BrokenResourceError, OSError) as exc:
            raise CommunicationFailed(f"write failed: {exc}") from None

    async def receive_some(self) -> bytes:
        try:
            return bytes(await self._stream.receive_some(_CHUNK))
        except (trio.BrokenResourceError, OSError):
            return b""

    async def aclose(self) -> None:
        await self._stream.aclose()


async def connect_local(path: str) -> UnixStream:
    try:
        with trio.fail_after(CONNECT_TIMEOUT):
            stream = await trio.open_unix_socket(path)
    except (OSError, trio.TooSlowError):
        raise ConnectFailed(f"couldn't connect to {path}") from None
    return UnixStream(stream)


class _Guarded:
    """TLS stream whose transport errors become CommunicationFailed."""

    def __init__(self, tls: TLSClientStream) -> None:
        self.tls = tls

    async def send_all(self, data: bytes) -> None:
        try:
            await self.tls.send_all(data)
        except (trio.BrokenResourceError, OSError) as exc:
            raise CommunicationFailed(f"write failed: {exc}") from None

    async def receive_some(self) -> bytes:
        try:
            return await self.tls.receive_some()
        except (trio.BrokenResourceError, OSError):
            return b""

    async def aclose(self) -> None:
        await self.tls.aclose()


async def connect_remote(
    host: str,
    port: int,
    chain: LeafChain,
    anchors: list[x509.Certificate],
    server_name: str | None = None,
    now: dt.datetime | None = None,
) -> _Guarded:
    """TCP connect (happy eyeballs), TLS 1.3 handshake, server certificate checks."""
    try:
        with trio.fail_after(CONNECT_TIMEOUT):
            tcp = await trio.open_tcp_stream(host, port)
    except trio.TooSlowError:
        raise ConnectFailed(f"connect failed with timeout after {CONNECT_TIMEOUT:g} s") from None
    except OSError as exc:
        raise ConnectFailed(f"connect failed with {exc.strerror or exc}") from None
    tls = TLSClientStream(tcp, [chain.leaf, *chain.chain], chain.key, anchors, server_name, now)
    try:
        with trio.fail_after(HANDSHAKE_TIMEOUT):
            server_cert = await tls.do_handshake()
        check_server_cert(server_cert, server_name)
    except trio.TooSlowError:
        await trio.aclose_forcefully(tcp)
        raise CommunicationFailed("failed to establish TLS connection: timeout") from None
    except (trio.BrokenResourceError, OSError) as exc:
        await trio.aclose_forcefully(tcp)
        raise CommunicationFailed(f"failed to establish TLS connection: {exc}") from None
    except ClientError:
        await trio.aclose_forcefully(tcp)
        raise
    return _Guarded(tls)
