"""Console and statistics commands: console, inactive-consoles, stats, stats-add, stats-remove."""

from __future__ import annotations

import datetime as dt
from typing import Any

import click

from client.cmd_unikernel import NAME, OPT_NAME
from client.commands import parse_path
from client.options import destination_options, run_command
from core.errors import AlbatrossError
from core.wire import (
    ConsoleListInactive,
    ConsoleSubscribe,
    Name,
    StatsAdd,
    StatsRemove,
    StatsSubscribe,
)

__all__ = ["PATH_OPTION", "PathType", "commands", "parse_since"]


def parse_since(text: str) -> dt.datetime:
    """RFC 3339, or a bare date (``YYYY-MM-DD`` means midnight UTC), as albatross accepts."""
    candidate = text if "T" in text or "t" in text else text + "T00:00:00-00:00"
    candidate = candidate.replace("z", "Z").replace("Z", "+00:00").replace("-00:00", "+00:00")
    try:
        value = dt.datetime.fromisoformat(candidate)
    except ValueError:
        raise click.BadParameter("couldn't parse timestamp") from None
    if value.tzinfo is None:
        raise click.BadParameter("couldn't parse timestamp (RFC 3339 needs an offset)")
    return value


class PathType(click.ParamType[Any]):
    name = "PATH"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Name:
        if isinstance(value, Name):
            return value
        try:
            return parse_path(str(value))
        except AlbatrossError as exc:
            self.fail(exc.message, param, ctx)


PATH_OPTION = click.option(
    "-p",
    "--path",
    "path",
    type=PathType(),
    default=":",
    help="Path to unikernels (default: the root).",
)


@click.command("console")
@click.argument("name", type=NAME)
@click.option("--since", help="Lines since this time (RFC 3339 or YYYY-MM-DD).")
@click.option("--count", type=int, default=20, show_default=True, help="Number of lines.")
@destination_options
@click.pass_context
def console(
    ctx: click.Context, /, name: Name, since: str | None, count: int, **params: Any
) -> None:
    """Show the console output of a unikernel and follow it (Ctrl-C stops)."""
    command = ConsoleSubscribe(since=parse_since(since)) if since else ConsoleSubscribe(count=count)
    run_command(ctx, params, command, name)


@click.command("inactive-consoles")
@PATH_OPTION
@destination_options
@click.pass_context
def inactive_consoles(ctx: click.Context, /, path: Name, **params: Any) -> None:
    """List the consoles of stopped unikernels."""
    run_command(ctx, params, ConsoleListInactive(), path)


@click.command("stats")
@OPT_NAME
@destination_options
@click.pass_context
def stats(ctx: click.Context, /, name: Name, **params: Any) -> None:
    """Show statistics of unikernels and follow them (Ctrl-C stops)."""
    run_command(ctx, params, StatsSubscribe(), name)


def _bridge_tap(text: str) -> tuple[str, str]:
    parts = text.split(":")
    if len(parts) != 2:
        raise click.BadParameter("broken, format is bridge:tap")
    return parts[0], parts[1]


@click.command("stats-add")
@click.argument("pid", type=int)
@OPT_NAME
@click.option("--vmmdev", help="VMM device name (/dev/vmm/NAME).")
@click.option("--bridge", "bridges", multiple=True, help="bridge:tap pair (repeat).")
@destination_options
@click.pass_context
def stats_add(
    ctx: click.Context,
    /,
    pid: int,
    name: Name,
    vmmdev: str | None,
    bridges: tuple[str, ...],
    **params: Any,
) -> None:
    """Add a process to statistics gathering (local socket)."""
    taps = tuple(_bridge_tap(b) for b in bridges)
    run_command(ctx, params, StatsAdd(vmmdev or "", pid, taps), name)


@click.command("stats-remove")
@OPT_NAME
@destination_options
@click.pass_context
def stats_remove(ctx: click.Context, /, name: Name, **params: Any) -> None:
    """Remove a unikernel from statistics gathering (local socket)."""
    run_command(ctx, params, StatsRemove(), name)


commands = [console, inactive_consoles, stats, stats_add, stats_remove]
