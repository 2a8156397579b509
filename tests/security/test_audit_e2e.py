"""The audit log fails closed through the real endpoint (issue 11 point 2).

Measured before: "audit log on a full disk: the create runs with no audit line;
auditing stays broken after space is freed".  Here the create is refused with the
reason and never reaches the daemon, and auditing works again once there is space.
"""

from __future__ import annotations

import json
import logging
import resource
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import trio
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization

from ca import profiles
from client import audit_cli
from core.wire import StringReply, UnikernelInfo, UnikernelInfoList
from standin.testing import open_standin
from tests.endpoint.pki import Pki, write_chain
from tests.security.rig import Rig, failure, now, open_rig, small
from tests.security.test_audit import record
from tests.security.test_audit_faults import Disk, Locked
from tests.vectors import MKFAKE
from tlsendpoint.security.state.auditlog import AuditLog, FileOps, verify

CREATED = StringReply("created unikernel")
BIN = Path(sys.executable).parent


def audit_log(rig: Rig) -> AuditLog:
    log = rig.security.audit_log
    assert log is not None
    return log


async def records_written(path: Path, count: int) -> None:
    """Wait (bounded) until *path* holds *count* lines: the endpoint writes a connection's
    last record after the client has its reply."""
    for _ in range(1000):
        if len(path.read_bytes().splitlines()) >= count:
            return
        await trio.sleep(0.01)
    raise AssertionError(f"{path} did not reach {count} lines")


def running(rig: Rig) -> list[str]:
    daemon = rig.standin.daemon
    assert daemon is not None
    return sorted(daemon.processes)


async def test_a_full_disk_refuses_the_command_and_nothing_reaches_the_daemon(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, "albatross.security")
    path = tmp_path / "audit.log"
    async with open_rig(tmp_path, audit_log=path) as rig:
        disk = Disk()
        audit_log(rig).ops = disk
        alice = rig.delegate(rig.root, "alice", small(unikernels=2))
        assert isinstance(await rig.send(alice, ".", UnikernelInfo()), UnikernelInfoList)
        await records_written(path, 2)  # the info's outcome follows its reply
        before = path.read_bytes()
        disk.free = 0
        reply = failure(await rig.send(alice, "b1", rig.create()))
        assert reply == (
            "the endpoint cannot record this request in its audit log, so it did not run it: "
            f"cannot write audit log {path}: No space left on device"
        )
        assert running(rig) == []  # the daemon never saw the create
        for _ in range(1000):  # bounded: the refusal's own record fails too, and is logged
            if [r for r in caplog.records if r.getMessage().endswith("device")]:
                break
            await trio.sleep(0.01)
        assert [r.getMessage() for r in caplog.records] == [
            f"test-peer: audit log: cannot write audit log {path}: No space left on device; "
            "the command was refused",
            f"test-peer: audit log: cannot write audit log {path}: No space left on device",
        ]
        assert path.read_bytes() == before  # and the log holds no partial line
        disk.free = None  # space freed: auditing works again at once
        assert await rig.send(alice, "b1", rig.create()) == CREATED
        assert running(rig) == ["alice:b1"]
    result = verify(path)
    assert (result.crashes, result.open_decisions) == ((), ())
    events = [(r["event"], r.get("name")) for r in map(json.loads, path.read_bytes().splitlines())]
    assert events == [
        ("decision", "alice:"), ("outcome", None),  # the info
        ("decision", "alice:b1"), ("outcome", None),  # the create once there was space
    ]  # fmt: skip


class Watching(FileOps):
    """Notes, at every write and fsync, whether the daemon already runs a unikernel."""

    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self.seen: list[tuple[str, str, bool]] = []

    def write(self, fd: int, data: bytes) -> int:
        event = json.loads(data)["event"] if data.endswith(b"\n") else "?"
        self.seen.append(("write", event, bool(running(self.rig))))
        return super().write(fd, data)

    def fsync(self, fd: int) -> None:
        self.seen.append(("fsync", "", bool(running(self.rig))))
        super().fsync(fd)


