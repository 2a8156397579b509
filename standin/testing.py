"""Run the stand-in inside a test: ``async with open_standin(tmp_path) as standin``.

The daemon runs in-process, in a trio nursery, on unix sockets under
``tmp_path`` (``<tmpdir>/util/vmmd.sock``, ``console.sock``, ``stat.sock``).
``stop()``/``start()``/``restart()`` stop and start it on the same state
directory, for persistence tests; ``restart(bridges=...)`` changes the host
configuration in between, like albatrossd discovering a new bridge.

Unix socket paths are limited to about 100 octets; if ``tmp_path`` is too
deep, the socket directory is a short ``/tmp/standin-*`` directory instead
(removed afterwards).  The state directory is always under ``tmp_path``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import trio

from core.clock import Clock, system_clock
from core.routing import Socket
from standin import sockets
from standin.config import StandinConfig
from standin.daemon import Daemon
from standin.runner import Runner

__all__ = ["Standin", "StandinProcess", "open_standin", "standin_process"]

_SOCKET_BUDGET = 100 - len("/util/console.sock")


class Standin:
    """A stand-in running in a test's nursery."""

    def __init__(
        self, nursery: trio.Nursery, config: StandinConfig, runner: Runner | None, clock: Clock
    ) -> None:
        self._nursery = nursery
        self.config = config
        self._runner = runner
        self._clock = clock
        self._scope: trio.CancelScope | None = None
        self._stopped = trio.Event()
        self.daemon: Daemon | None = None

    @property
    def tmpdir(self) -> Path:
        """The directory holding ``util/`` (pass it as the endpoint's/client's tmpdir)."""
        return self.config.tmpdir

    @property
    def state_dir(self) -> Path:
        return self.config.state_dir

    def socket(self, name: str) -> Path:
        """``vmmd``, ``console`` or ``stat``: the socket path."""
        return self.config.socket(name)

    @property
    def running(self) -> bool:
        return self._scope is not None

    async def start(self) -> None:
        if self._scope is not None:
            raise RuntimeError("the stand-in is already running")
        self._stopped = trio.Event()
        self.daemon = await self._nursery.start(self._run)

    async def _run(self, task_status: trio.TaskStatus[Daemon]) -> None:
        daemon = Daemon(self.config, self._runner, self._clock)
        try:
            with trio.CancelScope() as scope:
                self._scope = scope
                await sockets.serve(daemon, task_status=task_status)
        finally:
            self._scope = None
            self._stopped.set()

    async def stop(self) -> None:
        """Stop like SIGTERM: unikernels are terminated but stay in the state file."""
        if self._scope is None:
            return
        self._scope.cancel()
        await self._stopped.wait()

    async def restart(self, **changes: Any) -> None:
        """Stop, apply :class:`StandinConfig` field *changes* (e.g. ``bridges=()``), start."""
        await self.stop()
        self.config = replace(self.config, **changes)
        await self.start()


@asynccontextmanager
async def open_standin(
    tmp_path: Path,
    *,
    bridges: tuple[str, ...] = (),
    cpus: int = 2,
    memory: int = 4096,
    block_space: int = 10000,
    stats_interval: float = 10.0,
    runner: Runner | None = None,
    clock: Clock = system_clock,
) -> AsyncIterator[Standin]:
    """Run a stand-in daemon for the duration of the block.

    The host has no bridge unless *bridges* names some (``bridges=("service",)``).
    """
    tmpdir = tmp_path / "run"
    short: str | None = None
    if len(os.fsencode(tmpdir)) > _SOCKET_BUDGET:
        short = tempfile.mkdtemp(prefix="standin-", dir="/tmp")
        tmpdir = Path(short)
    config = StandinConfig(
        tmpdir=tmpdir,
        state_dir=tmp_path / "state",
        bridges=tuple(bridges),
        cpus=cpus,
        memory=memory,
        block_space=block_space,
        stats_interval=stats_interval,
    )
    try:
        async with trio.open_nursery() as nursery:
            standin = Standin(nursery, config, runner, clock)
            await standin.start()
            try:
                yield standin
            finally:
                await standin.stop()
    except BaseExceptionGroup as group:
        # One failure (a test's assertion, a StandinError at start) reads better unwrapped.
        leaf = _single_leaf(group)
        if leaf is None:
            raise
        raise leaf from None
    finally:
        if short is not None:
            shutil.rmtree(short, ignore_errors=True)


def _single_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    return leaves[0] if len(leaves) == 1 else None


class StandinProcess:
    """``albatross-standin`` running as a child process (see :func:`standin_process`)."""

    def __init__(self, popen: subprocess.Popen[bytes], tmpdir: Path, state_dir: Path) -> None:
        self.popen = popen
        self.tmpdir = tmpdir
        self.state_dir = state_dir

    def socket(self, name: str) -> Path:
        return self.tmpdir / "util" / f"{name}.sock"

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Signal the daemon and wait for it; its exit status (killed if it hangs)."""
        if self.popen.poll() is None:
            self.popen.send_signal(signum)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode


@contextmanager
def standin_process(
    tmpdir: Path,
    state_dir: Path,
    *args: str,
    startup_timeout: float = 20.0,
    stderr: int | None = subprocess.DEVNULL,
) -> Iterator[StandinProcess]:
    """Run ``python -m standin --tmpdir ... --state-dir ... ARGS`` until the block ends.

    Waits (at most *startup_timeout* seconds) until the three sockets exist;
    stops it with SIGTERM afterwards.  *tmpdir* must be short (unix sockets).
    """
    popen = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "standin",
            "--tmpdir",
            os.fspath(tmpdir),
            "--state-dir",
            os.fspath(state_dir),
            *args,
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )
    proc = StandinProcess(popen, tmpdir, state_dir)
    try:
        deadline = time.monotonic() + startup_timeout
        while not all(proc.socket(s.value).exists() for s in Socket):
            if popen.poll() is not None:
                raise RuntimeError(f"albatross-standin exited with {popen.returncode} at start")
            if time.monotonic() > deadline:
                raise RuntimeError(f"albatross-standin did not start in {startup_timeout:g} s")
            time.sleep(0.02)
        yield proc
    finally:
        proc.stop()
