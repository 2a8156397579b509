"""durable.locks: flock on a caller's descriptor, the bounded synchronous wait, HostLock.

Two descriptors of one file exclude each other under flock, as two processes do, so
one process is enough; HostLock's waits run on trio's autojump clock.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from durable.database import StoreError
from durable.locks import HostLock, LockTimeout, lock_within, try_lock, unlock


@pytest.fixture
def two_descriptors(tmp_path: Path) -> Iterator[tuple[int, int]]:
    path = tmp_path / "file.lock"
    first = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    second = os.open(path, os.O_RDWR)
    try:
        yield first, second
    finally:
        os.close(first)
        os.close(second)


def test_try_lock_excludes_another_descriptor_until_unlocked(
    two_descriptors: tuple[int, int],
) -> None:
    first, second = two_descriptors
    assert try_lock(first)
    assert not try_lock(second)
    unlock(first)
    assert try_lock(second)
    assert not try_lock(first)


def test_try_lock_of_a_closed_descriptor_is_an_os_error(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)
    with pytest.raises(OSError):
        try_lock(fd)


def test_lock_within_gives_up_at_its_deadline(two_descriptors: tuple[int, int]) -> None:
    first, second = two_descriptors
    assert try_lock(first)
    assert lock_within(second, 0.05) is False  # held throughout: False, never blocks on
    assert lock_within(first, 0) is True  # flock is per descriptor: the holder has it


def test_lock_within_takes_the_lock_once_it_is_freed(two_descriptors: tuple[int, int]) -> None:
    first, second = two_descriptors
    tried = threading.Event()

    def attempt(fd: int) -> bool:
        if try_lock(fd):
            return True
        tried.set()  # the waiter found it held: now the holder lets go
        return False

    def release_when_tried() -> None:
        tried.wait(60)
        unlock(first)

    assert try_lock(first)
    releaser = threading.Thread(target=release_when_tried)
    releaser.start()
    try:
        assert lock_within(second, 60, attempt=attempt) is True
    finally:
        releaser.join(60)
    assert not try_lock(first)


async def test_host_lock_times_out_naming_what_it_waited_for(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    path = tmp_path / "quota.lock"
    other = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)  # another process's hold
    try:
        assert try_lock(other)
        lock = HostLock(path, "the quota lock")
        with pytest.raises(LockTimeout) as caught:
            async with lock.hold(3):
                raise AssertionError("held while another holds it")
        assert caught.value.message == f"waited 3 s for the quota lock ({path}); try again"
        unlock(other)
        async with lock.hold(3):
            assert not try_lock(other)  # now ours
    finally:
        os.close(other)


async def test_host_lock_file_that_cannot_be_opened_is_named(tmp_path: Path) -> None:
    path = tmp_path / "missing-dir" / "quota.lock"
    with pytest.raises(StoreError) as caught:
        async with HostLock(path, "the quota lock").hold(1):
            raise AssertionError("held a lock that cannot exist")
    assert caught.value.message == (f"cannot open the quota lock {path}: No such file or directory")
