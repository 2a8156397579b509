"""The TLS set-up: max_cert_list really raised, one CA only, the verified chain only."""

from __future__ import annotations

import contextlib
import datetime as dt
import ssl
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ca import profiles
from core.clock import system_clock
from core.wire import UnikernelConfig, UnikernelCreate, UnikernelInfo
from tests.endpoint.pki import NOW, Identity, Pki, custom_cert, write_chain
from tlsendpoint.tlscontext import (
    DEFAULT_MAX_CERT_LIST,
    TLSSetupError,
    load_server_context,
    max_cert_list,
    peer_chain,
    set_max_cert_list,
    set_verify_time,
)

Side = trio.SSLStream[trio.StapledStream[Any, Any]]


async def handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> tuple[Side, Side]:
    left, right = trio.testing.memory_stream_pair()
    server = trio.SSLStream(left, server_ctx, server_side=True)
    client = trio.SSLStream(right, client_ctx, server_hostname=None)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.do_handshake)
        nursery.start_soon(client.do_handshake)
    return server, client


async def server_side_error(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> str:
    """The OpenSSL error that made the server abort the handshake."""
    left, right = trio.testing.memory_stream_pair()
    server = trio.SSLStream(left, server_ctx, server_side=True)
    client = trio.SSLStream(right, client_ctx, server_hostname=None)
    failure: list[str] = []

    async def serve() -> None:
        try:
            await server.do_handshake()
        except trio.BrokenResourceError as exc:
            failure.append(str(exc.__cause__))
        await server.transport_stream.aclose()

    async def connect() -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await client.do_handshake()
            await client.receive_some(10)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve)
        nursery.start_soon(connect)
    assert len(failure) == 1
    return failure[0]


def test_max_cert_list_is_raised_and_read_back() -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    assert max_cert_list(ctx) == 100 * 1024  # OpenSSL's default
    set_max_cert_list(ctx, 12345678)
    assert max_cert_list(ctx) == 12345678


