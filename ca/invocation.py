"""What the running command was handed by its caller (the click context's ``obj``)."""

from __future__ import annotations

import click

from core.clock import Clock, system_clock

__all__ = ["command_clock"]


def command_clock() -> Clock:
    """The clock of the running click command.

    A caller hands one in as the root context's ``obj`` (``alba.main(args,
    obj=fixed_clock(t))``, ``CliRunner().invoke(alba, args, obj=...)``); the
    console scripts hand in nothing and get :func:`system_clock`.
    """
    context = click.get_current_context(silent=True)
    handed = context.find_root().obj if context is not None else None
    return handed if callable(handed) else system_clock
