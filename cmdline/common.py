"""cmdliner's common options on every click command, and the lazy group.

Every albatross program answers ``--version`` (``version v2.7.2 protocol version
5``), ``--help[=auto|pager|groff|plain]``, and the logging options of Logs_cli and
Fmt_cli: ``-v``/``--verbose`` (repeat), ``-q``/``--quiet``, ``--verbosity=LEVEL``
and ``--color=auto|always|never``, on the program and on each subcommand.
:func:`adopt` adds those five to a click command (once) and, for a group, to every
command below it; :class:`Command` and :class:`Group` adopt themselves and whatever
is added to them, so a console script's root is all it takes.

The logging options only record what was given, in ``ctx.meta`` (which every
context of one invocation shares, so ``alba -v info -v`` counts two); a command
asks :func:`log_level` for the level with its own default.

``--help=FMT`` needs its value glued to the option, as cmdliner requires: click's
optional-value options would take the next word (``alba --help info``) as the
value, so the root rewrites ``--help=FMT`` into ``--help`` plus a note in
``ctx.meta`` before click parses (:func:`_split_help_format`).

:class:`LazyGroup` imports a subcommand's module only when that command runs or
shows its own help: the group's help and shell completion list the commands from
a table of names and one-line helps (click's "lazy group" pattern, with the short
help added so that ``--help`` and TAB completion import nothing).
"""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import click
from click.shell_completion import CompletionItem

__all__ = [
    "HELP_FORMATS",
    "LEVELS",
    "PROTOCOL_VERSION",
    "VERSION",
    "AliasedOption",
    "Command",
    "Group",
    "LazyGroup",
    "adopt",
    "log_level",
    "option",
    "render_rst",
    "version_text",
]

#: Our version, as in pyproject.toml (a test keeps them equal: importlib.metadata alone
#: would cost ``--version`` 40 ms).
VERSION = "0.1.0"
#: The wire protocol version (``core.wire.messages.VERSION``; a test keeps them equal:
#: importing the codec here would cost ``--version`` its speed).
PROTOCOL_VERSION = 5
#: Logs_cli's levels, least to most verbose.
LEVELS = ("quiet", "error", "warning", "info", "debug")
#: cmdliner's help formats.
HELP_FORMATS = ("auto", "pager", "groff", "plain")
_COLORS = {"auto": None, "always": True, "never": False}
_ADOPTED = "_cmdline_adopted"
_F = TypeVar("_F", bound=Callable[..., Any])
_HELP_FORMAT = "cmdline.help_format"


def version_text() -> str:
    """``version <ours> protocol version 5``: albatross's form, with our package version."""
    return f"version {VERSION} protocol version {PROTOCOL_VERSION}"


def log_level(ctx: click.Context, default: str = "warning") -> str:
    """The level that ``-q``, ``--verbosity`` and ``-v`` chose (Logs_cli's order), one of LEVELS.

    Each ``-v`` is one step above *default*: albatross-client's default is warning,
    so ``-v`` is info and ``-vv`` debug, as with Logs_cli.
    """
    meta = ctx.meta
    if meta.get("cmdline.quiet"):
        return "quiet"
    chosen = meta.get("cmdline.verbosity")
    if isinstance(chosen, str):
        return chosen
    steps = int(meta.get("cmdline.verbose", 0))
    return LEVELS[min(LEVELS.index(default) + steps, len(LEVELS) - 1)]


def render_rst(text: str | None) -> str | None:
    """Docstrings use RST literals (````foo````); help shows them as ```foo```."""
    return None if text is None else re.sub(r"``(.+?)``", r"`\1`", text)


def _show_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(version_text())
        ctx.exit()


