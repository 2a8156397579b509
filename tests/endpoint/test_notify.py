"""sd_notify: READY=1 once the endpoint accepts, STOPPING=1 on SIGTERM, from the main process.

A fake systemd: a unix datagram socket in tmp_path (or the abstract namespace), with
SO_PASSCRED so that each datagram says which process sent it.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from core.wire import UnikernelInfo, UnikernelInfoList
from tests.endpoint.fakedaemon import open_fake_daemon, reply_table
from tests.endpoint.pki import Pki
from tlsendpoint.notify import notify

SCRIPT = Path(sys.executable).parent / "albatross-tls-endpoint"
BEHAVIOURS = {"vmmd": reply_table({UnikernelInfo: UnikernelInfoList(())})}


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    sock.settimeout(30)
    yield sock, str(tmp_path / "notify")
    sock.close()


def test_sends_one_datagram_to_a_path(receiver: tuple[socket.socket, str]) -> None:
    sock, address = receiver
    assert notify("READY=1\nSTATUS=x", {"NOTIFY_SOCKET": address}) is True
    assert sock.recv(4096) == b"READY=1\nSTATUS=x"


def test_abstract_namespace() -> None:
    name = f"albatross-test-notify-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(30)
        assert notify("STOPPING=1", {"NOTIFY_SOCKET": "@" + name}) is True
        assert sock.recv(4096) == b"STOPPING=1"


@pytest.mark.parametrize(
    ("environ", "logged"),
    [
        ({}, ""),
        ({"NOTIFY_SOCKET": ""}, ""),
        ({"NOTIFY_SOCKET": "vsock:2:1234"}, "not a unix socket"),
        ({"NOTIFY_SOCKET": "/nonexistent/notify"}, "cannot notify systemd at /nonexistent/notify"),
    ],
)
def test_nothing_sent(
    environ: dict[str, str], logged: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="albatross.endpoint"):
        assert notify("READY=1", environ) is False
    assert logged in caplog.text
    if not logged:
        assert caplog.text == ""


def _credentials_pid(sock: socket.socket) -> tuple[bytes, int]:
    data, ancillary, _, _ = sock.recvmsg(4096, socket.CMSG_SPACE(12))
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid, _, _ = struct.unpack("iII", payload[:12])
            return data, pid
    raise AssertionError("no credentials on the datagram")


@asynccontextmanager
async def _endpoint(tmp_path: Path, address: str, *extra: str) -> AsyncIterator[trio.Process]:
    pki = Pki(tmp_path)
    async with open_fake_daemon(BEHAVIOURS) as daemon:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        files = [str(pki.ca_file), str(pki.cert_file), str(pki.key_file)]
        args = [str(SCRIPT), "--ip", "127.0.0.1", "--port", str(port), *extra]
        args += ["--tmpdir", str(daemon.tmpdir), *files]
        env = dict(os.environ, NOTIFY_SOCKET=address)
        process = await trio.lowlevel.open_process(args, env=env, stderr=subprocess.DEVNULL)
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()
            await process.wait()


@pytest.mark.parametrize("workers", [[], ["--workers", "2"]])
async def test_endpoint_notifies_ready_then_stopping(
    tmp_path: Path, receiver: tuple[socket.socket, str], workers: list[str]
) -> None:
    """With --workers the supervisor (the main process) notifies; the workers do not."""
    sock, address = receiver
    async with _endpoint(tmp_path, address, *workers) as process:
        data, sender = await trio.to_thread.run_sync(_credentials_pid, sock)
        assert data.startswith(b"READY=1\nSTATUS=")
        assert sender == process.pid
        process.send_signal(signal.SIGTERM)
        data, sender = await trio.to_thread.run_sync(_credentials_pid, sock)
        assert (data, sender) == (b"STOPPING=1", process.pid)
        with trio.fail_after(60):
            assert await process.wait() == 0
    sock.settimeout(0)
    with pytest.raises(BlockingIOError):  # nothing else: no worker notified
        sock.recv(4096)
