"""Fleets: one alba command on several remotes at once (``alba --remote a --remote b …``).

How it works.  Each remote gets its own ``alba`` process (the same interpreter,
``python -m client``), started with the command line the user typed plus ``--remote
NAME`` after the command's name; a trio nursery runs them all concurrently and relays
their output line by line, each line prefixed by its remote (``a: …``; with ``--json``
each JSON line gets a ``"remote"`` key instead).  A line is written whole, so lines of
different remotes interleave but never mix.

Why processes and not tasks: every command then runs on every host exactly as it runs
alone - its own leaf certificate, its own output, its own exit code, even for ``update``
(which talks to builder-web) or a console that follows - and a host that hangs can be
stopped without touching the others' state.  The cost is one interpreter start per remote.

A host that is down fails on its own (its exit code, e.g. 122); one that is slow is
stopped at the per-host deadline (``--fleet-timeout``, default ``client.cli.FLEET_TIMEOUT``)
and counts as failed; neither holds the others' output.  The exit code is 0 if every
remote succeeded, else :data:`SOME_FAILED` (123, as xargs when some invocation failed).

Remote groups live in remotes.toml next to the remotes::

    [groups]
    web = ["web1", "web2"]     # names of remotes; `alba --remote web info` runs on both
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from subprocess import PIPE

import click
import trio

from client.errors import CliFailed
from client.output import chosen_format, json_line, record
from client.remotes import load_groups, load_remotes

__all__ = [
    "MAX_PARALLEL",
    "SOME_FAILED",
    "FleetResult",
    "child_argv",
    "expand_remotes",
    "run_fleet",
]

#: Seconds each remote's command may take before it is stopped (then it counts as failed).
#: Above the client's default reply timeout (120 s), so a slow daemon's own error shows.
#: Remotes whose commands run at the same time (the others wait their turn).
MAX_PARALLEL = 16
#: Exit code when at least one remote failed (xargs uses 123 the same way).
SOME_FAILED = 123
#: A longer line is passed on in pieces of this size (a bound on what we hold per stream).
MAX_LINE = 1 << 16
#: Parameters that choose a destination: on a fleet, the remotes come from ``alba --remote``.
_DESTINATION_PARAMS = frozenset({"remote_name", "destination", "socket", "csr"})


@dataclass
class FleetResult:
    """Each remote's exit code, None for one stopped at its deadline."""

    codes: dict[str, int | None] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return 0 if all(code == 0 for code in self.codes.values()) else SOME_FAILED

    def failed(self) -> list[str]:
        return [name for name, code in self.codes.items() if code != 0]


def expand_remotes(names: Sequence[str], path: Path | None = None) -> list[str]:
    """The remotes *names* stand for (groups expanded), each once, in order."""
    remotes = load_remotes(path)
    groups = load_groups(path)
    for group in groups:
        if group in remotes:
            raise CliFailed(f"{group!r} is both a remote and a group: rename one", log="term")
    chosen: list[str] = []
    for name in names:
        members = groups.get(name, (name,))
        for member in members:
            if member not in remotes:
                where = f" (in group {name!r})" if name in groups else ""
                known = ", ".join(sorted([*remotes, *groups])) or "none"
                raise CliFailed(
                    f"unknown remote {member!r}{where} (known remotes and groups: {known})",
                    log="term",
                )
            if member not in chosen:
                chosen.append(member)
    return chosen


def resolve(group: click.Group, ctx: click.Context, args: Sequence[str]) -> Fleet:
    """The command *args* names below *group*, refused if it takes no destination."""
    command: click.Command = group
    position = 0
    while isinstance(command, click.Group):
        if position >= len(args) or args[position].startswith("-"):
            raise CliFailed("alba --remote: give the command to run on the remotes", log="term")
        found = command.get_command(ctx, args[position])
        if found is None:
            raise CliFailed(f"alba --remote: no such command {args[position]!r}", log="term")
        command, position = found, position + 1
    if not any(param.name == "remote_name" for param in command.params):
        raise CliFailed(
            f"{' '.join(args[:position])} takes no destination: it cannot run on remotes",
            log="term",
        )
    options = list(args[position:])
    # the command's own destination options, every spelling (hidden aliases included)
    flags = {
        opt
        for param in command.params
        if param.name in _DESTINATION_PARAMS
        for opt in (*param.opts, *param.secondary_opts)
    }
    end = options.index("--") if "--" in options else len(options)
    for token in options[:end]:
        if token.split("=", 1)[0] in flags:
            raise CliFailed(
                f"{token.split('=', 1)[0]} cannot be combined with alba --remote: the remotes"
                " choose the hosts",
                log="term",
            )
    # parsed as the command itself parses them (no callbacks run): --json or --format json
    parsed = command.make_context(args[position - 1], list(options), resilient_parsing=True)
    return Fleet(list(args[:position]), options, chosen_format(parsed.params) == "json")


