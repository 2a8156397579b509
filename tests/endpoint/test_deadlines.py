"""Every deadline, with trio's autojump clock (no real sleeping), and every upload bound."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import pytest
import trio
import trio.testing

from core.wire import (
    BlockSet,
    ConsoleData,
    ConsoleSubscribe,
    Failure,
    StringReply,
    UnikernelConfig,
    UnikernelCreate,
    UnikernelInfo,
    frame,
)
from tests.endpoint.fakedaemon import Conn, reply_table
from tests.endpoint.harness import open_harness, with_fake_daemon
from tlsendpoint.limits import Limits

UPLOAD = UnikernelCreate(UnikernelConfig(image=b""))


def _outcomes(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "albatross.endpoint"]


async def _stall(conn: Conn) -> None:
    await conn.receive()
    await trio.sleep_forever()


async def test_handshake_timeout(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "albatross.endpoint")
    async with open_harness(tmp_path, tmp_path) as h:
        server_side, client_side = trio.testing.memory_stream_pair()
        start = trio.current_time()
        await h.endpoint.handle(server_side, "silent-peer")  # the client never says hello
        assert trio.current_time() - start == pytest.approx(30.0)
        assert await client_side.receive_some(10) == b""  # closed
    (line,) = _outcomes(caplog)
    assert 'outcome="TLS handshake not completed within 30 s"' in line
    assert "peer=silent-peer" in line


async def test_upload_timeout(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    async with open_harness(tmp_path, tmp_path) as h:
        client = await h.connect(h.pki.leaf("up", UPLOAD))
        await client.send_frames([b"part"], end=False)  # then nothing
        (reply,) = await client.read_all()
    assert reply.payload == Failure(
        "error retrieving unikernel image: waiting for data timed out after 60 s"
    )


async def test_daemon_reply_timeout(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    async with with_fake_daemon(tmp_path, {"vmmd": _stall}) as (daemon, h):
        (reply,) = await h.run(h.pki.leaf("x", UnikernelInfo()))
    assert reply.payload == Failure(
        "error reading from fd: waiting for the vmmd daemon's reply timed out after 120 s"
    )
    assert daemon.conns("vmmd")[0].received[0].payload == UnikernelInfo()  # type: ignore[union-attr]


async def test_policy_reply_timeout(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    async with with_fake_daemon(tmp_path, {"vmmd": _stall}) as (_daemon, h):
        alice = h.pki.sub_ca("alice")
        (reply,) = await h.run(h.pki.leaf("x", UnikernelInfo(), via=[alice]))
    assert reply.payload == Failure(
        "read error after writing policy: waiting for the reply timed out after 120 s"
    )


async def test_custom_daemon_timeout(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    limits = Limits(daemon_timeout=5)
    async with with_fake_daemon(tmp_path, {"vmmd": _stall}, limits) as (_daemon, h):
        start = trio.current_time()
        (reply,) = await h.run(h.pki.leaf("x", UnikernelInfo()))
        assert trio.current_time() - start == pytest.approx(5.0)
    assert isinstance(reply.payload, Failure) and "timed out after 5 s" in reply.payload.message


async def test_block_set_upload_stall(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    behaviours = {"vmmd": reply_table({BlockSet: StringReply("set")})}
    async with with_fake_daemon(tmp_path, behaviours) as (daemon, h):
        client = await h.connect(h.pki.leaf("disk", BlockSet(False)))
        await client.send_frames([b"x" * 100], end=False)
        (reply,) = await client.read_all()
    assert reply.payload == Failure("reading tls chunk: waiting for data timed out after 60 s")
    # the daemon got the chunk that arrived, and no end marker
    assert daemon.conns("vmmd")[0].received[1:] == [b"x" * 100]


async def test_idle_stream_timeout(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    async def quiet_console(conn: Conn) -> None:
        await conn.receive()
        await conn.send(StringReply("subscribed"))
        await trio.sleep_forever()

    async with with_fake_daemon(tmp_path, {"console": quiet_console}) as (daemon, h):
        start = trio.current_time()
        replies = await h.run(h.pki.leaf("t", ConsoleSubscribe(count=1)))
        assert trio.current_time() - start == pytest.approx(900.0)
        await daemon.conns("console")[0].wait_closed()
    assert replies[0].payload == StringReply("subscribed")
    assert replies[1].payload == Failure(
        "exception while reading from fd: no message from the console daemon for 900 s,"
        " closing the stream"
    )


async def test_client_that_stops_reading_is_dropped(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "albatross.endpoint")
    line = ConsoleData(dt.datetime(2026, 1, 1, tzinfo=dt.UTC), "x" * 1000)

    async def flood(conn: Conn) -> None:
        await conn.receive()
        for _ in range(10_000):  # bounded
            await conn.send(line)

    async with with_fake_daemon(tmp_path, {"console": flood}) as (daemon, h):
        # lockstep: a send only completes when the client reads, and this client never does
        server_side, client_side = trio.testing.lockstep_stream_pair()
        h.nursery.start_soon(h.endpoint.handle, server_side, "slow-reader")
        tls = trio.SSLStream(client_side, h.pki.client(h.pki.leaf("t", ConsoleSubscribe(count=1))))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(tls.do_handshake)
        while h.endpoint.active:
            await trio.sleep(1)
        await daemon.conns("console")[0].wait_closed()
        await trio.aclose_forcefully(tls)
    (log,) = _outcomes(caplog)
    assert "client gone: the client stopped reading the stream" in log


async def test_oversized_upload_frame(tmp_path: Path) -> None:
    limits = Limits(max_frame=1024)
    async with with_fake_daemon(tmp_path, {}, limits) as (daemon, h):
        client = await h.connect(h.pki.leaf("up", UPLOAD))
        await client.tls.send_all(b"\x00\x00\x04\x01")  # 1025 announced
        (reply,) = await client.read_all()
    assert reply.payload == Failure(
        "error retrieving unikernel image: frame of 1025 octets exceeds the limit of 1024 octets"
    )
    assert daemon.connections == []


async def test_image_over_the_limit(tmp_path: Path) -> None:
    limits = Limits(max_image=10_000)
    async with with_fake_daemon(tmp_path, {}, limits) as (daemon, h):
        client = await h.connect(h.pki.leaf("up", UPLOAD))
        await client.tls.send_all(frame(b"a" * 6000) + frame(b"b" * 6000))
        (reply,) = await client.read_all()
    assert reply.payload == Failure(
        "error retrieving unikernel image: the image exceeds the limit of 10000 octets"
        " (endpoint option --max-image)"
    )
    assert daemon.connections == []


async def test_upload_cut_short(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "albatross.endpoint")
    async with with_fake_daemon(tmp_path, {}) as (daemon, h):
        client = await h.connect(h.pki.leaf("up", UPLOAD))
        await client.tls.send_all(frame(b"abc")[:5])
        await client.tls.transport_stream.send_stream.aclose()  # TCP FIN without close_notify
        assert await client.read_all() == []  # a truncated TLS stream cannot carry a reply
    assert daemon.connections == []
    (line,) = _outcomes(caplog)
    assert 'outcome="failure: error retrieving unikernel image: client: connection broken' in line
