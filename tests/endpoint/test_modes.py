"""The endpoint started the way each deployment starts it: TCP, systemd (both kinds), inetd."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import trio

from core.wire import Name, UnikernelInfo, UnikernelInfoList
from tests.endpoint.fakedaemon import FakeDaemon, open_fake_daemon, reply_table
from tests.endpoint.harness import Client
from tests.endpoint.pki import Pki
from tlsendpoint.activation import ActivationError, systemd_socket, tcp_listen_socket
from tlsendpoint.limits import Limits
from tlsendpoint.server import Endpoint
from tlsendpoint.tlscontext import load_server_context

SCRIPT = Path(sys.executable).parent / "albatross-tls-endpoint"
_SPAWNED: list[trio.Process] = []


async def _spawn(args: Sequence[str], **kwargs: Any) -> trio.Process:
    process = await trio.lowlevel.open_process(list(args), **kwargs)
    _SPAWNED.append(process)
    return process


@pytest.fixture(autouse=True)
def _no_leftover_processes() -> Iterator[None]:
    """A failing test must not leave an endpoint running."""
    yield
    while _SPAWNED:
        process = _SPAWNED.pop()
        if process.poll() is None:
            process.kill()
            os.waitpid(process.pid, 0)


INFO = UnikernelInfoList(())
BEHAVIOURS = {"vmmd": reply_table({UnikernelInfo: INFO})}


async def _info_over(stream: trio.abc.Stream, pki: Pki) -> list[object]:
    identity = pki.leaf("probe", UnikernelInfo())
    tls = trio.SSLStream(stream, pki.client(identity), server_hostname=None)
    await tls.do_handshake()
    messages = await Client(tls).read_all()
    await trio.aclose_forcefully(tls)
    return [(m.header.name, m.payload) for m in messages]


EXPECTED = [(Name((), "probe"), INFO)]


# -- in-process TCP ---------------------------------------------------------------


@pytest.mark.parametrize("ip", ["127.0.0.1", "::"])
async def test_tcp_listener(tmp_path: Path, ip: str) -> None:
    pki = Pki(tmp_path)
    try:
        sock = tcp_listen_socket(ip, 0, 16)
    except ActivationError as exc:  # pragma: no cover - host without IPv6
        pytest.skip(f"no IPv6 on this host: {exc}")
    async with open_fake_daemon(BEHAVIOURS) as daemon:
        ctx = load_server_context(pki.ca_file, pki.cert_file, pki.key_file)
        endpoint = Endpoint(ctx, daemon.socket_dir, Limits())
        shutdown = trio.Event()
        listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
        async with trio.open_nursery() as nursery:
            (address,) = await nursery.start(endpoint.serve, [listener], shutdown)
            stream = await trio.open_tcp_stream("127.0.0.1", address[1])  # v4 also on "::"
            assert await _info_over(stream, pki) == EXPECTED
            shutdown.set()


def test_bad_ip_and_busy_port() -> None:
    with pytest.raises(ActivationError, match="is not an IPv4 or IPv6 address"):
        tcp_listen_socket("localhost", 0, 1)
    taken = tcp_listen_socket("127.0.0.1", 0, 1)
    try:
        with pytest.raises(ActivationError, match=r"cannot listen on 127\.0\.0\.1 port"):
            tcp_listen_socket("127.0.0.1", taken.getsockname()[1], 1)
    finally:
        taken.close()


@pytest.mark.parametrize(
    ("environ", "text"),
    [
        ({}, "LISTEN_PID and LISTEN_FDS are not set"),
        ({"LISTEN_PID": "1", "LISTEN_FDS": "1"}, "LISTEN_PID is 1, but this process is 42"),
        ({"LISTEN_PID": "42", "LISTEN_FDS": "2"}, "LISTEN_FDS is 2; exactly one socket needed"),
    ],
)
def test_systemd_environment_errors(environ: dict[str, str], text: str) -> None:
    with pytest.raises(ActivationError, match=text) as info:
        systemd_socket(environ, 42)
    assert info.value.message.startswith("Systemd socket activation error")
    assert info.value.exit_code == 125


# -- subprocesses, exactly as the units start it ----------------------------------------


def _args(pki: Pki, daemon: FakeDaemon, *extra: str) -> list[str]:
    return [
        str(SCRIPT),
        *extra,
        "--tmpdir",
        str(daemon.tmpdir),
        str(pki.ca_file),
        str(pki.cert_file),
        str(pki.key_file),
    ]


def _systemd_wrapper(fd: int, args: Sequence[str]) -> list[str]:
    """Put *fd* at 3 and set LISTEN_* for the exec'd endpoint, as systemd does."""
    code = (
        "import os,sys; os.dup2(int(sys.argv[1]), 3); "
        "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1'); "
        "os.execv(sys.argv[2], sys.argv[2:])"
    )
    return [sys.executable, "-c", code, str(fd), *args]


