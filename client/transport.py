"""Connections to a daemon socket or to a TLS endpoint, under deadlines (the I/O shell).

Both return a byte stream; the caller frames it with :class:`transport.framed.FramedStream`,
whose errors :mod:`client.session` turns into albatross-client's texts.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import trio
from cryptography import x509

from client.errors import ClientError, CommunicationFailed, ConnectFailed
from client.leafcert import LeafChain
from client.progress import CountingStream
from client.tls import TLSClientStream, check_server_cert
from transport.unix import UnixStream, open_unix

__all__ = ["CONNECT_TIMEOUT", "HANDSHAKE_TIMEOUT", "connect_local", "connect_remote"]

#: Deadline for opening a socket or a TCP connection.
CONNECT_TIMEOUT = 10.0
#: Deadline for the TLS handshake.
HANDSHAKE_TIMEOUT = 30.0


async def connect_local(path: str) -> UnixStream:
    """Connect to a daemon socket (retrying while its backlog is full) within CONNECT_TIMEOUT."""
    try:
        with trio.fail_after(CONNECT_TIMEOUT):
            return await open_unix(path)
    except (OSError, trio.TooSlowError):
        raise ConnectFailed(f"couldn't connect to {path}") from None


async def connect_remote(
    host: str,
    port: int,
    chain: LeafChain,
    anchors: list[x509.Certificate],
    server_name: str | None = None,
    now: dt.datetime | None = None,
    sent: Callable[[int], None] | None = None,
) -> TLSClientStream:
    """TCP connect (happy eyeballs), TLS 1.3 handshake, server certificate checks.

    *sent* hears how many octets went out so far (the progress of a large chain).
    """
    try:
        with trio.fail_after(CONNECT_TIMEOUT):
            tcp = await trio.open_tcp_stream(host, port)
    except trio.TooSlowError:
        raise ConnectFailed(f"connect failed with timeout after {CONNECT_TIMEOUT:g} s") from None
    except OSError as exc:
        raise ConnectFailed(f"connect failed with {exc.strerror or exc}") from None
    wire: trio.abc.Stream = tcp if sent is None else CountingStream(tcp, sent)
    tls = TLSClientStream(wire, [chain.leaf, *chain.chain], chain.key, anchors, server_name, now)
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
    return tls
