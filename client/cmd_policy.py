"""Policy commands: policy, add-policy (replace-policy), remove-policy."""

from __future__ import annotations

from typing import Any

import click
from click.core import ParameterSource

from client.cmd_console import PATH_OPTION, PathType
from client.commands import build_policy
from client.destination import Remote
from client.errors import CliFailed, CommunicationFailed, RemoteCommandFailed
from client.options import (
    destination_options,
    make_printer,
    prog_name,
    resolve_destination,
    run_command,
)
from core.errors import AlbatrossError
from core.wire import Name, PolicyInfo, PolicyRemove

__all__ = ["add_policy", "commands", "policy", "remove_policy", "replace_policy"]


@click.command("policy")
@PATH_OPTION
@destination_options
@click.pass_context
def policy(ctx: click.Context, /, path: Name, **params: Any) -> None:
    """Show the policies at and below a path."""
    dest = resolve_destination(params)
    try:
        run_command(ctx, params, PolicyInfo(), path, dest=dest)
    except (RemoteCommandFailed, CommunicationFailed):
        # Over TLS the path is the leaf's CN: the default (the root) is an empty CN,
        # which the endpoint refuses; users of a delegated CA mean their own path.
        if isinstance(dest, Remote) and ctx.get_parameter_source("path") is ParameterSource.DEFAULT:
            click.echo(
                f"{prog_name(ctx)}: hint: without -p the request names the root path"
                " (an empty CN); for the policies of your own CA pass -p .",
                err=True,
            )
        raise


def _add_policy(
    ctx: click.Context,
    /,
    path: Name,
    unikernels: int,
    mem: int,
    cpus: tuple[int, ...],
    block: int | None,
    bridges: tuple[str, ...],
    params: dict[str, Any],
) -> None:
    dest = resolve_destination(params)
    printer = make_printer(ctx, params)
    try:
        command = build_policy(
            unikernels, mem, list(cpus) or [0], block, list(bridges), printer.warn
        )
    except AlbatrossError as exc:
        raise CliFailed(exc.message) from None
    run_command(ctx, params, command, path, dest=dest)


def _add_policy_command(cmd_name: str) -> click.Command:
    @click.command(cmd_name)
    @click.argument("path", type=PathType())
    @click.argument("unikernels", type=int)
    @click.option("--mem", type=int, default=512, show_default=True, help="Memory in MB.")
    @click.option("--cpu", "cpus", type=int, multiple=True, help="CPU id to allow (repeat) [0].")
    @click.option("--block", "--size", "block", type=int, help="Block storage in MB.")
    @click.option("--network", "--bridge", "bridges", multiple=True, help="Bridge (repeat).")
    @destination_options
    @click.pass_context
    def add_policy(
        ctx: click.Context,
        /,
        path: Name,
        unikernels: int,
        mem: int,
        cpus: tuple[int, ...],
        block: int | None,
        bridges: tuple[str, ...],
        **params: Any,
    ) -> None:
        """Add or replace the policy at PATH (locally, or as a CSR for a delegation CA)."""
        _add_policy(ctx, path, unikernels, mem, cpus, block, bridges, params)

    return add_policy


@click.command("remove-policy")
@PATH_OPTION
@destination_options
@click.pass_context
def remove_policy(ctx: click.Context, /, path: Name, **params: Any) -> None:
    """Remove the policy at a path (local socket)."""
    run_command(ctx, params, PolicyRemove(), path)


add_policy = _add_policy_command("add-policy")
replace_policy = _add_policy_command("replace-policy")
commands = [policy, add_policy, replace_policy, remove_policy]