async def _wait_for(stream: trio.abc.ReceiveStream, text: bytes) -> bytes:
    seen = b""
    with trio.fail_after(30):
        while text not in seen:
            chunk = await stream.receive_some(4096)
            assert chunk, f"endpoint exited before printing {text!r}: {seen!r}"
            seen += chunk
    return seen


async def _finish(process: trio.Process) -> tuple[int, bytes]:
    assert process.stderr is not None
    rest = b""
    with trio.fail_after(30):
        while chunk := await process.stderr.receive_some(4096):
            rest += chunk
        code = await process.wait()
    return code, rest


def _free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (for an endpoint started by port)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def _spawn_two_workers(pki: Pki, daemon: FakeDaemon) -> trio.Process:
    """The endpoint with --workers 2 on a free port, once its supervisor has started them."""
    args = _args(pki, daemon, "--ip", "127.0.0.1", "--port", str(_free_port()), "--workers", "2")
    process = await _spawn(args, stderr=subprocess.PIPE)
    assert process.stderr is not None
    await _wait_for(process.stderr, b"started 2 workers")
    return process


async def test_tcp_subprocess_and_sigterm(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    port = _free_port()
    async with open_fake_daemon(BEHAVIOURS) as daemon:
        process = await _spawn(
            _args(pki, daemon, "--ip", "127.0.0.1", "--port", str(port)), stderr=subprocess.PIPE
        )
        assert process.stderr is not None
        await _wait_for(process.stderr, b"listening on")
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        assert await _info_over(stream, pki) == EXPECTED
        await _wait_for(process.stderr, b'name=":probe" command="unikernel info"')
        process.send_signal(signal.SIGTERM)
        code, log = await _finish(process)
    assert code == 0
    assert b"stopped" in log


async def test_systemd_accept_no(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    listening = tcp_listen_socket("127.0.0.1", 0, 16)
    port = listening.getsockname()[1]
    async with open_fake_daemon(BEHAVIOURS) as daemon:
        args = _systemd_wrapper(
            listening.fileno(), _args(pki, daemon, "--systemd-socket-activation")
        )
        process = await _spawn(args, pass_fds=(listening.fileno(),), stderr=subprocess.PIPE)
        listening.close()
        assert process.stderr is not None
        await _wait_for(process.stderr, b"listening on")
        for _ in range(2):  # a listener serves many connections
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            assert await _info_over(stream, pki) == EXPECTED
        process.send_signal(signal.SIGTERM)
        code, _ = await _finish(process)
    assert code == 0


async def _one_connection_process(tmp_path: Path, inetd: bool) -> tuple[int, bytes, list[object]]:
    pki = Pki(tmp_path)
    ours, theirs = socket.socketpair()
    async with open_fake_daemon(BEHAVIOURS) as daemon:
        if inetd:
            args = _args(pki, daemon, "--inetd", "-q")
            process = await _spawn(
                args, stdin=theirs.fileno(), stdout=theirs.fileno(), stderr=subprocess.PIPE
            )
        else:
            args = _systemd_wrapper(
                theirs.fileno(), _args(pki, daemon, "--systemd-socket-activation")
            )
            process = await _spawn(args, pass_fds=(theirs.fileno(),), stderr=subprocess.PIPE)
        theirs.close()
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(ours))
        replies = await _info_over(stream, pki)
        code, log = await _finish(process)
    return code, log, replies


async def test_systemd_accept_yes(tmp_path: Path) -> None:
    code, log, replies = await _one_connection_process(tmp_path, inetd=False)
    assert replies == EXPECTED
    assert code == 0
    assert b'outcome="success: UnikernelInfoList"' in log


async def test_inetd(tmp_path: Path) -> None:
    code, log, replies = await _one_connection_process(tmp_path, inetd=True)
    assert replies == EXPECTED
    assert code == 0
    assert log == b""  # nothing on stderr in inetd mode


def test_inetd_without_syslog_exits_3(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    result = subprocess.run(
        [
            str(SCRIPT),
            "--inetd",
            "--tmpdir",
            str(tmp_path),
            str(pki.ca_file),
            str(pki.cert_file),
            str(pki.key_file),
        ],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert (result.returncode, result.stdout, result.stderr) == (3, b"", b"")


def test_port_and_systemd_are_incompatible(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    result = subprocess.run(
        [
            str(SCRIPT),
            "--port",
            "1",
            "--systemd-socket-activation",
            "--tmpdir",
            str(tmp_path),
            str(pki.ca_file),
            str(pki.cert_file),
            str(pki.key_file),
        ],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 124
    assert b"Options --port and --systemd-socket-activation are not compatible" in result.stderr


def test_systemd_without_environment_exits_125(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LISTEN_")}
    result = subprocess.run(
        [
            str(SCRIPT),
            "--systemd-socket-activation",
            "--tmpdir",
            str(tmp_path),
            str(pki.ca_file),
            str(pki.cert_file),
            str(pki.key_file),
        ],
        capture_output=True,
        timeout=30,
        check=False,
        env=env,
    )
    assert result.returncode == 125
    assert (
        b"Systemd socket activation error: LISTEN_PID and LISTEN_FDS are not set" in result.stderr
    )


async def test_sigterm_ends_a_single_connection_after_the_grace_period(tmp_path: Path) -> None:
    """Accept=yes / inetd: SIGTERM lets the running stream go on for --grace-period, then ends."""
    from core.wire import ConsoleData, ConsoleSubscribe, StringReply
    from tests.endpoint.fakedaemon import Conn

    async def console(conn: Conn) -> None:
        import datetime as dt

        await conn.receive()
        await conn.send(StringReply("subscribed"))
        for _ in range(10_000):
            await conn.send(ConsoleData(dt.datetime(2026, 1, 1, tzinfo=dt.UTC), "tick"))
            await trio.sleep(0.05)

    pki = Pki(tmp_path)
    ours, theirs = socket.socketpair()
    async with open_fake_daemon({"console": console}) as daemon:
        args = _systemd_wrapper(
            theirs.fileno(),
            _args(pki, daemon, "--systemd-socket-activation", "--grace-period", "0.5"),
        )
        process = await _spawn(args, pass_fds=(theirs.fileno(),), stderr=subprocess.PIPE)
        theirs.close()
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(ours))
        tls = trio.SSLStream(stream, pki.client(pki.leaf("t", ConsoleSubscribe(count=1))))
        await tls.do_handshake()
        client = Client(tls)
        assert (await client.read_one()).payload == StringReply("subscribed")
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(30):
            messages = await client.read_all()  # ends when the grace period is over
        code, log = await _finish(process)
        await trio.aclose_forcefully(tls)
    assert code == 0
    assert messages and all(isinstance(m.payload, ConsoleData) for m in messages)
    assert b'command="console subscribe" outcome="ended by shutdown (grace period over)"' in log


def test_inetd_with_a_pipe_on_stdin_exits_125_silently(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    result = subprocess.run(
        [
            str(SCRIPT),
            "--inetd",
            "-q",
            "--tmpdir",
            str(tmp_path),
            *map(str, (pki.ca_file, pki.cert_file, pki.key_file)),
        ],
        input=b"",
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert (result.returncode, result.stdout, result.stderr) == (125, b"", b"")


def _children(pid: int) -> set[int]:
    tasks = Path(f"/proc/{pid}/task")
    found: set[int] = set()
    for task in tasks.iterdir():
        text = (task / "children").read_text()
        found.update(int(child) for child in text.split())
    return found


async def test_workers_share_the_socket_and_stop_on_sigterm(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    listening = tcp_listen_socket("127.0.0.1", 0, 64)
    port = listening.getsockname()[1]
    async with open_fake_daemon(BEHAVIOURS) as daemon:
        (tmp_path / "crls").mkdir()
        args = _systemd_wrapper(
            listening.fileno(),
            _args(
                pki,
                daemon,
                "--systemd-socket-activation",
                "--workers",
                "2",
                "--crl-dir",
                str(tmp_path / "crls"),
            ),
        )
        process = await _spawn(args, pass_fds=(listening.fileno(),), stderr=subprocess.PIPE)
        listening.close()
        assert process.stderr is not None
        seen = await _wait_for(process.stderr, b"started 2 workers")
        workers = _children(process.pid)
        assert len(workers) == 2
        for pid in workers:
            assert f" {pid}".encode() in seen.split(b"started 2 workers:")[1]
        while seen.count(b"listening on") < 2:
            seen += await _wait_for(process.stderr, b"listening on")
        for _ in range(6):  # every connection is served, by whichever worker accepts it
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            assert await _info_over(stream, pki) == EXPECTED
        await trio.sleep(0.2)  # the workers' SIGHUP receivers run
        # A broken CRL makes each worker's reload say so: proof the SIGHUP reached both.
        (tmp_path / "crls" / "broken.crl").write_bytes(b"not a CRL")
        process.send_signal(signal.SIGHUP)
        reloads = b""
        while reloads.count(b"SIGHUP: CRLs not reloaded") < 2:
            reloads += await _wait_for(process.stderr, b"SIGHUP: CRLs not reloaded")
        assert _children(process.pid) == workers  # nobody died of the SIGHUP
        process.send_signal(signal.SIGTERM)
        code, log = await _finish(process)
    assert code == 0
    assert log.count(b"stopped") == 2  # each worker drained and stopped
    assert all(not Path(f"/proc/{pid}").exists() for pid in workers)


async def test_a_worker_that_dies_stops_the_service(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    async with open_fake_daemon(BEHAVIOURS) as daemon:
        process = await _spawn_two_workers(pki, daemon)
        workers = sorted(_children(process.pid))
        os.kill(workers[0], signal.SIGKILL)
        code, log = await _finish(process)
    assert code == 1
    assert b"exited (-9): stopping the others" in log
    assert all(not Path(f"/proc/{pid}").exists() for pid in workers)


def test_workers_and_inetd_are_incompatible(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    result = subprocess.run(
        [str(SCRIPT), "--inetd", "--syslog", "--workers", "2", "--tmpdir", str(tmp_path),
         str(pki.ca_file), str(pki.cert_file), str(pki.key_file)],
        capture_output=True,
        timeout=30,
    )  # fmt: skip
    assert result.returncode == 124
    assert b"--workers needs a listening socket" in result.stderr


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def test_workers_end_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    async with open_fake_daemon(BEHAVIOURS) as daemon:
        process = await _spawn_two_workers(pki, daemon)
        workers = _children(process.pid)
        assert len(workers) == 2
        process.kill()  # no chance to stop them itself
        await process.wait()
        with trio.fail_after(20):
            while any(_running(pid) for pid in workers):
                await trio.sleep(0.05)
