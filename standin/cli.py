"""``albatross-standin``: run the daemon stand-in from the command line.

Listens on ``<tmpdir>/util/{vmmd,console,stat}.sock`` until SIGTERM or
SIGINT, then stops every unikernel (they restart with the next start) and
exits 0.  Diagnostics go to stderr; ``-v`` for more, ``-q`` for less.
"""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path

import click
import trio

from cmdline import Command, log_level
from core.errors import UsageError, exit_code
from standin import sockets
from standin.config import StandinConfig, discovered_host
from standin.daemon import Daemon, StandinError
from standin.runner import Runner, SimulatedRunner
from standin.runner_hvt import Solo5HvtRunner

__all__ = ["main"]

log = logging.getLogger("standin")

RUNNERS = ("simulated", "solo5-hvt")


_LOG_LEVELS = {
    "quiet": logging.CRITICAL + 1,
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
}


def make_runner(name: str, config: StandinConfig, tender: str) -> Runner:
    if name == "solo5-hvt":
        return Solo5HvtRunner(config.tmpdir, tender)
    return SimulatedRunner()


async def _run(config: StandinConfig, runner: Runner) -> None:
    daemon = Daemon(config, runner)
    async with trio.open_nursery() as nursery:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            await nursery.start(sockets.serve, daemon)
            click.echo(f"albatross-standin: listening in {config.util_dir}", err=True)
            async for signum in signals:
                log.info("received %s, shutting down", signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break


@click.command(cls=Command)
@click.option(
    "--tmpdir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Directory whose util/ subdirectory receives the three sockets.",
)
@click.option(
    "--state-dir",
    "--dbdir",
    "state_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Directory for the state file and the block devices (albatrossd's --dbdir).",
)
@click.option(
    "--bridge",
    "bridges",
    multiple=True,
    show_default="none, like albatrossd on a host without bridges",
    help="A host bridge (repeatable); all of them go into the root policy.",
)
@click.option(
    "--no-bridges",
    is_flag=True,
    help="The host has no bridge at all (the default; kept for older command lines).",
)
@click.option(
    "--cpus",
    type=click.IntRange(1, 1024),
    show_default="this machine's online CPUs",
    help="CPUs of the root policy (ids 0 to N-1).",
)
@click.option(
    "--memory",
    type=click.IntRange(1),
    show_default="this machine's physical memory",
    help="Memory of the root policy in MB.",
)
@click.option(
    "--block-space",
    type=click.IntRange(0),
    show_default="the size of the file system holding STATE_DIR/block",
    help="Block storage of the root policy in MB.",
)
@click.option(
    "--stats-interval",
    type=click.FloatRange(0.1),
    default=10.0,
    show_default=True,
    help="Seconds between two statistics messages to subscribers.",
)
@click.option(
    "--max-subscribers",
    type=click.IntRange(1),
    default=5,
    show_default=True,
    help="Console subscribers per unikernel; the oldest is dropped.",
)
@click.option(
    "--runner",
    type=click.Choice(RUNNERS),
    default="simulated",
    show_default=True,
    help="How unikernels run: simulated (no tender needed) or the real solo5-hvt.",
)
@click.option(
    "--tender",
    default="solo5-hvt",
    show_default=True,
    help="The solo5-hvt executable (a name in PATH or a path), for --runner solo5-hvt.",
)
def main(
    tmpdir: Path,
    state_dir: Path,
    bridges: tuple[str, ...],
    no_bridges: bool,
    cpus: int | None,
    memory: int | None,
    block_space: int | None,
    stats_interval: float,
    max_subscribers: int,
    runner: str,
    tender: str,
) -> None:
    """Stand-in for albatrossd, albatross-console and albatross-stats (albatross 2.7.2).

    The root policy is what albatrossd would find on this machine (CPUs, memory,
    disk), with no bridge unless --bridge names one; options override each part.
    """
    if no_bridges and bridges:
        raise click.UsageError("--no-bridges cannot be combined with --bridge")
    found_cpus, found_memory, found_block = discovered_host(state_dir / "block")
    # -v/-q/--verbosity are every script's (cmdline); quiet logs nothing.
    level = _LOG_LEVELS[log_level(click.get_current_context())]
    logging.basicConfig(level=level, format="albatross-standin: %(levelname)s %(message)s")
    config = StandinConfig(
        tmpdir=tmpdir,
        state_dir=state_dir,
        bridges=bridges,
        cpus=found_cpus if cpus is None else cpus,
        memory=found_memory if memory is None else memory,
        block_space=found_block if block_space is None else block_space,
        stats_interval=stats_interval,
        max_subscribers=max_subscribers,
    )
    try:
        chosen = make_runner(runner, config, tender)
    except UsageError as e:
        raise click.BadParameter(str(e), param_hint="'--tender'") from None
    try:
        trio.run(_run, config, chosen)
    except (StandinError, BaseExceptionGroup) as e:
        error = _standin_error(e)
        if error is None:
            raise
        click.echo(f"albatross-standin: {error}", err=True)
        sys.exit(exit_code(error))


def _standin_error(exc: BaseException) -> StandinError | None:
    """The StandinError inside trio's exception groups, if that is what stopped us."""
    if isinstance(exc, StandinError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _standin_error(inner)
            if found is not None:
                return found
    return None