def test_context_is_tls13_only_with_client_auth(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    ctx = load_server_context(pki.ca_file, pki.cert_file, pki.key_file)
    assert ctx.minimum_version == ctx.maximum_version == ssl.TLSVersion.TLSv1_3
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert max_cert_list(ctx) == DEFAULT_MAX_CERT_LIST


def test_ca_file_must_hold_exactly_one_certificate(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    two = write_chain(tmp_path / "two.pem", [pki.root, pki.server])
    with pytest.raises(TLSSetupError, match=r"expect single ca as cacert: .* holds 2"):
        load_server_context(two, pki.cert_file, pki.key_file)


def test_key_not_matching_certificate_is_refused(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    with pytest.raises(TLSSetupError, match="cannot use certificate"):
        load_server_context(pki.ca_file, pki.cert_file, tmp_path / "cacert.pem")


def test_unreadable_ca_file(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    with pytest.raises(TLSSetupError, match="cannot read CA file"):
        load_server_context(tmp_path / "missing.pem", pki.cert_file, pki.key_file)


async def test_verified_chain_drops_anchor_and_unverified_extras(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    alice = pki.sub_ca("alice")
    # a rogue CA certificate, self-signed, that the client sends along: not on the path
    rogue_key = profiles.generate_key()
    rogue = profiles.root_ca(rogue_key, "rogue", NOW)
    ident = pki.leaf("a1", UnikernelInfo(), via=[alice])
    sent = Identity([*ident.chain, rogue], ident.key)
    server_ctx = load_server_context(pki.ca_file, pki.cert_file, pki.key_file)
    server, _ = await handshake(server_ctx, pki.client(sent))
    chain = peer_chain(server._ssl_object)
    assert [c.subject.rfc4514_string() for c in chain] == ["CN=a1", "CN=alice"]


async def test_verified_chain_keeps_root_when_client_sent_it(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    ident = pki.leaf("x", UnikernelInfo())
    sent = Identity([*ident.chain, pki.root], ident.key)
    server_ctx = load_server_context(pki.ca_file, pki.cert_file, pki.key_file)
    server, _ = await handshake(server_ctx, pki.client(sent))
    assert [c.subject.rfc4514_string() for c in peer_chain(server._ssl_object)] == [
        "CN=x",
        "CN=ca",
    ]


def _big_create(pki: Pki, size: int) -> Identity:
    import os

    config = UnikernelConfig(image=os.urandom(size))
    return pki.leaf("big", UnikernelCreate(config))


async def test_eight_mib_leaf_passes_the_handshake(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    ident = _big_create(pki, 8 * 1024 * 1024)
    server_ctx = load_server_context(pki.ca_file, pki.cert_file, pki.key_file)
    server, _ = await handshake(server_ctx, pki.client(ident))
    leaf = peer_chain(server._ssl_object)[0]
    assert leaf.subject.rfc4514_string() == "CN=big"
    assert len(leaf.public_bytes(Encoding.DER)) > 8 * 1024 * 1024


async def test_default_openssl_limit_would_refuse_it(tmp_path: Path) -> None:
    # The reason for the ctypes call: without it the same handshake fails.
    pki = Pki(tmp_path)
    ident = _big_create(pki, 200 * 1024)
    server_ctx = load_server_context(pki.ca_file, pki.cert_file, pki.key_file, max_chain=100 * 1024)
    error = await server_side_error(server_ctx, pki.client(ident))
    assert "EXCESSIVE_MESSAGE_SIZE" in error


async def test_leaf_from_another_ca_fails_the_handshake(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    (tmp_path / "other").mkdir()
    other = Pki(tmp_path / "other")
    ident = other.leaf("x", UnikernelInfo())
    server_ctx = load_server_context(pki.ca_file, pki.cert_file, pki.key_file)
    error = await server_side_error(server_ctx, ident.client_context(tmp_path, pki.root))
    assert "CERTIFICATE_VERIFY_FAILED" in error


def test_refuses_a_libssl_other_than_the_ssl_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ssl, "OPENSSL_VERSION_NUMBER", 0x10101000)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with pytest.raises(TLSSetupError, match="but the ssl module was built for 0x10101000"):
        set_max_cert_list(ctx, 1 << 20)


def test_limit_out_of_range() -> None:
    with pytest.raises(TLSSetupError, match="out of range"):
        set_max_cert_list(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), 0)


#: A day far from any day this suite runs on: the pinned time, not today's, must decide.
FAR = dt.datetime(2031, 5, 17, 12, 0, tzinfo=dt.UTC)


def _far_leaf(pki: Pki) -> tuple[Identity, x509.Certificate]:
    """A leaf valid for one day from FAR, under a root and server issued at FAR."""
    cert, key = custom_cert(
        (pki.root, pki.root_key),
        "x",
        command=UnikernelInfo(),
        not_before=FAR,
        not_after=FAR + dt.timedelta(days=1),
    )
    return Identity([cert], key), cert


def test_verify_time_is_read_back(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    ctx = load_server_context(pki.ca_file, pki.cert_file, pki.key_file)
    set_verify_time(ctx, FAR)  # raises unless OpenSSL reports FAR back


@pytest.mark.parametrize(
    ("offset", "error"),
    [
        (dt.timedelta(seconds=-1), "certificate is not yet valid"),
        (dt.timedelta(seconds=0), None),
        (dt.timedelta(days=1, seconds=-1), None),
        (dt.timedelta(days=1, seconds=1), "certificate has expired"),
    ],
)
async def test_pinned_time_decides_validity_on_both_sides_of_the_boundary(
    tmp_path: Path, offset: dt.timedelta, error: str | None
) -> None:
    pki = Pki(tmp_path, now=FAR, verify_time=FAR)  # the client judges the server at FAR too
    identity, leaf = _far_leaf(pki)
    server_ctx = load_server_context(pki.ca_file, pki.cert_file, pki.key_file)
    set_verify_time(server_ctx, leaf.not_valid_before_utc + offset)
    if error is None:
        server, _ = await handshake(server_ctx, pki.client(identity))
        assert peer_chain(server._ssl_object)[0] == leaf
    else:
        assert error in await server_side_error(server_ctx, pki.client(identity))


async def test_without_a_pinned_time_openssl_reads_the_system_clock(tmp_path: Path) -> None:
    """The twin of the test above: a chain valid only from 100 days after today is refused."""
    later = system_clock() + dt.timedelta(days=100)
    pki = Pki(tmp_path, now=later, verify_time=later)
    identity = pki.leaf("x", UnikernelInfo())
    server_ctx = load_server_context(pki.ca_file, pki.cert_file, pki.key_file)
    assert "certificate is not yet valid" in await server_side_error(
        server_ctx, pki.client(identity)
    )
