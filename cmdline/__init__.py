"""What every console script shares on its command line: cmdliner's habits in click.

albatross's programs are built with cmdliner, which gives every command and
subcommand the same options: ``--version``, ``--help[=FMT]``, and (through
Logs_cli and Fmt_cli) ``-v``/``-q``/``--verbosity=LEVEL`` and ``--color=WHEN``.
Scripts written against albatross-client pass them anywhere, so ours accept them
everywhere too: :class:`Command` and :class:`Group` are the roots of each console
script, and :func:`adopt` gives every command below them the same options
(:mod:`cmdline.common`), the help formats (:mod:`cmdline.manpage`) and the lazy
loading of subcommands (:class:`LazyGroup`) that keeps ``--version``, ``--help``
and completion fast.

The lowest layer beside :mod:`core`: imports click and nothing of ours, so the
client, the endpoint and the stand-in can all build on it.
"""

from __future__ import annotations

from cmdline.common import (
    LEVELS,
    PROTOCOL_VERSION,
    VERSION,
    Command,
    Group,
    LazyGroup,
    adopt,
    log_level,
    option,
    version_text,
)

__all__ = [
    "LEVELS",
    "PROTOCOL_VERSION",
    "VERSION",
    "Command",
    "Group",
    "LazyGroup",
    "adopt",
    "log_level",
    "option",
    "version_text",
]
