"""The clock every certificate judgement takes as a parameter."""

from __future__ import annotations

import datetime as dt

import click
import pytest
from click.testing import CliRunner

from ca.invocation import command_clock
from core.clock import fixed_clock, system_clock


def test_fixed_clock_reads_the_same_instant_in_utc() -> None:
    berlin = dt.timezone(dt.timedelta(hours=1))
    clock = fixed_clock(dt.datetime(2030, 1, 1, 13, 0, tzinfo=berlin))
    assert clock() == clock() == dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC)
    assert clock().tzinfo is dt.UTC


def test_fixed_clock_refuses_a_naive_time() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        fixed_clock(dt.datetime(2030, 1, 1))


def test_system_clock_is_aware_utc() -> None:
    assert system_clock().tzinfo is dt.UTC


@click.group()
def _root() -> None:
    pass


@_root.command("show")
def _show() -> None:
    click.echo(command_clock()().isoformat())


def test_a_command_runs_on_the_clock_handed_in() -> None:
    when = dt.datetime(2031, 5, 17, 12, 0, tzinfo=dt.UTC)
    result = CliRunner().invoke(_root, ["show"], obj=fixed_clock(when))
    assert result.output == "2031-05-17T12:00:00+00:00\n"


def test_a_command_without_a_clock_runs_on_the_systems() -> None:
    assert command_clock() is system_clock  # outside any command
    result = CliRunner().invoke(_root, ["show"])
    shown = dt.datetime.fromisoformat(result.output.strip())
    assert shown.tzinfo is not None  # the system clock's reading, not a pinned one
