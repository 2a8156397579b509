"""``alba``: the albatross-client command set as a composed click tree.

Each command group lives in its own module; this one mounts them (and the CA
toolkit's ``generate``, ``sign`` and ``ca`` commands), and turns errors into
albatross-client's output and exit codes (behaviour.md §4.6-4.7): log lines
(``prog: [ERROR] ...``) on stdout, command-line errors (``prog: ...``) on
stderr, click usage errors exit 124 like cmdliner's.  Tracebacks only with
``ALBA_DEBUG=1``.  The exit code of an error is the one its class carries
(:func:`alba_exit_code`): albatross-client's for the client's failures, 124 for
input the user must fix (the core's and the CA toolkit's errors).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

import click

from ca import cli as ca_cli
from client import (
    audit_cli,
    cmd_block,
    cmd_console,
    cmd_dump,
    cmd_policy,
    cmd_unikernel,
    fleet,
    inspect_cli,
)
from client.cmd_cert import certificate
from client.cmd_remote import remote
from client.cmd_update import update
from client.errors import ClientError, CliFailed, ExitStatus
from client.output import format_log, json_line
from core.errors import AlbatrossError, exit_code
from core.ocaml_format import Formatter

__all__ = ["alba", "alba_exit_code", "main", "term_error"]


def term_error(prog: str, message: str) -> str:
    """A cmdliner-style error: ``prog: `` then the words wrapped under the first one."""
    f = Formatter()
    f.text(f"{prog}: ").open_box().words(message).close_box().newline()
    return f.getvalue()


class _Interrupted(Exception):
    """Ctrl-C, carried past click (which would turn it into an Abort)."""


class _Reported(Exception):
    """An error already printed as a JSON line; carries the exit code."""

    def __init__(self, exit_code: int) -> None:
        super().__init__(exit_code)
        self.exit_code = exit_code


class AlbaGroup(click.Group):
    """A group whose ``main`` maps our errors to albatross-client exit codes."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            if ctx.params.get("fleet_remotes"):  # alba --remote a --remote b CMD …: client/fleet.py
                args = [*getattr(ctx, "_protected_args", ()), *ctx.args]  # click's split
                raise _Reported(fleet.main_fleet(self, ctx, ctx.params["fleet_remotes"],
                                                 ctx.params["fleet_timeout"], args))  # fmt: skip
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise _Interrupted from None
        except AlbatrossError as exc:
            if not ctx.meta.get("alba.json"):
                raise
            if not (isinstance(exc, ClientError) and exc.log == "none"):
                click.echo(json_line({"type": "error", "message": exc.message,
                                      "exit_code": alba_exit_code(exc)}), nl=False)  # fmt: skip
            raise _Reported(alba_exit_code(exc)) from None

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        prog = prog_name or os.path.basename(sys.argv[0]) or "alba"
        try:
            super().main(args, prog, complete_var, standalone_mode=False, **extra)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            exc.show()
            sys.exit(ExitStatus.CLI_FAILED)
        except click.ClickException as exc:
            exc.show()
            sys.exit(ExitStatus.CLI_FAILED)
        except click.Abort:
            click.echo("aborted", err=True)
            sys.exit(ExitStatus.CLI_FAILED)
        except _Reported as exc:
            sys.exit(exc.exit_code)
        except (KeyboardInterrupt, _Interrupted):
            # Ctrl-C ends a console or stats follow: that is how the user stops it.
            click.echo(f"{prog}: interrupted, stopped following", err=True)
            sys.exit(ExitStatus.SUCCESS)
        except AlbatrossError as exc:
            if os.environ.get("ALBA_DEBUG"):
                raise
            sys.exit(_report(prog, exc))
        except Exception as exc:  # a bug of ours: say so briefly, exit like cmdliner (125)
            if os.environ.get("ALBA_DEBUG"):
                raise
            click.echo(f"{prog}: internal error, uncaught exception: {exc!r}", err=True)
            sys.exit(ExitStatus.INTERNAL_ERROR)
        sys.exit(ExitStatus.SUCCESS)


def alba_exit_code(exc: AlbatrossError) -> int:
    """alba's exit code for *exc*: albatross-client's, which the error's class carries.

    The core's and the CA toolkit's errors reaching here come from checking the
    user's input (a manifest, a policy, a name, a file): albatross reports those as
    command-line errors, 124, and that is their classes' code.
    """
    return exit_code(exc)


def _report(prog: str, exc: AlbatrossError) -> int:
    # A client failure says how albatross reports it; any other error of ours is
    # reported like a command-line error.
    log = exc.log if isinstance(exc, ClientError) else "term"
    if log == "error":
        click.echo(format_log(f"{prog}: [ERROR] ", lambda f: f.text(exc.message)), nl=False)
    elif log == "term":
        click.echo(term_error(prog, exc.message), nl=False, err=True)
    return alba_exit_code(exc)


@click.group(cls=AlbaGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="albatross-gateway", message="%(prog)s %(version)s")
@click.option(
    "--remote",
    "fleet_remotes",
    multiple=True,
    metavar="NAME",
    help="Run the command on this named remote or group (repeatable: a fleet, concurrently).",
)
@click.option(
    "--fleet-timeout",
    type=click.FloatRange(min=0.1),
    default=fleet.FLEET_TIMEOUT,
    show_default=True,
    help="Seconds each remote of a fleet may take; a remote still running is stopped.",
)
def alba(fleet_remotes: tuple[str, ...], fleet_timeout: float) -> None:
    """Run albatross commands on a local or remote unikernel host.

    A command goes to the local daemon sockets (default, or --socket), to a
    remote TLS endpoint (--destination with --ca, --ca-key, --server-ca, or
    --remote NAME), or into a CSR (--csr) for signing later.  'alba --remote A
    --remote B CMD …' runs CMD on several remotes at once.
    """


for module in (cmd_unikernel, cmd_console, cmd_block, cmd_policy, cmd_dump):
    for command in module.commands:
        alba.add_command(command)


@click.command("help")
@click.argument("topic", required=False)
@click.pass_context
def help_(ctx: click.Context, topic: str | None) -> None:
    """Show help for the client or for one command (albatross-client's ``help TOPIC``)."""
    root = ctx.find_root()
    if topic is None:
        click.echo(alba.get_help(root))
        return
    command = alba.get_command(ctx, topic)
    if command is None:
        click.echo(f"unknown command '{topic}', available commands:")
        for name in alba.list_commands(ctx):
            click.echo(name)
        raise CliFailed(f"unknown command '{topic}'", log="none")
    with click.Context(command, info_name=topic, parent=root) as sub:
        click.echo(command.get_help(sub))


alba.add_command(help_)
alba.add_command(update)
alba.add_command(certificate)
alba.add_command(remote)


# The CA toolkit's ``generate``, ``sign`` and ``ca`` commands, and ``albatross-inspect``.
ca_cli.register(alba)
alba.add_command(inspect_cli.main, "inspect")
alba.add_command(audit_cli.explain_command, "explain")


def main() -> None:
    alba.main()
