# Locks held across the processes of a host, waited for with a deadline: the one place
# that calls flock().
#
# try_lock / unlock / lock_within work on a descriptor the caller owns (the audit log
# locks the file it appends to); lock_within waits in the calling thread, so it is for
# worker threads and offline tools, never the event loop.  HostLock is the async form:
# a lock file of its own, waited for without blocking the event loop.
#
# HostLock is used by the quota check: with several processes (--workers, inetd, socket activation)
# a resource-adding request holds it from its usage query until the daemon's reply, so
# two processes cannot both grant the last resources (each keeps its own reservations).
#
# An flock() of a file in the state directory: the kernel releases it when its holder
# dies, even by SIGKILL, so a crash never leaves it held (a lock row in the database
# would outlive its holder).  The descriptor is opened per acquisition, so a forked
# worker never shares a lock with its parent.  Waiting never blocks the event loop: the
# flock is tried without blocking and retried every LOCK_POLL seconds until the deadline;
# inside one process, waiters queue on a trio lock first (fair, and only one polls).
from __future__ import annotations

import fcntl
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from durable.database import StoreError

__all__ = [
    "LOCK_POLL",
    "SYNC_LOCK_POLL",
    "HostLock",
    "LockTimeout",
    "lock_within",
    "try_lock",
    "unlock",
]

#: How often a HostLock waiter tries the lock again (seconds).
LOCK_POLL = 0.01
#: How often lock_within tries again (seconds): short, the thread has nothing else to do.
SYNC_LOCK_POLL = 0.002


def try_lock(fd: int) -> bool:
    """Take the exclusive flock of *fd* if it is free: True, or False if another holds it.

    Raises OSError for anything but "held by another" (a descriptor that cannot be locked).
    """
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def unlock(fd: int) -> None:
    """Release the flock of *fd* (closing the descriptor releases it too)."""
    fcntl.flock(fd, fcntl.LOCK_UN)


def lock_within(
    fd: int,
    timeout: float,
    *,
    attempt: Callable[[int], bool] = try_lock,
    poll: float = SYNC_LOCK_POLL,
) -> bool:
    """Try *attempt* (by default :func:`try_lock`) on *fd* until it succeeds or *timeout*
    seconds have passed: True if locked, False at the deadline.  Blocks the thread."""
    deadline = time.monotonic() + timeout
    while not attempt(fd):
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll)
    return True


class LockTimeout(StoreError):
    """The lock was not free within the deadline; ``message`` says what was waited for."""


class HostLock:
    """An exclusive lock shared by every process that uses *path*."""

    def __init__(self, path: Path, what: str) -> None:
        self.path = path
        self.what = what  # "the quota lock": for messages
        self._local = trio.Lock()

    @asynccontextmanager
    async def hold(self, timeout: float) -> AsyncIterator[None]:
        """Hold the lock for the block; :class:`LockTimeout` after *timeout* seconds of waiting."""
        with trio.move_on_after(timeout) as waiting:
            await self._local.acquire()
        if waiting.cancelled_caught:
            raise self._timeout(timeout)
        try:
            fd = self._try_file()
            if fd is None:
                fd = await self._wait_for_file(waiting.deadline, timeout)
            try:
                yield
            finally:
                os.close(fd)  # releases the flock
        finally:
            self._local.release()

    def _timeout(self, timeout: float) -> LockTimeout:
        return LockTimeout(f"waited {timeout:g} s for {self.what} ({self.path}); try again")

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StoreError(f"cannot open {self.what} {self.path}: {exc.strerror}") from None

    def _try_file(self) -> int | None:
        fd = self._open()
        try:
            locked = try_lock(fd)
        except OSError as exc:
            os.close(fd)
            raise StoreError(f"cannot lock {self.what} {self.path}: {exc.strerror}") from None
        if not locked:
            os.close(fd)
            return None
        return fd

    async def _wait_for_file(self, deadline: float, timeout: float) -> int:
        with trio.move_on_at(deadline):
            while True:
                await trio.sleep(LOCK_POLL)
                fd = self._try_file()
                if fd is not None:
                    return fd
        raise self._timeout(timeout)
