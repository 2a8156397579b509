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

from client.errors import ClientError, CliFailed, ExitStatus
from cmdline import LazyGroup, log_level
from core.errors import AlbatrossError, exit_code

__all__ = ["COMMANDS", "alba", "alba_exit_code", "main", "term_error"]


def term_error(prog: str, message: str) -> str:
    """A cmdliner-style error: ``prog: `` then the words wrapped under the first one."""
    from core.ocaml_format import Formatter

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


class AlbaGroup(LazyGroup):
    """A group whose ``main`` maps our errors to albatross-client exit codes."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            if ctx.params.get("fleet_remotes"):  # alba --remote a --remote b CMD …: client/fleet.py
                from client import fleet  # trio and the subprocesses only for a fleet

                args = [*getattr(ctx, "_protected_args", ()), *ctx.args]  # click's split
                raise _Reported(fleet.main_fleet(self, ctx, ctx.params["fleet_remotes"],
                                                 ctx.params["fleet_timeout"], args))  # fmt: skip
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise _Interrupted from None
        except BaseExceptionGroup as group:
            # trio delivers Ctrl-C inside a nursery wrapped in a group (strict exception
            # groups): a group of nothing but interrupts is the same Ctrl-C.
            if group.split(KeyboardInterrupt)[1] is None:
                raise _Interrupted from None
            raise
        except AlbatrossError as exc:
            if isinstance(exc, ClientError) and exc.log == "error" and log_level(ctx) == "quiet":
                raise _Reported(alba_exit_code(exc)) from None  # -q: Logs prints no [ERROR]
            if not ctx.meta.get("alba.json"):
                raise
            from client.output import exception_record, json_line  # only when it is needed

            line = exception_record(exc, alba_exit_code(exc))
            if line is not None:
                click.echo(json_line(line), nl=False)
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
        from client.output import format_log

        click.echo(format_log(f"{prog}: [ERROR] ", lambda f: f.text(exc.message)), nl=False)
    elif log == "term":
        click.echo(term_error(prog, exc.message), nl=False, err=True)
    return alba_exit_code(exc)


#: Every command of ``alba``, imported when it runs (:class:`cmdline.LazyGroup`): the
#: module and attribute, and the one-line help that ``alba --help`` and completion show
#: (tests/client/test_cli_common.py checks it is the command's own).  A new command goes
#: here rather than through ``alba.add_command``, which would import it at every start.
COMMANDS = {
    "add-policy": (
        "client.cmd_policy:add_policy",
        "Add or replace the policy at PATH (locally, or as a CSR for a delegation CA).",
    ),
    "block": (
        "client.cmd_block:block",
        "Show block devices.",
    ),
    "ca": (
        "ca.cli:ca_group",
        "Certificate authority tools beyond albatross: delegate, inspect, revoke, crl.",
    ),
    "certificate": (
        "client.cmd_cert:certificate",
        "Connect with the chain CERT (leaf first) and KEY, and run the leaf's command.",
    ),
    "completion": (
        "client.cli:completion",
        "Print the shell completion script for bash, zsh or fish.",
    ),
    "console": (
        "client.cmd_console:console",
        "Show the console output of a unikernel and follow it (Ctrl-C stops).",
    ),
    "create": (
        "client.cmd_unikernel:create",
        "Create a unikernel (the image travels inside the request certificate).",
    ),
    "create-block": (
        "client.cmd_block:create_block",
        "Create a block device of SIZE-MB megabytes, optionally with content.",
    ),
    "destroy": (
        "client.cmd_unikernel:destroy",
        "Destroy a unikernel.",
    ),
    "destroy-block": (
        "client.cmd_block:destroy_block",
        "Remove a block device.",
    ),
    "dump-block": (
        "client.cmd_block:dump_block",
        "Download a block device to $TMPDIR.",
    ),
    "explain": (
        "client.audit_cli:explain_command",
        "Say whether the endpoint would allow CHAIN_FILE's request (leaf first), and why not.",
    ),
    "extract-dump": (
        "client.cmd_dump:extract_dump",
        "Write a unikernel's image from the state file to $TMPDIR and show its configuration.",
    ),
    "generate": (
        "ca.cli:generate_command",
        "Create a root CA (NAME.key, cacert.pem) and the server certificate; append to DB.",
    ),
    "get": (
        "client.cmd_unikernel:get",
        "Download the image of a running unikernel to $TMPDIR.",
    ),
    "help": (
        "client.cli:help_",
        "Show help for the client or for one command (albatross-client's `help TOPIC`).",
    ),
    "inactive-consoles": (
        "client.cmd_console:inactive_consoles",
        "List the consoles of stopped unikernels.",
    ),
    "info": (
        "client.cmd_unikernel:info",
        "Show information about unikernels.",
    ),
    "inspect": (
        "client.inspect_cli:main",
        "Explain the albatross content of SOURCE (a file, or - for standard input).",
    ),
    "inspect-dump": (
        "client.cmd_dump:inspect_dump",
        "Show the unikernels and policies in albatross's state file.",
    ),
    "policy": (
        "client.cmd_policy:policy",
        "Show the policies at and below a path.",
    ),
    "remote": (
        "client.cmd_remote:remote",
        "Manage named remotes (used with --remote NAME).",
    ),
    "remove-policy": (
        "client.cmd_policy:remove_policy",
        "Remove the policy at a path (local socket).",
    ),
    "replace-policy": (
        "client.cmd_policy:replace_policy",
        "Add or replace the policy at PATH (locally, or as a CSR for a delegation CA).",
    ),
    "restart": (
        "client.cmd_unikernel:restart",
        "Restart a unikernel, keeping or replacing its arguments.",
    ),
    "set-block": (
        "client.cmd_block:set_block",
        "Overwrite a block device with the content of FILE (streamed).",
    ),
    "sign": (
        "ca.cli:sign_command",
        "Sign CSR with the CA in CACERT/KEY, write <CN>.pem and append to DB.",
    ),
    "stats": (
        "client.cmd_console:stats",
        "Show statistics of unikernels and follow them (Ctrl-C stops).",
    ),
    "stats-add": (
        "client.cmd_console:stats_add",
        "Add a process to statistics gathering (local socket).",
    ),
    "stats-remove": (
        "client.cmd_console:stats_remove",
        "Remove a unikernel from statistics gathering (local socket).",
    ),
    "tree": (
        "client.cmd_tree:tree",
        "Show the delegation tree under your path: policies, usage, headroom.",
    ),
    "update": (
        "client.cmd_update:update",
        "Update a unikernel to the latest build of its job on builder-web.",
    ),
}


#: Seconds each remote of a fleet may take (above the 120 s reply deadline).
FLEET_TIMEOUT = 150.0


@click.group(cls=AlbaGroup, lazy=COMMANDS)
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
    default=FLEET_TIMEOUT,
    show_default=True,
    help="Seconds each remote of a fleet may take; a remote still running is stopped.",
)
def alba(fleet_remotes: tuple[str, ...], fleet_timeout: float) -> None:
    """Run albatross commands on a local or remote unikernel host.

    A command goes to the local daemon sockets (default, or --socket), to a
    remote TLS endpoint (--destination with --ca, --ca-key, --server-ca, or
    --remote NAME), or into a CSR (--csr) for signing later.  Installed as both
    ``alba`` and ``albatross-client``.

    Every command takes --help (--help=groff for its man page), --version,
    -v/-q/--verbosity and --color.  Shell completion: ``alba completion bash``
    (or zsh, fish) prints the script to source.  'alba --remote A --remote B CMD …'
    runs CMD on several remotes at once.
    """


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


@click.command("completion")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print the shell completion script for bash, zsh or fish.

    Load it with ``eval "$(alba completion bash)"`` (in ~/.bashrc), the same for
    zsh, or ``alba completion fish | source``.  It is click's script, for the
    name you ran (``alba`` or ``albatross-client``).
    """
    from click.shell_completion import get_completion_class

    root = ctx.find_root()
    prog = root.info_name or "alba"
    variable = "_{}_COMPLETE".format(prog.replace("-", "_").replace(".", "_").upper())
    shell_class = get_completion_class(shell)
    assert shell_class is not None  # click knows all three shells of the Choice
    click.echo(shell_class(root.command, {}, prog, variable).source())


def main() -> None:
    alba.main()
