"""How the stand-in runs a unikernel: a small runner interface and a simulator.

albatrossd execs ``solo5-hvt`` and reads the console from a fifo.  A test
machine has no tender and no KVM, so the default :class:`SimulatedRunner`
plays the unikernel in a trio task instead:

* it prints a boot banner and ``command line: <arguments>``, then
  ``tick N`` once a second;
* images made by ``shared/tools/mkfake.py`` (all the vector images) behave as
  their stub would under solo5-hvt: their banner, ``ticker`` images tick
  forever or, when the last argument is a number N, N times and exit 0;
  ``exit`` images exit at once with their exit status;
* any other Solo5 image ticks like a ticker, with the text at its entry point as
  banner if that is a line of text (the demo images of :mod:`standin.images`),
  else a generic one;
* **documented exit-code argument**: an argument ``standin-exit=C`` makes any
  image exit with code C after its ticks (1 tick unless the last argument is
  a number N), so restart-on-failure and exit codes can be tested.

Destroying a unikernel ends it "by signal 15", as SIGTERM would.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import trio

from core.wire import Name, UnikernelConfig
from standin.solo5 import fake_stub, text_banner

__all__ = ["EXIT_ARGUMENT", "LaunchSpec", "Process", "ProcessExit", "Runner", "SimulatedRunner"]

EXIT_ARGUMENT = "standin-exit="
SIGTERM = 15
#: Simulated pids start here, far from real ones.
FIRST_PID = 70000
#: A simulated unikernel lives at least this long, so a restart loop cannot spin the daemon.
MIN_RUNTIME = 0.1


@dataclass(frozen=True, slots=True)
class ProcessExit:
    """How a unikernel ended: an exit code, or the signal that killed it."""

    code: int | None = None
    signal: int | None = None

    def __str__(self) -> str:
        return f"exit {self.code}" if self.code is not None else f"signal {self.signal}"


@dataclass(frozen=True, slots=True)
class LaunchSpec:
    name: Name
    image: bytes  # uncompressed
    config: UnikernelConfig
    arguments: tuple[str, ...]  # the command line after --name injection
    nets: tuple[tuple[str, str, bytes], ...] = ()  # (device in the unikernel, tap, MAC)
    block_files: tuple[tuple[str, str], ...] = field(default=())  # (device, host file)


class Process(Protocol):
    pid: int

    def terminate(self) -> None: ...

    async def wait(self) -> ProcessExit: ...


Output = Callable[[bytes], None]


class Runner(Protocol):
    """Starts unikernels; each runs in a task of *nursery* and writes its console to *output*."""

    async def start(self, spec: LaunchSpec, output: Output, nursery: trio.Nursery) -> Process: ...


class _SimulatedProcess:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._scope = trio.CancelScope()
        self._done = trio.Event()
        self._exit = ProcessExit(signal=SIGTERM)

    def terminate(self) -> None:
        self._scope.cancel()

    async def wait(self) -> ProcessExit:
        await self._done.wait()
        return self._exit

    async def run(self, spec: LaunchSpec, output: Output) -> None:
        try:
            with self._scope:
                started = trio.current_time()
                exit = await _simulate(spec, output)
                await trio.sleep_until(started + MIN_RUNTIME)
                self._exit = exit
        finally:
            self._done.set()


def _count_argument(arguments: tuple[str, ...]) -> int | None:
    if arguments and arguments[-1].isdigit():
        return int(arguments[-1])
    return None


def _exit_argument(arguments: tuple[str, ...]) -> int | None:
    for arg in arguments:
        if arg.startswith(EXIT_ARGUMENT) and arg[len(EXIT_ARGUMENT) :].isdigit():
            return int(arg[len(EXIT_ARGUMENT) :]) & 0xFF
    return None


async def _simulate(spec: LaunchSpec, output: Output) -> ProcessExit:
    stub = fake_stub(spec.image)
    if stub is not None:
        banner = stub.banner
    else:
        banner = text_banner(spec.image) or f"standin: simulated solo5 unikernel {spec.name}"
    output(f"{banner}\ncommand line: {' '.join(spec.arguments)}\n".encode())
    forced = _exit_argument(spec.arguments)
    count = _count_argument(spec.arguments)
    if stub is not None and not stub.ticker and forced is None:
        return ProcessExit(code=stub.exit_status)
    if forced is not None and count is None:
        count = 1
    for tick in itertools.count(1):
        output(f"tick {tick}\n".encode())
        if count is not None and tick >= count:
            return ProcessExit(code=forced if forced is not None else 0)
        await trio.sleep(1)
    raise AssertionError("unreachable")


class SimulatedRunner:
    """The default runner: no tender, no KVM; see the module documentation."""

    def __init__(self) -> None:
        self._pids = itertools.count(FIRST_PID)

    async def start(self, spec: LaunchSpec, output: Output, nursery: trio.Nursery) -> Process:
        process = _SimulatedProcess(next(self._pids))
        nursery.start_soon(process.run, spec, output)
        return process
