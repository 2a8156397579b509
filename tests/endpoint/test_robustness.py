"""Peers vanishing mid-stream leak nothing; 200 at once; the connection limit; SIGTERM grace."""

from __future__ import annotations

import datetime as dt
import errno
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
import trio.testing

from core.wire import (
    ConsoleData,
    ConsoleSubscribe,
    Failure,
    StringReply,
    UnikernelInfo,
    UnikernelInfoList,
)
from tests.endpoint.fakedaemon import Behaviour, Conn, FakeDaemon, open_fake_daemon, reply_table
from tests.endpoint.harness import Client
from tests.endpoint.pki import Identity, Pki
from tlsendpoint.activation import tcp_listen_socket
from tlsendpoint.limits import Limits
from tlsendpoint.server import ACCEPT_ERROR_PAUSE, Endpoint
from tlsendpoint.tlscontext import load_server_context

INFO = UnikernelInfoList(())
LINE = ConsoleData(dt.datetime(2026, 11, 27, tzinfo=dt.UTC), "tick")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def task_count() -> int:
    def count(task: trio.lowlevel.Task) -> int:
        return 1 + sum(count(t) for n in task.child_nurseries for t in n.child_tasks)

    root = trio.lowlevel.current_root_task()
    assert root is not None
    return count(root)


async def wait_until_idle(endpoint: Endpoint, daemon: FakeDaemon) -> None:
    with trio.fail_after(20):
        while endpoint.active or not all(c.finished for c in daemon.connections):
            await trio.sleep(0.01)


@asynccontextmanager
async def tcp_endpoint(
    tmp_path: Path, behaviours: dict[str, Behaviour], limits: Limits | None = None
) -> AsyncIterator[tuple[Endpoint, FakeDaemon, int, Pki]]:
    pki = Pki(tmp_path)
    async with open_fake_daemon(behaviours) as daemon:
        ctx = load_server_context(pki.ca_file, pki.cert_file, pki.key_file)
        endpoint = Endpoint(ctx, daemon.socket_dir, limits or Limits())
        sock = tcp_listen_socket("127.0.0.1", 0, 512)
        listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
        shutdown = trio.Event()
        async with trio.open_nursery() as nursery:
            (address,) = await nursery.start(endpoint.serve, [listener], shutdown)
            yield endpoint, daemon, address[1], pki
            shutdown.set()


async def tls_client(port: int, pki: Pki, identity: Identity) -> Client:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    tls = trio.SSLStream(stream, pki.client(identity), server_hostname=None)
    await tls.do_handshake()
    return Client(tls)


async def endless_console(conn: Conn) -> None:
    await conn.receive()
    await conn.send(StringReply("subscribed"))
    for _ in range(100_000):  # bounded: ends long after the client left
        await conn.send(LINE)
        await trio.sleep(0.001)


async def test_clients_vanishing_mid_stream_leak_nothing(tmp_path: Path) -> None:
    async with tcp_endpoint(tmp_path, {"console": endless_console}) as (
        endpoint,
        daemon,
        port,
        pki,
    ):
        identity = pki.leaf("t", ConsoleSubscribe(count=1))
        # warm up once so lazily created resources are not counted as leaks
        client = await tls_client(port, pki, identity)
        await client.read_one()
        await trio.aclose_forcefully(client.tls)
        await wait_until_idle(endpoint, daemon)
        fds, tasks = open_fds(), task_count()
        for _ in range(20):
            client = await tls_client(port, pki, identity)
            for _ in range(3):
                await client.read_one()
            await trio.aclose_forcefully(client.tls)  # vanish: no close_notify
        await wait_until_idle(endpoint, daemon)
        assert len(daemon.conns("console")) == 21
        assert (open_fds(), task_count()) == (fds, tasks)


