"""Real endpoint processes for the crash and full-disk tests: inetd children and a listener.

An inetd child serves one connection over a socket pair and exits, so presenting a
leaf to a fresh child is presenting it to a restarted endpoint.  Every process started
here is killed when the test ends, whatever happened.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import trio

from core.wire import Message, Payload, PolicyAdd, StringReply, UnikernelDestroy
from tests.endpoint.fakedaemon import Behaviour, Conn, FakeDaemon
from tests.endpoint.harness import Client
from tests.endpoint.pki import Identity, Pki
from transport.framed import PeerClosed

__all__ = ["DESTROYED", "Destroys", "Endpoints", "open_endpoints"]

SCRIPT = Path(sys.executable).parent / "albatross-tls-endpoint"
DESTROYED = StringReply("destroyed unikernel")


@dataclass
class Destroys:
    """A vmmd that answers destroys - or holds its reply while *hold* is set."""

    hold: bool = False
    arrived: trio.Event = field(default_factory=trio.Event)

    def behaviour(self) -> Behaviour:
        async def behave(conn: Conn) -> None:
            while True:
                try:
                    message = await conn.receive()
                except PeerClosed:
                    return
                if isinstance(message.payload, PolicyAdd):
                    await conn.send(StringReply("added policy"), message.header.name)
                    continue
                self.arrived.set()
                if self.hold:
                    await trio.sleep_forever()
                await conn.send(DESTROYED, message.header.name)

        return behave

    @staticmethod
    def count(daemon: FakeDaemon) -> int:
        """How many destroys reached the daemon, over all connections."""
        return sum(
            isinstance(item, Message) and isinstance(item.payload, UnikernelDestroy)
            for conn in daemon.conns("vmmd")
            for item in conn.received
        )


@dataclass
class Endpoints:
    pki: Pki
    daemon: FakeDaemon
    state_dir: Path
    processes: list[trio.Process] = field(default_factory=list)

    def args(self, *extra: str) -> list[str]:
        return [
            str(SCRIPT), *extra, "--tmpdir", str(self.daemon.tmpdir),
            "--state-dir", str(self.state_dir),
            str(self.pki.ca_file), str(self.pki.cert_file), str(self.pki.key_file),
        ]  # fmt: skip

    async def spawn(
        self,
        args: list[str],
        env: Mapping[str, str] | None = None,
        preexec: Callable[[], None] | None = None,
        *,
        stdin: int | None = None,
        stdout: int | None = None,
        stderr: int | None = None,
    ) -> trio.Process:
        process = await trio.lowlevel.open_process(
            args, env={**os.environ, **(env or {})}, preexec_fn=preexec,
            stdin=stdin, stdout=stdout, stderr=stderr,
        )  # fmt: skip
        self.processes.append(process)
        return process

    async def inetd(
        self,
        identity: Identity,
        env: Mapping[str, str] | None = None,
        while_waiting: Callable[[trio.Process], object] | None = None,
    ) -> tuple[Payload | None, int]:
        """Present *identity* to a fresh inetd child: its final reply (None: none), exit code.

        *while_waiting* (a coroutine function) runs beside the client, given the process.
        """
        ours, theirs = socket.socketpair()
        process = await self.spawn(
            self.args("--inetd", "-q"), env, stdin=theirs.fileno(), stdout=theirs.fileno()
        )
        theirs.close()
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(ours))
        tls = trio.SSLStream(stream, self.pki.client(identity), server_hostname=None)
        messages: list[Message] = []
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                if while_waiting is not None:
                    nursery.start_soon(while_waiting, process)  # type: ignore[arg-type]
                try:
                    await tls.do_handshake()
                    messages = await Client(tls).read_all()
                except trio.BrokenResourceError:
                    pass
            code = await process.wait()
        await trio.aclose_forcefully(tls)
        return (messages[-1].payload if messages else None), code

    async def listening(self, port: int, preexec: Callable[[], None] | None = None) -> trio.Process:
        """A TCP endpoint on 127.0.0.1:*port*, once it says it listens."""
        process = await self.spawn(
            self.args("--ip", "127.0.0.1", "--port", str(port)),
            preexec=preexec,
            stderr=subprocess.PIPE,
        )
        assert process.stderr is not None
        seen = b""
        with trio.fail_after(30):
            while b"listening on" not in seen:
                chunk = await process.stderr.receive_some(4096)
                assert chunk, f"the endpoint exited before listening: {seen!r}"
                seen += chunk
        return process

    async def tcp(self, port: int, identity: Identity) -> Payload | None:
        """Present *identity* over TCP: the final reply, None if there was none."""
        with trio.fail_after(60):
            tcp = await trio.open_tcp_stream("127.0.0.1", port)
            tls = trio.SSLStream(tcp, self.pki.client(identity), server_hostname=None)
            try:
                await tls.do_handshake()
                messages = await Client(tls).read_all()
            except trio.BrokenResourceError:
                messages = []
            await trio.aclose_forcefully(tls)
        return messages[-1].payload if messages else None


@asynccontextmanager
async def open_endpoints(pki: Pki, daemon: FakeDaemon, state_dir: Path) -> AsyncIterator[Endpoints]:
    endpoints = Endpoints(pki, daemon, state_dir)
    try:
        yield endpoints
    finally:
        for process in endpoints.processes:
            if process.returncode is None:
                process.kill()
                with trio.CancelScope(shield=True), trio.move_on_after(10):
                    await process.wait()
