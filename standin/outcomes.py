"""What albatrossd does after looking at a request (the ``Loop``/``End``/``Create``/``Wait``
... results of vmm_vmmd.ml), as plain values.

:meth:`standin.vmmd.Vmmd.handle` returns one of these; the shell carries it out.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.wire import Failure, Name, Success, UnikernelConfig

__all__ = [
    "AddBlock",
    "Create",
    "DumpBlock",
    "Outcome",
    "Prepared",
    "ReadBlock",
    "RemoveBlock",
    "Reply",
    "SetBlock",
    "StatsChannel",
    "Wait",
    "WaitAndCreate",
    "WriteBlock",
]


@dataclass(frozen=True, slots=True)
class Reply:
    """Send *payload*; keep the connection open only for ``Loop`` replies (policy add)."""

    payload: Success | Failure
    keep_open: bool = False


@dataclass(frozen=True, slots=True)
class Create:
    name: Name
    config: UnikernelConfig


@dataclass(frozen=True, slots=True)
class Wait:
    """Wait for *name* to exit, then reply ``destroyed unikernel``."""

    name: Name


@dataclass(frozen=True, slots=True)
class WaitAndCreate:
    """The old instance was told to stop: wait for it, then create with *config*."""

    name: Name
    config: UnikernelConfig


@dataclass(frozen=True, slots=True)
class DumpBlock:
    name: Name
    level: int


@dataclass(frozen=True, slots=True)
class SetBlock:
    name: Name
    compressed: bool
    size_bytes: int


@dataclass(frozen=True, slots=True)
class AddBlock:
    """Checks passed: create the file of *size* MB (with *data*), then :meth:`Vmmd.commit_block`."""

    name: Name
    size: int
    data: bytes | None = None


@dataclass(frozen=True, slots=True)
class WriteBlock:
    """Legacy set: checks passed, replace the file's content by *data* (size *size* MB)."""

    name: Name
    size: int
    data: bytes


@dataclass(frozen=True, slots=True)
class ReadBlock:
    """Legacy dump: reply the whole file inline, compressed with *level* if not 0."""

    name: Name
    level: int


@dataclass(frozen=True, slots=True)
class RemoveBlock:
    """Checks passed: delete the file, then :meth:`Vmmd.forget_block`."""

    name: Name


@dataclass(frozen=True, slots=True)
class StatsChannel:
    """``stats initial``: reply empty and make this connection the stats channel."""


Outcome = (
    Reply
    | Create
    | Wait
    | WaitAndCreate
    | DumpBlock
    | SetBlock
    | AddBlock
    | RemoveBlock
    | WriteBlock
    | ReadBlock
    | StatsChannel
)


@dataclass(frozen=True, slots=True)
class Prepared:
    """What ``Vmm_unix.prepare`` found out: the raw image and its digest."""

    image: bytes
    digest: bytes