async def test_daemon_vanishing_mid_stream(tmp_path: Path) -> None:
    async def short_console(conn: Conn) -> None:
        await conn.receive()
        await conn.send(StringReply("subscribed"))
        await conn.send(LINE)  # then the daemon goes away

    async with tcp_endpoint(tmp_path, {"console": short_console}) as (endpoint, daemon, port, pki):
        fds = open_fds()
        client = await tls_client(port, pki, pki.leaf("t", ConsoleSubscribe(count=1)))
        replies = await client.read_all()
        await trio.aclose_forcefully(client.tls)
        await wait_until_idle(endpoint, daemon)
        assert open_fds() == fds
    assert [m.payload for m in replies[:2]] == [StringReply("subscribed"), LINE]
    assert replies[2].payload == Failure(
        "exception while reading from fd: console daemon closed the connection before sending"
        " a frame"
    )
    assert client.clean_close  # close_notify after the final failure


async def test_two_hundred_concurrent_connections(tmp_path: Path) -> None:
    behaviours = {"vmmd": reply_table({UnikernelInfo: INFO})}
    async with tcp_endpoint(tmp_path, behaviours) as (endpoint, daemon, port, pki):
        identity = pki.leaf("many", UnikernelInfo())
        results: list[object] = []

        async def one() -> None:
            client = await tls_client(port, pki, identity)
            results.extend(m.payload for m in await client.read_all())
            await trio.aclose_forcefully(client.tls)

        with trio.fail_after(120):
            async with trio.open_nursery() as nursery:
                for _ in range(200):
                    nursery.start_soon(one)
        await wait_until_idle(endpoint, daemon)
    assert results == [INFO] * 200
    assert len(daemon.conns("vmmd")) == 200
    assert sorted(c.received[0].header.sequence for c in daemon.connections) == list(range(200))  # type: ignore[union-attr]


async def test_connection_limit_makes_new_connections_wait(tmp_path: Path) -> None:
    limits = Limits(max_connections=2)
    behaviours = {"console": endless_console, "vmmd": reply_table({UnikernelInfo: INFO})}
    async with tcp_endpoint(tmp_path, behaviours, limits) as (endpoint, daemon, port, pki):
        held = []
        for _ in range(2):
            client = await tls_client(port, pki, pki.leaf("t", ConsoleSubscribe(count=1)))
            await client.read_one()
            held.append(client)
        third_done = trio.Event()
        third: list[object] = []

        async def third_client() -> None:
            client = await tls_client(port, pki, pki.leaf("x", UnikernelInfo()))
            third.extend(m.payload for m in await client.read_all())
            third_done.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(third_client)
            with trio.fail_after(20):  # the accept loop waits for a free slot
                while endpoint.limiter.statistics().tasks_waiting != 1:
                    await trio.sleep(0.01)
            assert not third_done.is_set() and daemon.conns("vmmd") == []
            await trio.aclose_forcefully(held.pop().tls)
            with trio.fail_after(20):
                await third_done.wait()
        assert third == [INFO]
        await trio.aclose_forcefully(held.pop().tls)


class MemoryListener(trio.abc.Listener[trio.abc.Stream]):
    """Connections as in-memory stream pairs, so the grace period runs on the mock clock."""

    def __init__(self) -> None:
        self.send, self.receive = trio.open_memory_channel[trio.abc.Stream](0)

    async def connect(self) -> trio.abc.Stream:
        server_side, client_side = trio.testing.memory_stream_pair()
        await self.send.send(server_side)
        return client_side

    async def accept(self) -> trio.abc.Stream:
        return await self.receive.receive()

    async def aclose(self) -> None:
        await self.receive.aclose()