async def test_the_allow_is_synced_before_the_daemon_sees_the_command(tmp_path: Path) -> None:
    async with open_rig(tmp_path, audit_log=tmp_path / "audit.log") as rig:
        alice = rig.delegate(rig.root, "alice", small())
        watching = Watching(rig)
        audit_log(rig).ops, audit_log(rig).fsync = watching, True  # as with --audit-fsync
        assert await rig.send(alice, "b1", rig.create()) == CREATED
    assert watching.seen == [
        ("write", "decision", False),  # the allow, written and synced ...
        ("fsync", "", False),
        ("write", "outcome", True),  # ... before the unikernel exists
        ("fsync", "", True),
    ]


async def test_waiting_for_the_audit_lock_does_not_block_the_event_loop(tmp_path: Path) -> None:
    async with open_rig(tmp_path, audit_log=tmp_path / "audit.log") as rig:
        alice = rig.delegate(rig.root, "alice", small())
        locked = Locked()  # another process holds the log's lock
        log = audit_log(rig)
        log.ops, log.lock_timeout, log.deadline = locked, 60.0, 120.0
        replies: list[object] = []

        async def create() -> None:
            replies.append(await rig.send(alice, "b1", rig.create()))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(create)
            for _ in range(1000):  # bounded: this task runs while the append waits
                if locked.tried.is_set():
                    break
                await trio.sleep(0.01)
            assert locked.tried.is_set() and replies == []
            assert running(rig) == []  # the create waits for its allow record
            locked.release.set()
        assert replies == [CREATED]


