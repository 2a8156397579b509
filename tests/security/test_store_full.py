"""A full disk or a read-only state: the command is refused with the reason, nothing runs.

Record before act: a state-changing leaf whose record cannot be written never reaches
the daemon, and it stays unused (it runs once the disk has room again).  Two ways to
fill the disk: RLIMIT_FSIZE on a real endpoint process (any user), and a small tmpfs
(root only; skipped with the reason otherwise).  A store that cannot be written at
start stops the start (exit 125).
"""

from __future__ import annotations

import errno
import os
import resource
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from cryptography.hazmat.primitives.serialization import Encoding

from core.wire import (
    ROOT,
    Payload,
    StringReply,
    UnikernelDestroy,
    UnikernelInfo,
    UnikernelInfoList,
)
from tests.endpoint.fakedaemon import open_fake_daemon
from tests.endpoint.pki import Pki
from tests.security.pki import root
from tests.security.processes import DESTROYED, Destroys, open_endpoints
from tests.security.rig import failure, open_rig, small
from tests.standin.helpers import request
from tlsendpoint.security.setup import SecuritySetupError, open_security
from tlsendpoint.security.state.records import STORE_FILE, SecurityStore

NOT_SENT = "the endpoint cannot record this leaf before running its command, so nothing was sent"


def refusal(reply: Payload | None) -> str:
    assert reply is not None, "no reply"
    return failure(reply)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def test_a_file_size_limit_refuses_the_command_and_keeps_the_leaf(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    state = tmp_path / "state"
    store = SecurityStore(state / STORE_FILE)  # the store exists: the limit hits its growth
    store.open()
    store.close()
    # the shared-memory index needs 32 KiB; the write-ahead log gets room for a few pages
    limit = max(32768, (state / STORE_FILE).stat().st_size) + 16384

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))  # Python ignores SIGXFSZ

    port = _free_port()
    async with (
        open_fake_daemon({"vmmd": Destroys().behaviour()}) as daemon,
        open_endpoints(pki, daemon, state) as endpoints,
    ):
        process = await endpoints.listening(port, preexec=limited)
        used = []
        for attempt in range(40):  # each record grows the log until the limit stops it
            identity = pki.leaf(f"u{attempt}", UnikernelDestroy())
            reply = await endpoints.tcp(port, identity)
            if reply != DESTROYED:
                break
            used.append(identity)
        else:
            raise AssertionError("the file size limit never stopped a record")
        assert NOT_SENT in refusal(reply), reply
        assert "cannot write the security state" in refusal(reply)
        assert Destroys.count(daemon) == len(used)  # the refused one never reached the daemon
        process.terminate()
        with trio.fail_after(30):
            await process.wait()

        process = await endpoints.listening(port)  # room again (no limit)
        assert await endpoints.tcp(port, identity) == DESTROYED  # it was not used: runs once
        assert "already executed" in refusal(await endpoints.tcp(port, identity))
        for earlier in used:
            assert "already executed" in refusal(await endpoints.tcp(port, earlier))
        assert Destroys.count(daemon) == len(used) + 1


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs (root only): a real full file system under the store."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root; the RLIMIT_FSIZE test covers full disks")
    mount = tmp_path / "sec"  # the rig's state directory
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(directory: Path) -> Path:
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 65536)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC, exc
    finally:
        os.close(fd)
    return filler


async def test_a_full_file_system_refuses_the_create_until_there_is_room(
    tmp_path: Path, small_fs: Path
) -> None:
    async with open_rig(tmp_path) as rig:
        assert rig.security.options.state_dir == small_fs
        alice = rig.delegate(rig.root, "alice", small(unikernels=2))
        assert isinstance(await rig.send(alice, ".", UnikernelInfo()), UnikernelInfoList)
        filler = _fill(small_fs)  # alice's delegation is recorded: the create needs one record
        create = rig.identity(alice, "a1", rig.create())
        text = failure((await rig.present(create))[-1].payload)
        assert text.startswith(NOT_SENT), text
        assert "database or disk is full" in text
        assert f"the file system of {small_fs} is full" in text
        info = await request(rig.standin.socket("vmmd"), ROOT, UnikernelInfo())
        assert info == UnikernelInfoList(())  # nothing reached the daemon
        # read-only commands go on (their anti-rollback check only reads)
        assert isinstance(await rig.send(alice, ".", UnikernelInfo()), UnikernelInfoList)
        filler.unlink()
        assert (await rig.present(create))[-1].payload == StringReply("created unikernel")
        assert "already executed" in failure((await rig.present(create))[-1].payload)


@pytest.fixture
def read_only_state(tmp_path: Path) -> Iterator[Path]:
    """A state directory with a store that this process cannot write."""
    source = tmp_path / "state"
    store = SecurityStore(source / STORE_FILE)
    store.open()
    store.close()
    if os.geteuid() != 0:  # permissions bind an ordinary user
        source.chmod(0o500)
        (source / STORE_FILE).chmod(0o400)
        try:
            yield source
        finally:
            source.chmod(0o700)
        return
    view = tmp_path / "read-only"  # root ignores permissions: a read-only bind mount
    view.mkdir()
    for command in (["mount", "--bind", str(source), str(view)],
                    ["mount", "-o", "remount,ro,bind", str(view)]):  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            subprocess.run(["umount", "-l", str(view)], check=False)
            pytest.skip(f"cannot make a read-only view as root: {done.stderr.strip()}")
    try:
        yield view
    finally:
        subprocess.run(["umount", "-l", str(view)], check=False)


def test_a_read_only_store_stops_the_start(tmp_path: Path, read_only_state: Path) -> None:
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(root().cert.public_bytes(Encoding.PEM))
    with pytest.raises(SecuritySetupError) as caught:
        open_security(ca_file, state_dir=read_only_state, crl_dir=None, audit_log=None,
                      audit_fsync=False, no_security=False)  # fmt: skip
    text = caught.value.message
    assert caught.value.exit_code == 125
    assert text.startswith(f"cannot open the security state in {read_only_state}"), text
    assert ("read-only file system" in text) or ("not writable for this user" in text), text
    assert text.endswith(
        "The endpoint records every state-changing leaf before running it and does not start"
        f" without that: free space or make {read_only_state} writable for the endpoint's user"
    ), text