async def test_shutdown_stops_accepting_and_ends_streams_after_grace(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "albatross.endpoint")

    async def slow_console(conn: Conn) -> None:
        await conn.receive()
        await conn.send(StringReply("subscribed"))
        for _ in range(1000):
            await trio.sleep(1)
            await conn.send(LINE)

    pki = Pki(tmp_path)
    async with open_fake_daemon({"console": slow_console}) as daemon:
        ctx = load_server_context(pki.ca_file, pki.cert_file, pki.key_file)
        endpoint = Endpoint(ctx, daemon.socket_dir, Limits(grace_period=10))
        listener, shutdown = MemoryListener(), trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(endpoint.serve, [listener], shutdown)
            stream = await listener.connect()
            tls = trio.SSLStream(stream, pki.client(pki.leaf("t", ConsoleSubscribe(count=1))))
            await tls.do_handshake()
            client = Client(tls)
            assert (await client.read_one()).payload == StringReply("subscribed")
            stopped_at = trio.current_time()
            shutdown.set()
            replies = await client.read_all()  # the stream goes on during the grace period
            ended_at = trio.current_time()
            try:
                await listener.connect()
                accepted_after_shutdown = True
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                accepted_after_shutdown = False
        await daemon.conns("console")[0].wait_closed()
    assert not accepted_after_shutdown
    assert 8 <= len(replies) <= 10 and all(m.payload == LINE for m in replies)
    assert ended_at - stopped_at == 10
    lines = [r.getMessage() for r in caplog.records if r.name == "albatross.endpoint"]
    assert "stopping: 1 connection(s) still running, 10 s grace period" in lines
    assert any('outcome="ended by shutdown (grace period over)"' in line for line in lines)


class FlakyListener(MemoryListener):
    """Fails its first accepts with EMFILE, as a process out of file descriptors would."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def accept(self) -> trio.abc.Stream:
        if self.failures:
            self.failures -= 1
            await trio.lowlevel.checkpoint()
            raise OSError(errno.EMFILE, "Too many open files")
        return await super().accept()


async def test_accept_errors_pause_and_recover(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "albatross.endpoint")
    pki = Pki(tmp_path)
    async with open_fake_daemon({"vmmd": reply_table({UnikernelInfo: INFO})}) as daemon:
        ctx = load_server_context(pki.ca_file, pki.cert_file, pki.key_file)
        endpoint = Endpoint(ctx, daemon.socket_dir, Limits())
        listener, shutdown = FlakyListener(failures=3), trio.Event()
        async with trio.open_nursery() as nursery:
            start = trio.current_time()
            nursery.start_soon(endpoint.serve, [listener], shutdown)
            stream = await listener.connect()
            accepted_at = trio.current_time()
            tls = trio.SSLStream(stream, pki.client(pki.leaf("x", UnikernelInfo())))
            await tls.do_handshake()
            assert [m.payload for m in await Client(tls).read_all()] == [INFO]
            shutdown.set()
    errors = [r for r in caplog.records if "accept failed" in r.getMessage()]
    assert len(errors) == 3  # one line per failure, not a flood
    assert accepted_at - start == pytest.approx(3 * ACCEPT_ERROR_PAUSE)


async def test_a_refused_upload_still_reaches_the_client_while_it_sends(tmp_path: Path) -> None:
    """The endpoint answers before the client has finished sending; closing then would make
    the kernel answer the client's data with a reset that destroys the reply: it lingers."""
    from core.wire import UnikernelConfig, UnikernelCreate, frame

    limits = Limits(max_image=10_000)
    async with tcp_endpoint(tmp_path, {}, limits) as (endpoint, daemon, port, pki):
        client = await tls_client(port, pki, pki.leaf("up", UnikernelCreate(UnikernelConfig(b""))))
        chunk = frame(b"a" * 60_000)
        sent = 0

        async def upload() -> None:
            nonlocal sent
            for _ in range(150):  # 9 MiB: far more than the socket buffers hold
                await client.tls.send_all(chunk)
                sent += len(chunk)

        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(upload)
                replies = await client.read_all()
        await trio.aclose_forcefully(client.tls)
        await wait_until_idle(endpoint, daemon)
    assert [m.payload for m in replies] == [
        Failure(
            "error retrieving unikernel image: the image exceeds the limit of 10000 octets"
            " (endpoint option --max-image)"
        )
    ]
    assert client.clean_close and sent == 150 * len(chunk)
