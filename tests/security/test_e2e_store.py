"""The store and the quota lock through the real endpoint (in-process, real TLS, the stand-in)."""

from __future__ import annotations

import dataclasses
import fcntl
import os
import sqlite3
from pathlib import Path

import pytest
import trio
import trio.testing

from core.authorize import authorize
from core.wire import (
    ROOT,
    BlockAdd,
    Command,
    Failure,
    Name,
    Payload,
    StringReply,
    UnikernelInfo,
    UnikernelInfoList,
    UnikernelRestart,
)
from durable.locks import HostLock, LockTimeout
from tests.security.pki import policy, root
from tests.security.rig import failure, open_rig, small
from tests.standin.helpers import request
from tlsendpoint.security import SecurityRefusal
from tlsendpoint.security.quotaguard import QuotaGuard
from tlsendpoint.security.state.records import STORE_FILE

CREATED = StringReply("created unikernel")


async def test_a_replayed_restart_leaf_is_refused(tmp_path: Path) -> None:
    async with open_rig(tmp_path) as rig:
        alice = rig.delegate(rig.root, "alice", small())
        assert await rig.send(alice, "u", rig.create()) == CREATED
        restart = rig.identity(alice, "u", UnikernelRestart(None))
        first = (await rig.present(restart))[-1].payload
        assert not isinstance(first, Failure), first
        again = failure((await rig.present(restart))[-1].payload)
        assert again.startswith("leaf certificate CN=u (serial "), again
        assert "already executed a state-changing command" in again


async def test_a_replayed_create_is_refused_before_its_upload(tmp_path: Path) -> None:
    async with open_rig(tmp_path) as rig:
        alice = rig.delegate(rig.root, "alice", small(unikernels=2))
        empty = dataclasses.replace(rig.create().config, image=b"")  # the image is uploaded
        identity = rig.identity(alice, "u", dataclasses.replace(rig.create(), config=empty))
        assert (await rig.harness.run(identity, upload=[rig.image]))[-1].payload == CREATED
        again = await rig.harness.connect(identity)  # and this time no upload at all
        with trio.fail_after(30):  # refused at once, not after the upload timeout
            text = failure((await again.read_all())[-1].payload)
        assert "already executed a state-changing command" in text


async def test_damage_found_while_serving_refuses_what_depends_on_the_store(
    tmp_path: Path,
) -> None:
    async with open_rig(tmp_path) as rig:
        alice = rig.delegate(rig.root, "alice", small(unikernels=3))
        used = rig.identity(alice, "a1", rig.create())
        assert (await rig.present(used))[-1].payload == CREATED
        other = sqlite3.connect(rig.security.options.state_dir / STORE_FILE)
        other.execute("UPDATE replay SET owner = 'mallory'")  # damage SQLite cannot see
        other.commit()
        other.close()
        text = failure((await rig.present(used))[-1].payload)
        assert text.startswith("the endpoint cannot check this request: the security state"), text
        assert "does not match its checksum" in text
        text = failure(await rig.send(alice, "a2", rig.create()))  # another leaf, same store
        assert "everything that depends on it is refused until the endpoint is restarted" in text
        info = await request(rig.standin.socket("vmmd"), ROOT, UnikernelInfo())
        assert isinstance(info, UnikernelInfoList) and len(info.unikernels) == 1
        # a request that needs nothing from the store (a leaf of the root) is still served
        assert isinstance(await rig.send(rig.root, "x", UnikernelInfo()), UnikernelInfoList)


async def test_a_trickling_upload_does_not_stall_another_delegates_create(
    tmp_path: Path,
) -> None:
    async with open_rig(tmp_path, shared=True) as rig:  # the host-wide quota lock is in use
        alice = rig.delegate(rig.root, "alice", small())
        bob = rig.delegate(rig.root, "bob", small())
        empty = dataclasses.replace(rig.create().config, image=b"")  # the image is uploaded
        slow = await rig.harness.connect(
            rig.identity(alice, "slow", dataclasses.replace(rig.create(), config=empty))
        )
        half = len(rig.image) // 2
        await slow.send_frames([rig.image[:half]], end=False)  # and then nothing for a while
        await trio.testing.wait_all_tasks_blocked(cushion=0.05)  # the endpoint waits for more
        with trio.fail_after(60):  # served while alice's upload is still open
            assert await rig.send(bob, "fast", rig.create()) == CREATED
        await slow.send_frames([rig.image[half:]], end=True)
        assert (await slow.read_all())[-1].payload == CREATED


# -- waiting for the quota lock is bounded -----------------------------------------------


async def never_asked(name: Name, command: Command) -> Payload:
    raise AssertionError("no usage query without the quota lock")


async def test_waiting_for_the_quota_lock_ends_with_a_refusal_that_says_why(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    lock_file = tmp_path / "quota.lock"
    quota = QuotaGuard(HostLock(lock_file, "the quota lock"), lock_timeout=30)
    alice = root().delegate("alice", policy(block=100))
    req = authorize(alice.leaf_chain("disk", BlockAdd(10)))
    other_process = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o600)  # holds it, never lets go
    fcntl.flock(other_process, fcntl.LOCK_EX)
    try:
        with pytest.raises(SecurityRefusal) as caught:
            async with quota.guard(req, never_asked):
                raise AssertionError("the guard must not be entered")
    finally:
        os.close(other_process)
    assert caught.value.message == (
        f"cannot check quotas: waited 30 s for the quota lock ({lock_file}); try again"
    )
    assert len(quota.book) == 0


async def test_a_host_lock_waiter_in_the_same_process_is_bounded_too(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    lock = HostLock(tmp_path / "x.lock", "the x lock")
    holding = trio.Event()

    async def hold_forever() -> None:
        async with lock.hold(5):
            holding.set()
            await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(hold_forever)
        await holding.wait()
        with pytest.raises(LockTimeout, match="waited 7 s for the x lock"):
            async with lock.hold(7):
                raise AssertionError("held twice")
        nursery.cancel_scope.cancel()
    async with lock.hold(1):  # released with its holder
        pass
