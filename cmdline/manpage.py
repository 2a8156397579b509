"""Man pages (groff ``man`` macros) from click commands: ``--help=groff`` and ``scripts/manpages``.

Written by hand, about fifty lines: click-man (the usual library) writes files
from an installed distribution's entry points, but ``--help=groff`` must print the
page of the one command being run, from its live click context, and the project
should not carry a runtime dependency for that.  The page holds what ``--help``
shows: NAME, SYNOPSIS, DESCRIPTION, OPTIONS (and COMMANDS for a group).  No date
in ``.TH``, so that the pages are reproducible.

:data:`CONSOLE_SCRIPTS` names the click command behind each console script (the
entry points are functions that call them); :func:`main` writes one page per
command of every script into a directory, without network or installation.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path

import click

__all__ = ["CONSOLE_SCRIPTS", "load_script", "main", "man_page", "walk"]

#: Console script -> its click command (``[project.scripts]``; a test keeps them in step).
CONSOLE_SCRIPTS = {
    "alba": "client.cli:alba",
    "albatross-client": "client.cli:alba",
    "albatross-tls-endpoint": "tlsendpoint.cli:cli",
    "albatross-audit": "client.audit_cli:main",
    "albatross-explain": "client.audit_cli:explain_command",
    "albatross-inspect": "client.inspect_cli:main",
    "albatross-standin": "standin.cli:main",
}


def load_script(name: str) -> click.Command:
    module, _, attribute = CONSOLE_SCRIPTS[name].partition(":")
    command = getattr(importlib.import_module(module), attribute)
    if not isinstance(command, click.Command):
        raise TypeError(f"{CONSOLE_SCRIPTS[name]} is not a click command")
    return command


def walk(ctx: click.Context) -> Iterator[click.Context]:
    """*ctx* and a context for every command below it (hidden ones too)."""
    yield ctx
    command = ctx.command
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None:
                yield from walk(click.Context(sub, info_name=name, parent=ctx))


def _escape(text: str) -> str:
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join("\\&" + line if line[:1] in (".", "'") else line for line in text.split("\n"))


def _paragraphs(text: str) -> str:
    blocks = [" ".join(b.split()) for b in text.replace("\b\n", "").split("\n\n")]
    return "\n.PP\n".join(_escape(b) for b in blocks if b)


def _summaries(ctx: click.Context, group: click.Group) -> Iterator[tuple[str, str]]:
    """Each visible subcommand's one-line help (a lazy group's without importing them)."""
    # A cmdline.LazyGroup (duck-typed: common.py imports this module) knows its summaries.
    summary = getattr(group, "summary", None)
    if callable(summary):
        for name in group.list_commands(ctx):
            if name not in group.commands or not group.commands[name].hidden:
                yield name, str(summary(name, 200))
        return
    for name in group.list_commands(ctx):
        sub = group.get_command(ctx, name)
        if sub is not None and not sub.hidden:
            yield name, sub.get_short_help_str(200)


def man_page(ctx: click.Context) -> str:
    """The man page of *ctx*'s command, as groff text."""
    command = ctx.command
    path = ctx.command_path
    title = path.replace(" ", "-")
    lines = [f'.TH "{title.upper()}" "1" "" "albatross-gateway" "{_escape(path)}"', ".SH NAME"]
    summary = command.get_short_help_str(limit=200)
    lines.append(f"{_escape(title)} \\- {_escape(summary)}" if summary else _escape(title))
    lines += [".SH SYNOPSIS", f".B {_escape(path)}"]
    lines.append(_escape(" ".join(command.collect_usage_pieces(ctx))))
    help_text = (command.help or "").split("\f", 1)[0]
    if help_text.strip():
        lines += [".SH DESCRIPTION", _paragraphs(help_text)]
    records = [r for p in command.get_params(ctx) if (r := p.get_help_record(ctx))]
    if records:
        lines.append(".SH OPTIONS")
        for names, text in records:
            lines += [".TP", f"\\fB{_escape(names)}\\fR", _paragraphs(text)]
    if isinstance(command, click.Group):
        lines.append(".SH COMMANDS")
        for name, summary in _summaries(ctx, command):
            lines += [".TP", f"\\fB{_escape(name)}\\fR", _escape(summary)]
            lines.append(f"See \\fB{_escape(title)}\\-{_escape(name)}\\fR(1).")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """``python -m cmdline.manpage DIR``: write DIR/<command-path>.1 for every command."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m cmdline.manpage DIR", file=sys.stderr)
        return 2
    out = Path(args[0])
    out.mkdir(parents=True, exist_ok=True)
    for script in CONSOLE_SCRIPTS:
        root = click.Context(load_script(script), info_name=script)
        for ctx in walk(root):
            page = out / (ctx.command_path.replace(" ", "-") + ".1")
            page.write_text(man_page(ctx), encoding="utf-8")
            print(page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