class Hung(FileOps):
    """A disk that hangs on the allow record until *release* is set."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def write(self, fd: int, data: bytes) -> int:
        if b'"decision":"allow"' in data:
            self.release.wait(60)
        return super().write(fd, data)


async def test_a_hung_disk_is_given_up_at_the_deadline(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    async with open_rig(tmp_path, audit_log=path) as rig:
        alice = rig.delegate(rig.root, "alice", small())
        hung = Hung()
        log = audit_log(rig)
        log.ops, log.deadline = hung, 0.3
        try:
            reply = failure(await rig.send(alice, "b1", rig.create()))
        finally:
            hung.release.set()  # the abandoned write may now land
        assert reply.endswith(
            f"writing the audit log {path} took more than 0.3 s (a slow or hung disk)"
        )
        assert running(rig) == []
        log.deadline = 30.0
        await records_written(path, 2)  # the abandoned threads finish their records
    result = verify(path)
    # the allow landed after its deadline: no outcome, and the deny that follows says why
    assert [d.name for d in result.open_decisions] == ["alice:b1"]
    deny = json.loads(path.read_bytes().splitlines()[1])
    assert (deny["decision"], deny["name"]) == ("deny", "alice:b1")
    assert deny["reason"].endswith("took more than 0.3 s (a slow or hung disk)")


# -- a real endpoint process: a torn log at start, then a full disk (RLIMIT_FSIZE) --------


def _key_file(path: Path, key: profiles.PrivateKey) -> str:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(path)


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _prefilled_log(path: Path) -> int:
    """About 1 MiB of records and then a crash's incomplete line; returns the intact size.

    The size limit below applies to every file of the process: the state files stay far
    below 1 MiB, so only the audit log reaches it.
    """
    log = AuditLog(path)
    for i in range(450):
        log.append(record(i, "deny", "x" * 2000))
    log.close()
    size = path.stat().st_size
    with path.open("ab") as handle:
        handle.write(b'{"chain":[],"command":"unikernel create memory=32MB')
    return size


async def test_the_endpoint_process_on_a_full_disk(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    alice_key = profiles.generate_key()
    alice = profiles.intermediate(
        pki.root, pki.root_key, alice_key.public_key(), "alice", small(), now()
    )
    chain = str(write_chain(tmp_path / "alice.pem", [alice]))
    key = _key_file(tmp_path / "alice.key", alice_key)
    image = tmp_path / "hello.hvt"
    subprocess.run([sys.executable, str(MKFAKE), str(image)], check=True, capture_output=True)
    path = tmp_path / "audit.log"
    intact = _prefilled_log(path)
    port = _free_port()
    log_text = bytearray()
    async with open_standin(tmp_path) as standin:
        args = [str(BIN / "albatross-tls-endpoint"), "--ip", "127.0.0.1", "--port", str(port),
                "--tmpdir", str(standin.tmpdir), "--state-dir", str(tmp_path / "sec"),
                "--audit-log", str(path), "--audit-fsync",
                str(pki.ca_file), str(pki.cert_file), str(pki.key_file)]  # fmt: skip

        async def alba(*command: str) -> tuple[int, str]:
            result = await trio.run_process(
                [str(BIN / "alba"), *command, "-d", f"127.0.0.1:{port}", "--ca", chain,
                 "--ca-key", key, "--server-ca", str(pki.ca_file)],
                capture_stdout=True, capture_stderr=True, check=False,
            )  # fmt: skip
            return result.returncode, (result.stdout + result.stderr).decode()

        async def collect(stream: trio.abc.ReceiveStream) -> None:
            async for chunk in stream:
                log_text.extend(chunk)

        async with trio.open_nursery() as nursery:
            process = await nursery.start(
                lambda task_status: trio.run_process(
                    args, stderr=subprocess.PIPE, check=False, task_status=task_status
                )
            )
            nursery.start_soon(collect, process.stderr)
            try:
                with trio.fail_after(60):  # the endpoint listens once alba gets through
                    while "connect failed" in (out := (await alba("info"))[1]):
                        await trio.sleep(0.05)
                assert "no unikernels" in out, out
                assert b"the endpoint stopped while writing its end" in log_text, log_text
                size = path.stat().st_size
                _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
                resource.prlimit(process.pid, resource.RLIMIT_FSIZE, (size + 10, hard))
                code, out = await alba("create", "b1", str(image), "--mem=32")
                assert code != 0
                assert (
                    "the endpoint cannot record this request in its audit log, so it did not "
                    f"run it: cannot write audit log {path}: File too large" in out
                ), out
                assert path.stat().st_size == size  # the part that fitted was taken back
                daemon = standin.daemon
                assert daemon is not None and not daemon.processes  # nothing ran
                resource.prlimit(process.pid, resource.RLIMIT_FSIZE, (hard, hard))  # space
                code, out = await alba("create", "b1", str(image), "--mem=32")
                assert code == 0, out
                assert sorted(daemon.processes) == ["alice:b1"]
            finally:
                process.send_signal(signal.SIGTERM)
    result = CliRunner().invoke(audit_cli.main, ["verify", str(path)])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1] == (
        f"{path}: crash: line 451: 51 bytes of an incomplete line (a crash or a failed write), "
        "recovered at line 452 (not tampering)"
    )
    assert len(result.stdout.splitlines()) == 2  # every allow has its outcome
    assert path.read_bytes()[intact:].count(b"\n") == 1 + 1 + 4  # torn, recovery, 2 x 2


def test_the_endpoint_does_not_start_on_a_log_it_cannot_continue(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    path = tmp_path / "audit.log"
    log = AuditLog(path)
    for i in range(2):
        log.append(record(i, "deny", "r"))
    log.close()
    first, second = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(second + first)  # reordered: not what a crash leaves
    args = [str(BIN / "albatross-tls-endpoint"), "--tmpdir", str(tmp_path), "--port", "0",
            "--ip", "127.0.0.1", "--state-dir", str(tmp_path / "sec"), "--audit-log", str(path),
            str(pki.ca_file), str(pki.cert_file), str(pki.key_file)]  # fmt: skip
    try:  # a deadline: an endpoint that starts anyway would serve forever
        result = subprocess.run(args, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("the endpoint started on an audit log whose end is damaged")
    assert result.returncode == 125, result.stderr
    assert (
        f"albatross-tls-endpoint: the audit log {path} does not end with an audit record or a "
        "line torn by a crash (" in result.stderr
    ), result.stderr
    assert path.read_bytes() == second + first  # nothing appended
