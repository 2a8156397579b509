"""What the running command was handed by its caller (the click context's ``obj``)."""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click

from core.clock import Clock, system_clock
from core.errors import AlbatrossError, exit_code

__all__ = ["command_clock", "now", "our_errors"]


def command_clock() -> Clock:
    """The clock of the running click command.

    A caller hands one in as the root context's ``obj`` (``alba.main(args,
    obj=fixed_clock(t))``, ``CliRunner().invoke(alba, args, obj=...)``); the
    console scripts hand in nothing and get :func:`system_clock`.
    """
    context = click.get_current_context(silent=True)
    handed = context.find_root().obj if context is not None else None
    return handed if callable(handed) else system_clock


def now() -> dt.datetime:
    """The time of the running command (:func:`command_clock`)."""
    return command_clock()()


@contextmanager
def our_errors() -> Iterator[None]:
    """Report our errors on stderr and exit (124: the toolkit's errors are the user's to fix)."""
    try:
        yield
    except AlbatrossError as exc:
        click.echo(f"error: {exc.message}", err=True)
        sys.exit(exit_code(exc))