@dataclass(frozen=True)
class Fleet:
    """A command for every remote: its words, its options, whether it prints JSON lines."""

    words: list[str]
    options: list[str]
    json: bool

    def argv(self, remote: str) -> list[str]:
        """The command line of *remote*'s process: ``--remote`` after the command."""
        return [sys.executable, "-m", "client", *self.words, "--remote", remote, *self.options]


def child_argv(
    group: click.Group, ctx: click.Context, args: Sequence[str], remote: str
) -> list[str]:
    """The command line of *remote*'s process: *args* with ``--remote`` after the command."""
    return resolve(group, ctx, args).argv(remote)


Write = Callable[[str], None]


@dataclass
class _Sink:
    """Where relayed lines go: prefixed text, or JSON with a ``remote`` key."""

    out: Write
    err: Write
    json: bool

    def line(self, remote: str, text: str, stderr: bool) -> None:
        if self.json and not stderr:
            try:
                value = json.loads(text)
            except ValueError:
                value = None
            line = value if isinstance(value, dict) else record("output", text=text)
            self.out(json_line({**line, "remote": remote}))
        else:
            (self.err if stderr else self.out)(f"{remote}: {text}\n")


async def _relay(stream: trio.abc.ReceiveStream, emit: Callable[[str], None]) -> None:
    """Pass on *stream* line by line (bounded: a line past MAX_LINE goes on in pieces)."""
    pending = bytearray()
    while chunk := await stream.receive_some(MAX_LINE):
        pending += chunk
        while (end := pending.find(b"\n")) >= 0 or len(pending) >= MAX_LINE:
            cut = end if 0 <= end < MAX_LINE else MAX_LINE
            emit(bytes(pending[:cut]).decode("utf-8", "replace"))
            del pending[: cut + 1 if cut == end else cut]
    if pending:
        emit(bytes(pending).decode("utf-8", "replace"))


async def _run_one(
    remote: str,
    argv: list[str],
    timeout: float,
    sink: _Sink,
    limiter: trio.CapacityLimiter,
    prog: str,
) -> int | None:
    async with limiter:
        with trio.move_on_after(timeout):
            async with trio.open_nursery() as nursery:
                run = partial(trio.run_process, argv, stdin=b"", stdout=PIPE, stderr=PIPE,
                              check=False, env={**os.environ, "ALBA_PROG": prog})  # fmt: skip
                process: trio.Process = await nursery.start(run)
                assert process.stdout is not None and process.stderr is not None
                nursery.start_soon(_relay, process.stdout, partial(sink.line, remote, stderr=False))
                nursery.start_soon(_relay, process.stderr, partial(sink.line, remote, stderr=True))
            return process.returncode
    # run_process stopped the process (SIGTERM, then SIGKILL) when the deadline cancelled it
    return None


async def run_fleet(
    commands: dict[str, list[str]],
    timeout: float,
    out: Write,
    err: Write,
    json_output: bool,
    prog: str = "alba",
) -> FleetResult:
    """Run each remote's command line concurrently; relay the output; say who failed."""
    sink = _Sink(out, err, json_output)
    result = FleetResult({name: None for name in commands})
    limiter = trio.CapacityLimiter(MAX_PARALLEL)

    async def one(name: str, argv: list[str]) -> None:
        code = await _run_one(name, argv, timeout, sink, limiter, prog)
        result.codes[name] = code
        if code is None:
            sink.line(name, f"{prog}: no result within {timeout:g} s: stopped", stderr=True)

    async with trio.open_nursery() as nursery:
        for name, argv in commands.items():
            nursery.start_soon(one, name, argv)
    _summary(result, sink, prog)
    return result


def _summary(result: FleetResult, sink: _Sink, prog: str) -> None:
    if sink.json:
        summary = record("fleet", results=result.codes, exit_code=result.exit_code)
        sink.out(json_line(summary))
        return
    failed = result.failed()
    total = len(result.codes)
    text = f"{prog}: fleet: {total - len(failed)} of {total} remotes succeeded"
    if failed:
        reasons = [f"{n} ({_outcome(result.codes[n])})" for n in failed]
        text += "; failed: " + ", ".join(reasons)
    sink.err(text + "\n")


def _outcome(code: int | None) -> str:
    return "stopped at the deadline" if code is None else f"exit {code}"


def main_fleet(
    group: click.Group, ctx: click.Context, names: Sequence[str], timeout: float, args: list[str]
) -> int:
    """``alba --remote …`` from the group: expand, build each command line, run; exit code."""
    prog = ctx.find_root().info_name or "alba"
    remotes = expand_remotes(names)
    fleet = resolve(group, ctx, args)
    commands = {name: fleet.argv(name) for name in remotes}
    out: Write = partial(click.echo, nl=False)
    err: Write = partial(click.echo, nl=False, err=True)
    result = trio.run(run_fleet, commands, timeout, out, err, fleet.json, prog)
    return result.exit_code
