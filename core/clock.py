"""The time, as a parameter.

Everything that judges a certificate's validity (OpenSSL's chain verification,
the CA toolkit's lifetimes, the security rules' expiry bookkeeping) takes the
time from a :data:`Clock` handed to it, never from the machine directly: the
programs pass :func:`system_clock` (the command-line tools take it from the click
context: :func:`ca.invocation.command_clock`), tests that replay captured certificates
pass the capture's time (:func:`fixed_clock`), so a test does not depend on the
day it runs.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

__all__ = ["Clock", "fixed_clock", "system_clock"]

#: A source of the current time: a timezone-aware UTC datetime per call.
Clock = Callable[[], dt.datetime]


def system_clock() -> dt.datetime:
    """The machine's time, in UTC."""
    return dt.datetime.now(dt.UTC)


def fixed_clock(when: dt.datetime) -> Clock:
    """A clock that always reads *when* (which must carry a time zone)."""
    if when.tzinfo is None:
        raise ValueError("a fixed clock needs a timezone-aware datetime")
    instant = when.astimezone(dt.UTC)
    return lambda: instant
