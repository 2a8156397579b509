"""``--workers N``: N processes accepting on one listening socket.

The listening socket (ours or systemd's ``Accept=no`` one) is created first;
then the parent forks N workers, which all accept on it (the kernel hands each
connection to one of them), and becomes a supervisor that serves nothing.
Forking happens before any trio run exists, so each worker starts its own
event loop from a clean state.  OpenSSL reseeds its random generator in a
forked child by itself (OpenSSL >= 1.1.1 detects the fork).

The supervisor blocks SIGTERM, SIGINT, SIGHUP and SIGCHLD and takes them with
``sigtimedwait`` (no handler races):

* SIGHUP: forwarded to every worker (each reloads its CRLs; a worker ignores
  SIGHUP until its event loop listens for it);
* SIGTERM/SIGINT: forward SIGTERM to every worker (each stops accepting and
  gives its running connections the grace period), wait for all, exit 0 if
  they all exited 0;
* a worker that exits on its own is a fault: the others are stopped too and
  the supervisor exits 1, so the service manager sees one failed service
  instead of a silently shrunken one;
* workers still alive ``grace_period`` + :data:`KILL_MARGIN` seconds after
  SIGTERM are killed;
* a supervisor killed outright (SIGKILL) takes its workers with it: each asks
  the kernel for SIGTERM when its parent dies (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import ctypes
import os
import signal
import time
from collections.abc import Callable, Iterable

from tlsendpoint.connlog import LOGGER
from tlsendpoint.notify import notify

__all__ = ["KILL_MARGIN", "run_workers"]

#: Seconds after the grace period before a worker that did not stop is killed.
KILL_MARGIN = 5.0

_PR_SET_PDEATHSIG = 1
_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGHUP}


def _die_with_parent(parent: int) -> None:
    """Linux: SIGTERM this worker when the supervisor dies, even by SIGKILL (no orphans)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the service manager's cgroup kill remains
        return
    if os.getppid() != parent:  # the supervisor died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _fork(serve: Callable[[], int], old_mask: Iterable[int]) -> int:
    parent = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        _die_with_parent(parent)
        # Until the worker's event loop installs its SIGHUP receiver (CRL reload), a
        # forwarded SIGHUP must not kill it: ignored, not blocked, so nothing is queued.
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        # SIGTERM/SIGINT stay blocked (kept pending, not lost) until the worker's event loop
        # listens for them (cli._on_signal unblocks): the supervisor tells systemd READY=1
        # right after the fork, and a stop sent at once must drain the worker, not kill it.
        signal.pthread_sigmask(signal.SIG_SETMASK, {*old_mask, signal.SIGTERM, signal.SIGINT})
        code = serve()
    except BaseException:  # a worker must never fall back into the supervisor's code
        LOGGER.exception("worker %d failed", os.getpid())
    finally:
        os._exit(code)


def _reap(alive: dict[int, int], exits: dict[int, int]) -> None:
    while alive:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            alive.clear()
            return
        if pid == 0:
            return
        if pid in alive:
            exits[alive.pop(pid)] = os.waitstatus_to_exitcode(status)


def run_workers(count: int, serve: Callable[[], int], grace_period: float) -> int:
    """Run *serve* in *count* forked workers until a signal; return the exit code."""
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    alive: dict[int, int] = {}  # pid -> worker number
    exits: dict[int, int] = {}  # worker number -> exit code
    stopping = False
    failed = False
    kill_at: float | None = None
    try:
        for number in range(count):
            alive[_fork(serve, old_mask)] = number
        LOGGER.info("started %d workers: %s", count, " ".join(map(str, alive)))
        # the socket listens already (connections wait in its backlog): ready for systemd
        notify(f"READY=1\nSTATUS={count} workers")
        while alive:
            timeout = 1.0 if kill_at is None else max(0.0, kill_at - time.monotonic())
            info = signal.sigtimedwait(_SIGNALS, timeout)
            if info is not None and info.si_signo in (signal.SIGTERM, signal.SIGINT):
                stopping = True
            if info is not None and info.si_signo == signal.SIGHUP and not stopping:
                for pid in alive:  # reload (CRLs) in every worker
                    os.kill(pid, signal.SIGHUP)
            _reap(alive, exits)
            if not stopping and exits:
                number, code = next(iter(exits.items()))
                LOGGER.error("worker %d exited (%d): stopping the others", number, code)
                stopping = failed = True
            if stopping and kill_at is None:
                notify("STOPPING=1")
                for pid in alive:
                    os.kill(pid, signal.SIGTERM)
                kill_at = time.monotonic() + grace_period + KILL_MARGIN
            if kill_at is not None and time.monotonic() >= kill_at:
                for pid in alive:
                    LOGGER.error("worker pid %d did not stop in time: killing it", pid)
                    os.kill(pid, signal.SIGKILL)
                kill_at = time.monotonic() + KILL_MARGIN
    finally:
        for pid in alive:  # only if the supervisor itself failed
            os.kill(pid, signal.SIGKILL)
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
    return 1 if failed or any(exits.values()) else 0