def _show_help(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    form = ctx.meta.get(_HELP_FORMAT, "auto")
    if form == "groff":
        from cmdline.manpage import man_page  # only when asked

        click.echo(man_page(ctx), nl=False)
    elif form == "pager" or (form == "auto" and sys.stdout.isatty()):
        click.echo_via_pager(ctx.get_help() + "\n", color=ctx.color)
    else:
        click.echo(ctx.get_help(), color=ctx.color)
    ctx.exit()


def _set_color(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.color = _COLORS[value]
        ctx.meta["cmdline.color"] = value


def _count_verbose(ctx: click.Context, _param: click.Parameter, value: int) -> None:
    if value:
        ctx.meta["cmdline.verbose"] = int(ctx.meta.get("cmdline.verbose", 0)) + value


def _set_quiet(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.meta["cmdline.quiet"] = True


def _set_verbosity(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.meta["cmdline.verbosity"] = value


def _common_params() -> list[click.Parameter]:
    """Fresh parameter objects (click keeps per-command state in them)."""
    return [
        click.Option(
            ["--color"],
            type=click.Choice(list(_COLORS)),
            expose_value=False,
            callback=_set_color,
            help="Colorize the output: auto (on a terminal), always or never.",
        ),
        click.Option(
            ["-q", "--quiet"],
            is_flag=True,
            expose_value=False,
            callback=_set_quiet,
            help="Be quiet (takes over -v and --verbosity).",
        ),
        click.Option(
            ["-v", "--verbose"],
            count=True,
            expose_value=False,
            callback=_count_verbose,
            help="Be more verbose (repeat for more).",
        ),
        click.Option(
            ["--verbosity"],
            type=click.Choice(list(LEVELS)),
            metavar="LEVEL",
            expose_value=False,
            callback=_set_verbosity,
            help="Log level: quiet, error, warning, info or debug (takes over -v).",
        ),
        click.Option(
            ["--version"],
            is_flag=True,
            is_eager=True,
            expose_value=False,
            callback=_show_version,
            help="Show the version and the wire protocol version, then exit.",
        ),
        click.Option(
            ["-h", "--help"],
            is_flag=True,
            is_eager=True,
            expose_value=False,
            callback=_show_help,
            help="Show this help and exit; --help=groff prints a man page, "
            "--help=pager|plain forces or avoids the pager.",
        ),
    ]


def adopt(command: click.Command) -> click.Command:
    """Give *command* (and, for a group, every command below it) the common options, once."""
    if getattr(command, _ADOPTED, False):
        return command
    setattr(command, _ADOPTED, True)
    command.add_help_option = False
    command.params.extend(_common_params())
    command.help = render_rst(command.help)
    command.short_help = render_rst(command.short_help)
    for param in command.params:
        if isinstance(param, click.Option):
            param.help = render_rst(param.help)
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            adopt(sub)
    return command


def _split_help_format(ctx: click.Context, args: list[str]) -> list[str]:
    """``--help=FMT`` -> ``--help``, FMT noted for :func:`_show_help` (see the module doc)."""
    out: list[str] = []
    for index, arg in enumerate(args):
        if arg == "--":
            return out + args[index:]
        if arg.startswith("--help="):
            form = arg.partition("=")[2]
            if form not in HELP_FORMATS:
                raise click.BadOptionUsage(
                    "--help",
                    f"option '--help': invalid value '{form}', expected one of "
                    "'auto', 'pager', 'groff' or 'plain'",
                    ctx,
                )
            ctx.meta[_HELP_FORMAT] = form
            arg = "--help"
        out.append(arg)
    return out


class Command(click.Command):
    """A console script's root command, with the common options."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        adopt(self)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, _split_help_format(ctx, args))


class Group(click.Group):
    """A console script's root group: it and every command added to it get the common options."""

    command_class = Command
    group_class = type

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        adopt(self)

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        super().add_command(adopt(cmd), name)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, _split_help_format(ctx, args))


class LazyGroup(Group):
    """A group whose subcommands are imported when used.

    *lazy* maps a command name to ``("module:attribute", short help)``; the short
    help is what the group's ``--help`` and completion show without importing
    (a test checks that it is the command's own).
    """

    def __init__(
        self, *args: Any, lazy: Mapping[str, tuple[str, str]] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.lazy: dict[str, tuple[str, str]] = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            module, _, attribute = self.lazy[cmd_name][0].partition(":")
            command = getattr(importlib.import_module(module), attribute)
            if not isinstance(command, click.Command):
                raise TypeError(f"{self.lazy[cmd_name][0]} is not a click command")
            self.add_command(command, cmd_name)
        return self.commands.get(cmd_name)

    def summary(self, name: str, limit: int) -> str:
        """A subcommand's one-line help, from the table while it is not imported."""
        if name in self.commands:
            return self.commands[name].get_short_help_str(limit)
        # click's own shortening, on a stand-in command that carries the table's text
        return click.Command(name, help=self.lazy[name][1]).get_short_help_str(limit)

    def _visible(self) -> Sequence[str]:
        return [
            n for n in sorted({*self.commands, *self.lazy})
            if n not in self.commands or not self.commands[n].hidden
        ]  # fmt: skip

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = self._visible()
        if not names:
            return
        limit = formatter.width - 6 - max(len(n) for n in names)
        with formatter.section("Commands"):
            formatter.write_dl([(n, self.summary(n, limit)) for n in names])

    def shell_complete(self, ctx: click.Context, incomplete: str) -> list[CompletionItem]:
        items = [
            CompletionItem(n, help=self.summary(n, 45))
            for n in self._visible()
            if n.startswith(incomplete)
        ]
        return items + click.Command.shell_complete(self, ctx, incomplete)


class AliasedOption(click.Option):
    """An option with old spellings that still work but do not show in help or man pages.

    ``@click.option("--ca-key", "--cakey", cls=AliasedOption, aliases=("--cakey",))``:
    one documented spelling each, the old one kept for scripts.
    """

    def __init__(self, *args: Any, aliases: Sequence[str] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.aliases = tuple(aliases)

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        shown, self.opts = self.opts, [o for o in self.opts if o not in self.aliases]
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts = shown


def option(*decls: str, aliases: Sequence[str] = (), **kwargs: Any) -> Callable[[_F], _F]:
    """``click.option`` whose *aliases* (old spellings) are accepted but not shown."""
    return click.option(*decls, *aliases, cls=AliasedOption, aliases=aliases, **kwargs)
