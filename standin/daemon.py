"""The stand-in daemon: one trio process playing albatrossd, albatross-console and
albatross-stats on ``<tmpdir>/util/{vmmd,console,stat}.sock``.

How it works: the decisions live in pure code (:mod:`standin.vmmd`,
:mod:`standin.resources`, :mod:`standin.consoles`, :mod:`standin.stats`);
this module owns the I/O around them: the listening sockets, the unikernel
processes (through a :class:`~standin.runner.Runner`), the state file and the
block device files.  As in albatrossd, every vmmd command runs under one lock
(``create_lock``); waiting for a unikernel to exit releases it.  Every
connection has its own error handling, so one bad peer never stops the daemon.

Shutdown (cancellation, SIGTERM/SIGINT in the CLI) terminates every
unikernel *without* writing the state, so they are all started again on the
next start - albatross's ``killall``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import stat
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from pathlib import Path

import trio

from core.clock import Clock, system_clock
from core.errors import AlbatrossError
from core.wire import (
    ConsoleData,
    Failure,
    Header,
    Message,
    Name,
    Payload,
    Restart,
    StatsAdd,
    StatsRemove,
    StringReply,
    UnikernelConfig,
)
from standin.config import StandinConfig
from standin.consoles import Consoles, LineSplitter
from standin.errors import Refused
from standin.persist import StandinError, dump_state, restore_blocks, restore_state
from standin.resources import Unikernel, block_name
from standin.runner import LaunchSpec, Process, ProcessExit, Runner, SimulatedRunner
from standin.serving import Handler, serve_socket
from standin.stats import StatsBook, Watched
from standin.vmmd import Vmmd, should_restart

__all__ = ["Daemon", "StandinError", "Subscriber", "Waiter", "default_mac"]

log = logging.getLogger("standin")


class Waiter:
    """Woken with the exit of a unikernel, or with ``None`` when it was dropped."""

    def __init__(self) -> None:
        self._event = trio.Event()
        self.exit: ProcessExit | None = None

    def wake(self, exit: ProcessExit | None) -> None:
        self.exit = exit
        self._event.set()

    async def wait(self) -> ProcessExit | None:
        await self._event.wait()
        return self.exit


class Subscriber:
    """A console or stats subscriber: a bounded queue drained by its connection task."""

    CAPACITY = 1024

    def __init__(self) -> None:
        self.send, self.receive = trio.open_memory_channel[Message](self.CAPACITY)

    def offer(self, message: Message) -> bool:
        """Queue *message*; False if the subscriber is gone or too slow (it is then closed)."""
        try:
            self.send.send_nowait(message)
        except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
            self.close()
            return False
        return True

    def close(self) -> None:
        self.send.close()


def default_mac(name: Name, netif: str) -> bytes:
    """``Name.mac`` (vmm_core.ml): prefix 00:80:41, then MD5(netif ^ name) - deterministic."""
    digest = hashlib.md5((netif + str(name)).encode(), usedforsecurity=False).digest()
    return b"\x00\x80\x41" + digest[:3]


class Daemon:
    """The daemon; ``await serve()`` runs it until cancelled."""

    def __init__(
        self, config: StandinConfig, runner: Runner | None = None, clock: Clock = system_clock
    ) -> None:
        self.config = config
        self.runner: Runner = runner if runner is not None else SimulatedRunner()
        self.clock = clock
        self.vmmd: Vmmd[Waiter] = Vmmd(host_bridges=frozenset(config.bridges))
        self.consoles: Consoles[Subscriber] = Consoles(config.max_subscribers)
        self.stats: StatsBook[Subscriber] = StatsBook()
        self.lock = trio.Lock()
        self.processes: dict[str, Process] = {}
        self.in_shutdown = False
        self.stats_channel: Subscriber | None = None  # an external albatross-stats, if any
        self._nursery: trio.Nursery | None = None

    # -- start and stop -----------------------------------------------------

    async def serve(
        self,
        handlers: Mapping[str, Handler],
        background: Callable[[Daemon], Awaitable[None]],
        *,
        task_status: trio.TaskStatus[Daemon] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Restore the state, serve each socket with its handler, run until cancelled.

        The protocol handlers and the *background* task (the stats timer) come from
        the caller (:func:`standin.sockets.serve`): they build on this module, not it on them.
        """
        self._prepare_dirs()
        self._restore_blocks()
        unikernels = self._restore_state()
        listeners: dict[str, socket.socket] = {}
        try:
            for n in handlers:
                listeners[n] = self._listen(n)
        except StandinError:
            self._close_listeners(listeners)
            raise
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                try:
                    for n, handler in handlers.items():
                        nursery.start_soon(
                            serve_socket, listeners[n], n, self.config.max_frame, handler
                        )
                    nursery.start_soon(background, self)
                    for name, config in unikernels:
                        async with self.lock:
                            reply = await self.create(name, config, needs_dump=True)
                        log.info("restored %s: %s", name, _text(reply))
                    log.info("listening in %s", self.config.util_dir)
                    task_status.started(self)
                    await trio.sleep_forever()
                finally:
                    with trio.CancelScope(shield=True):
                        await self._shutdown()
                    nursery.cancel_scope.cancel()
        finally:
            self._close_listeners(listeners)

    def _close_listeners(self, listeners: dict[str, socket.socket]) -> None:
        for n, listener in listeners.items():
            listener.close()
            self.config.socket(n).unlink(missing_ok=True)

    def _prepare_dirs(self) -> None:
        try:
            self.config.util_dir.mkdir(parents=True, exist_ok=True)
            self.config.block_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as e:
            raise StandinError(f"cannot create directory: {e}") from None

    def _listen(self, name: str) -> socket.socket:
        path = self.config.socket(name)
        if len(os.fsencode(path)) > 100:
            raise StandinError(
                f"socket path {path} is too long for a unix socket; use a shorter --tmpdir"
            )
        if path.exists() or path.is_symlink():
            if not stat.S_ISSOCK(path.lstat().st_mode):
                raise StandinError(f"{path} exists and is not a socket; not touching it")
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(os.fspath(path))
            except OSError:
                path.unlink()  # stale socket from a crashed run
            else:
                raise StandinError(f"{path} is in use by a running daemon")
            finally:
                probe.close()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(os.fspath(path))
            sock.listen(64)
        except OSError as e:
            sock.close()
            raise StandinError(f"cannot listen on {path}: {e}") from None
        sock.setblocking(False)
        return sock

    async def _shutdown(self) -> None:
        """albatross's ``killall``: stop every unikernel; the state file keeps them."""
        self.in_shutdown = True
        processes = list(self.processes.values())
        for process in processes:
            process.terminate()
        with trio.move_on_after(self.config.stop_timeout):
            for process in processes:
                await process.wait()
            return
        log.warning("unikernels did not stop within %g s", self.config.stop_timeout)

    # -- persistence --------------------------------------------------------

    @property
    def state_file(self) -> Path:
        return self.config.state_dir / "state"

    def _restore_blocks(self) -> None:
        restore_blocks(self.vmmd, self.config.block_dir)

    def _restore_state(self) -> list[tuple[Name, UnikernelConfig]]:
        return restore_state(self.vmmd, self.state_file, self.config.root_policy())

    def dump_state(self) -> None:
        dump_state(self.vmmd, self.state_file)

    def block_file(self, name: Name) -> Path:
        return self.config.block_dir / str(name)

    # -- unikernel lifecycle (callers hold self.lock) ------------------------

    async def create(self, name: Name, config: UnikernelConfig, *, needs_dump: bool) -> Payload:
        """``create`` in albatrossd: prepare, console, exec, account, watch; the reply."""
        assert self._nursery is not None
        try:
            prepared = self.vmmd.prepare(name, config)
        except Refused as e:
            log.error("failed to create %s: %s", name, e)
            return Failure(e.message)
        if name.label is None:  # albatross-console refuses "path used instead of name"
            return Failure("could not create unikernel: console failed")
        ring, dropped = self.consoles.add(name, self.vmmd.resources.console_limit(name))
        for sub in dropped:
            sub.close()
        try:
            self.vmmd.resources.check_unikernel(name, config)
        except Refused:
            return Failure("could not create unikernel: console failed")
        nets = sorted(config.bridges, key=lambda n: n.name)
        taps = self._free_taps(len(nets))
        macs = [n.mac or default_mac(name, n.name) for n in nets]
        arguments = tuple(config.argv or ())
        if config.add_name and name.label is not None:
            arguments = (f"--name={name.label}", *arguments)
        spec = LaunchSpec(
            name=name,
            image=prepared.image,
            config=config,
            arguments=arguments,
            nets=tuple((n.name, tap, mac) for n, tap, mac in zip(nets, taps, macs, strict=True)),
            block_files=tuple(
                (b.name, os.fspath(self.block_file(block_name(name, b.host_device))))
                for b in config.blocks
            ),
        )
        splitter = LineSplitter()

        def output(data: bytes) -> None:
            lines = splitter.feed(data)
            if not lines:
                return
            now = self.clock()
            for line in lines:
                ring.write(now, line)
            entry = self.consoles.entry(name)
            for version, sub in list(entry.subscribers if entry is not None else []):
                for line in lines:
                    msg = Message(Header(name, 0, version), ConsoleData(now, line))
                    if not sub.offer(msg):
                        self.consoles.unsubscribe(name, sub)
                        break

        try:
            process = await self.runner.start(spec, output, self._nursery)
        except (OSError, AlbatrossError) as e:
            log.error("create (exec) failed for %s: %s", name, e)
            return Failure("could not create unikernel: console failed")
        unikernel = Unikernel(
            config=config,
            digest=prepared.digest,
            started=self.clock(),
            pid=process.pid,
            taps=tuple(zip(taps, macs, strict=True)),
        )
        try:
            self.vmmd.insert(name, unikernel)
        except Refused as e:  # cannot happen after the check above; never leave it running
            process.terminate()
            log.error("create (insert) failed for %s: %s", name, e)
            return Failure(e.message)
        self.processes[str(name)] = process
        if needs_dump:
            self.dump_state()
        watched = Watched(
            vmmdev=f"solo5-hvt-{process.pid}",
            pid=process.pid,
            # albatrossd sends (device in the unikernel, tap); stats reports it as "bridge"
            taps=tuple((n.name, tap) for n, tap in zip(nets, taps, strict=True)),
            memory=config.memory,
            started=unikernel.started,
        )
        self.stats.add(name, watched)
        self._tell_stats(name, StatsAdd(watched.vmmdev, process.pid, watched.taps))
        if isinstance(config.fail_behaviour, Restart) or config.add_name:
            waiter = Waiter()
            if self.vmmd.register_restart(name, waiter):
                self._nursery.start_soon(self._restart_handler, name, unikernel, waiter)
        self._nursery.start_soon(self._watch_exit, name, process)
        log.info("created %s (pid %d)", name, process.pid)
        return StringReply("created unikernel")

    async def _watch_exit(self, name: Name, process: Process) -> None:
        exit = await process.wait()
        async with self.lock:
            log.info("unikernel %s (pid %d) stopped with %s", name, process.pid, exit)
            if self.processes.get(str(name)) is process:
                del self.processes[str(name)]
            self.stats.remove(name)
            self._tell_stats(name, StatsRemove())
            self.consoles.deactivate(name)
            waiter = self.vmmd.exited(name)
            if waiter is None and not self.in_shutdown:
                self.dump_state()
        if waiter is not None:
            waiter.wake(exit)

    async def _restart_handler(self, name: Name, unikernel: Unikernel, waiter: Waiter) -> None:
        exit = await waiter.wait()
        if exit is None or self.in_shutdown:
            return
        config = unikernel.config
        async with self.lock:
            may = self.vmmd.may_restart(name)
            if may and config.add_name and exit.code == 64:
                reply = await self.create(name, replace(config, add_name=False), needs_dump=True)
            elif (
                may
                and isinstance(config.fail_behaviour, Restart)
                and should_restart(config, exit.code)
            ):
                reply = await self.create(name, config, needs_dump=False)
            else:
                self.dump_state()
                return
        log.info("restarting %s after %s: %s", name, exit, _text(reply))

    def stats_message(self, name: Name, command: StatsAdd | StatsRemove) -> Message:
        return Message(Header(name, self.vmmd.stats_counter), command)

    def _tell_stats(self, name: Name, command: StatsAdd | StatsRemove) -> None:
        channel = self.stats_channel
        if channel is not None and not channel.offer(self.stats_message(name, command)):
            log.error("stats channel too slow, dropped")
            self.stats_channel = None

    def _free_taps(self, count: int) -> list[str]:
        """Linux albatrossd names taps ``vmmtapN`` with the smallest unused N."""
        used = {tap for _, u in self.vmmd.running() for tap, _ in u.taps}
        taps: list[str] = []
        n = 0
        while len(taps) < count:
            if f"vmmtap{n}" not in used:
                taps.append(f"vmmtap{n}")
            n += 1
        return taps

    def wake_dropped(self) -> None:
        """Wake the waiters the pure code dropped (replaced or cancelled)."""
        while self.vmmd.dropped:
            self.vmmd.dropped.pop().wake(None)

    def terminate(self, name: Name) -> None:
        process = self.processes.get(str(name))
        if process is not None:
            process.terminate()


def _text(payload: Payload) -> str:
    if isinstance(payload, StringReply):
        return payload.text
    if isinstance(payload, Failure):
        return "failure: " + payload.message
    return type(payload).__name__
