"""Files made by our `generate` and `ca delegate` work with our endpoint, end to end.

The real clock is used (the endpoint checks validity against it).
The endpoint loads cacert.pem/server.pem/server.key as written by `generate`;
a friend two delegations down (operator -> alice -> bob) connects with a leaf
signed by the key in bob's bundle.  The fake daemon must see bob's and alice's
policies, deepest first, and the command under alice:bob:b1.
"""

from __future__ import annotations

import datetime as dt
import ssl
from pathlib import Path

import pytest
import trio
import trio.testing
from click.testing import CliRunner
from cryptography.hazmat.primitives.serialization import Encoding

from ca.cli import ca_group, generate_command
from ca.profiles import generate_key, leaf
from ca.store import load_bundle
from core.pem import encode_certificates, encode_private_key
from core.wire import (
    FrameDecoder,
    Header,
    Message,
    Name,
    Policy,
    PolicyAdd,
    UnikernelInfo,
    UnikernelInfoList,
    decode_message,
)
from tests.endpoint.fakedaemon import open_fake_daemon, reply_table
from tlsendpoint.limits import Limits
from tlsendpoint.server import Endpoint
from tlsendpoint.tlscontext import load_server_context

ALICE = Policy(2, frozenset({0}), 64, 100, frozenset({"service"}))
BOB = Policy(1, frozenset({0}), 32, 10, frozenset({"service"}))


def _provision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    assert runner.invoke(generate_command, ["ca", "db"]).exit_code == 0
    alice = [
        "delegate",
        "alice",
        "2",
        "--mem",
        "64",
        "--size",
        "100",
        "--bridge",
        "service",
        "--ca",
        "cacert.pem",
        "--ca-key",
        "ca.key",
        "--endpoint",
        "127.0.0.1:1025",
    ]
    assert runner.invoke(ca_group, alice).exit_code == 0
    bob = [
        "delegate",
        "bob",
        "1",
        "--mem",
        "32",
        "--size",
        "10",
        "--bridge",
        "service",
        "--bundle",
        "alice.bundle",
    ]
    assert runner.invoke(ca_group, bob).exit_code == 0


def _client_context(tmp_path: Path) -> ssl.SSLContext:
    bundle = load_bundle(tmp_path / "bob.bundle")
    key = generate_key()
    request = leaf(
        bundle.chain[0],
        bundle.key,
        key.public_key(),
        "b1",
        UnikernelInfo(),
        dt.datetime.now(dt.UTC),
    )
    (tmp_path / "b1.pem").write_bytes(encode_certificates([request, *bundle.chain]))
    (tmp_path / "b1.key").write_bytes(encode_private_key(key))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.load_verify_locations(
        cadata=b"".join(c.public_bytes(Encoding.PEM) for c in bundle.server_ca).decode()
    )
    context.load_cert_chain(str(tmp_path / "b1.pem"), str(tmp_path / "b1.key"))
    return context


async def test_delegated_friend_reaches_the_daemon(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _provision(tmp_path, monkeypatch)
    server_context = load_server_context(
        tmp_path / "cacert.pem", tmp_path / "server.pem", tmp_path / "server.key"
    )
    info = UnikernelInfoList(())
    async with open_fake_daemon({"vmmd": reply_table({UnikernelInfo: info})}) as daemon:
        endpoint = Endpoint(server_context, daemon.socket_dir, Limits())
        server_side, client_side = trio.testing.memory_stream_pair()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(endpoint.handle, server_side, "test-peer")
            tls = trio.SSLStream(client_side, _client_context(tmp_path), server_hostname=None)
            with trio.fail_after(10):
                await tls.do_handshake()
                received = b""
                while chunk := await tls.receive_some(65536):
                    received += chunk
    (conn,) = daemon.conns("vmmd")
    assert conn.received == [
        Message(Header(Name(("alice", "bob")), 0), PolicyAdd(BOB)),
        Message(Header(Name(("alice",)), 1), PolicyAdd(ALICE)),
        Message(Header(Name(("alice", "bob"), "b1"), 2), UnikernelInfo()),
    ]
    decoder = FrameDecoder(1 << 20)
    decoder.feed(received)
    (reply,) = [decode_message(body) for body in decoder.frames() if isinstance(body, bytes)]
    assert reply == Message(Header(Name(("alice", "bob"), "b1"), 0), info)
