"""Start-up figures: CLI wall time, and inetd / ``Accept=yes`` wall time per command.

Used by ``bench/bench_endpoint.py``; run alone:
``.venv/bin/python bench/startup.py [--runs 7] [--cpus 0]`` (CLI start-up only).

* CLI start-up: the median wall time of ``alba --version``, ``alba --help``, a TAB
  completion (``_ALBA_COMPLETE=bash_complete``, what the shell's completion function
  runs), ``albatross-inspect --version``, ``albatross-tls-endpoint --version`` and
  ``--help``, each started as the shell starts it (the console script in the venv).
* inetd: ``systemd-socket-activate --accept --inetd`` starts one endpoint process per
  connection (as inetd and systemd ``Accept=yes`` do); one ``info`` after another, the
  median wall time from ``connect`` to the endpoint's close, seen by the client.

Both are measured with the project's modules compiled to bytecode (:func:`compile_project`),
as an installed package has them (pip and the Debian packaging compile at install time).
A development checkout under ``PYTHONDONTWRITEBYTECODE=1`` has no ``__pycache__``: every
process would compile each of our modules from source again: importing what an inetd
endpoint imports took 0.53 s from source and 0.40 s from bytecode on this machine
(2026-12-04 00:30 UTC), a cost no user of the package pays.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.loadgen import Target, one_command

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent
#: The project's packages (pyproject.toml, [tool.setuptools.packages.find]).
PACKAGES = ("core", "cmdline", "durable", "transport", "tlsendpoint", "standin", "ca", "client")


def compile_project() -> None:
    """Compile the project's modules to bytecode, as installing the package does."""
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", *(str(ROOT / p) for p in PACKAGES)],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip


#: (label, argv after the venv's bin/, extra environment)
CLI_CASES: tuple[tuple[str, tuple[str, ...], Mapping[str, str]], ...] = (
    ("alba --version", ("alba", "--version"), {}),
    ("alba --help", ("alba", "--help"), {}),
    (
        "alba TAB completion",
        ("alba",),
        {"_ALBA_COMPLETE": "bash_complete", "COMP_WORDS": "alba ", "COMP_CWORD": "1"},
    ),
    ("albatross-inspect --version", ("albatross-inspect", "--version"), {}),
    ("albatross-tls-endpoint --version", ("albatross-tls-endpoint", "--version"), {}),
    ("albatross-tls-endpoint --help", ("albatross-tls-endpoint", "--help"), {}),
)


def pinned(cpus: set[int] | None) -> Callable[[], None] | None:
    """A ``preexec_fn`` that keeps the child (and its children) on *cpus*."""
    if not cpus:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


def median_wall_ms(
    argv: Sequence[str], env: Mapping[str, str], runs: int, cpus: set[int] | None
) -> tuple[float, int]:
    """Median wall ms of *runs* starts (after one warm-up), and the last exit code."""
    environ = {**os.environ, **env}
    times, code = [], 0
    for i in range(runs + 1):
        start = time.perf_counter()
        code = subprocess.run(
            argv, env=environ, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=pinned(cpus), check=False,
        ).returncode  # fmt: skip
        if i:
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000, code


def cli_startup(runs: int, cpus: set[int] | None) -> list[tuple[str, float, int]]:
    """(label, median ms, exit code) for each of :data:`CLI_CASES`."""
    return [
        (label, *median_wall_ms([str(BIN / argv[0]), *argv[1:]], env, runs, cpus))
        for label, argv, env in CLI_CASES
    ]


def inetd_per_command(
    port: int,
    endpoint_args: Sequence[str],
    target: Target,
    commands: int,
    cpus: set[int] | None,
    log: Path,
) -> tuple[float, float, int]:
    """Median and p90 wall ms per ``info`` through an inetd endpoint, and the errors."""
    activate = shutil.which("systemd-socket-activate")
    if activate is None:
        raise SystemExit("bench: systemd-socket-activate is needed for the inetd figure")
    argv = [
        activate, "--accept", "--inetd", "-l", f"127.0.0.1:{port}",
        str(BIN / "albatross-tls-endpoint"), "--inetd", *endpoint_args,
    ]  # fmt: skip
    with log.open("wb") as err:
        process = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=err, preexec_fn=pinned(cpus)
        )
    try:
        ctx = target.context()
        deadline = time.monotonic() + 20
        while True:  # the listener is up when a connection is accepted
            try:
                one_command(ctx, target)
                break
            except OSError as exc:
                if time.monotonic() > deadline:
                    raise SystemExit(f"bench: the inetd listener did not start; see {log}") from exc
                time.sleep(0.1)
        times, errors = [], 0
        for _ in range(commands):
            seconds, ok = one_command(ctx, target)
            if ok:
                times.append(seconds)
            else:
                errors += 1
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)
    if not times:
        return float("nan"), float("nan"), errors
    times.sort()
    return (
        statistics.median(times) * 1000,
        times[min(len(times) - 1, int(0.9 * len(times)))] * 1000,
        errors,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--cpus", default="", help="CPUs to run the CLIs on, e.g. 0 or 0,1")
    a = ap.parse_args()
    cpus = {int(c) for c in a.cpus.split(",")} if a.cpus else None
    compile_project()
    for label, ms, code in cli_startup(a.runs, cpus):
        print(f"| {label} | {ms:.0f} ms | exit {code} |")


if __name__ == "__main__":
    main()
