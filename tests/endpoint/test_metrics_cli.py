"""``--metrics`` on the command line: its checks, and one scrape over all ``--workers``."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from core.wire import UnikernelInfo, UnikernelInfoList
from tests.endpoint.fakedaemon import open_fake_daemon, reply_table
from tests.endpoint.harness import Client
from tests.endpoint.pki import Pki
from tlsendpoint.cli import main

SCRIPT = Path(sys.executable).parent / "albatross-tls-endpoint"
_SPAWNED: list[trio.Process] = []


@pytest.fixture(autouse=True)
def _no_leftover_processes() -> Iterator[None]:
    yield
    while _SPAWNED:
        process = _SPAWNED.pop()
        if process.poll() is None:
            process.kill()
            os.waitpid(process.pid, 0)


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as info:
        main(args)
    code = info.value.code
    assert isinstance(code, int)
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--metrics", "0.0.0.0:9464"], "0.0.0.0 is not a loopback address"),
        (["--metrics", "192.0.2.1:9464"], "add --metrics-public to serve them there"),
        (["--metrics", "9464"], "'9464' is not HOST:PORT"),
        (["--metrics", "127.0.0.1:99999"], "'127.0.0.1:99999' is not HOST:PORT"),
        (["--metrics-max-paths", "0", "--metrics", "127.0.0.1:0"], "--metrics-max-paths"),
        (["--inetd", "-q", "--metrics", "127.0.0.1:0"], "--metrics needs a long-running"),
    ],
)
def test_metrics_options_that_cannot_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    pki = Pki(tmp_path)
    files = [str(pki.ca_file), str(pki.cert_file), str(pki.key_file)]
    code, err = _run([*extra, "--tmpdir", str(tmp_path), *files], capsys)
    assert code == 124
    assert message in err


def test_a_busy_metrics_port_stops_the_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pki = Pki(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        code, err = _run(
            ["--metrics", f"127.0.0.1:{port}", "--ip", "127.0.0.1", "--port", "0",
             "--tmpdir", str(tmp_path), "--state-dir", str(tmp_path / "state"), "-q",
             str(pki.ca_file), str(pki.cert_file), str(pki.key_file)],
            capsys,
        )  # fmt: skip
    assert code == 125
    assert f"cannot listen for metrics on 127.0.0.1:{port}" in err


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Log:
    """Everything a process wrote to stderr so far, read as needed (bounded waits)."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream = stream
        self.seen = b""

    async def wait_for(self, pattern: bytes, count: int = 1) -> re.Match[bytes]:
        with trio.fail_after(60):
            while len(found := list(re.finditer(pattern, self.seen))) < count:
                chunk = await self.stream.receive_some(4096)
                assert chunk, f"the endpoint exited early: {self.seen!r}"
                self.seen += chunk
        return found[0]


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as reply:
        text = reply.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_one_scrape_sees_every_worker(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    port, metrics_port = _free_port(), _free_port()
    behaviours = {"vmmd": reply_table({UnikernelInfo: UnikernelInfoList(())})}
    async with open_fake_daemon(behaviours) as daemon:
        process = await trio.lowlevel.open_process(
            [str(SCRIPT), "--ip", "127.0.0.1", "--port", str(port), "--workers", "2",
             "--metrics", f"127.0.0.1:{metrics_port}", "--tmpdir", str(daemon.tmpdir),
             "--state-dir", str(tmp_path / "state"),
             str(pki.ca_file), str(pki.cert_file), str(pki.key_file)],
            stderr=subprocess.PIPE,
        )  # fmt: skip
        _SPAWNED.append(process)
        assert process.stderr is not None
        log = Log(process.stderr)
        found = await log.wait_for(rb"workers' values in (\S+)\)")
        directory = Path(found.group(1).decode())
        assert directory.is_dir()
        for number in range(6):
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            identity = pki.leaf(f"probe{number}", UnikernelInfo())
            tls = trio.SSLStream(stream, pki.client(identity), server_hostname=None)
            await tls.do_handshake()
            await Client(tls).read_all()
            await trio.aclose_forcefully(tls)
        # the log line of the sixth connection comes after its metrics were counted
        await log.wait_for(rb'command="unikernel info" outcome="success', count=6)
        found_samples = await trio.to_thread.run_sync(_scrape, metrics_port)
        key = ("albatross_endpoint_requests_total",
               (("kind", "unikernel_info"), ("outcome", "success")))  # fmt: skip
        assert found_samples[key] == 6
        assert found_samples[("albatross_endpoint_open_connections", ())] == 0
        assert found_samples[("albatross_endpoint_security_store_up", ())] == 1
        workers = {p.stem.rsplit("_", 1)[-1] for p in directory.glob("counter_*.db")}
        assert workers and str(process.pid) not in workers  # the workers count, not the supervisor
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(60):
            assert await process.wait() == 0
    assert not directory.exists()  # the supervisor removed it
