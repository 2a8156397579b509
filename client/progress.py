"""Progress bars for long transfers, on a terminal only.

A create whose image travels in the certificate (the TLS handshake), a block
upload (set-block, create-block --data) and a block dump can take minutes.  On a
terminal, :class:`Meter` draws one bar on stderr with rich (transferred / total,
percentage, rate, time left); anywhere else (a pipe, a file, ``--json``) there
is no meter at all, so not one progress byte reaches a script.

The bar is finished, ending its line, before the reply is printed: the callers
(:mod:`client.run`, :mod:`client.session`) call :meth:`Meter.finish` before they
print, so the reply never runs into the bar.  Small transfers (under
:data:`SHOW_FROM` octets, when the total is known) draw nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

import trio

if TYPE_CHECKING:  # rich is imported only when a bar is drawn (start-up time)
    from rich.progress import Progress, ProgressColumn, TaskID

__all__ = ["SHOW_FROM", "CountingStream", "Meter", "make_meter"]

#: Transfers smaller than this (when their size is known) draw no bar.
SHOW_FROM = 1 << 20


class Meter:
    """One transfer at a time as a rich progress bar on *stream* (a terminal)."""

    def __init__(self, label: str, stream: TextIO) -> None:
        self.label = label
        self.stream = stream
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def begin(self, total: int | None, label: str | None = None) -> None:
        """Start a bar for *total* octets (None: unknown, e.g. a dump); ends any other."""
        self.finish()
        if total is not None and total < SHOW_FROM:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeRemainingColumn,
        )

        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            DownloadColumn(binary_units=True),
            _binary_speed_column(),
            TimeRemainingColumn(),
            console=Console(file=self.stream),
            transient=False,
        )
        self._task = progress.add_task(label or self.label, total=total)
        self._progress = progress
        progress.start()

    def __call__(self, done: int) -> None:
        """*done* octets of the transfer moved so far."""
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=done)

    def finish(self) -> None:
        """Draw the bar a last time and end its line (before anything else is printed)."""
        progress, self._progress = self._progress, None
        if progress is not None:
            progress.stop()


def _binary_speed_column() -> ProgressColumn:
    """The rate in MiB/s, as the total is shown (rich's own speed column is decimal MB/s)."""
    from rich.progress import ProgressColumn, Task
    from rich.text import Text

    class BinarySpeed(ProgressColumn):
        def render(self, task: Task) -> Text:
            speed = task.finished_speed or task.speed
            shown = "?" if speed is None else f"{speed / 1048576:.1f} MiB/s"
            return Text(shown, style="progress.data.speed")

    return BinarySpeed()


def make_meter(label: str, stream: TextIO | None = None) -> Meter | None:
    """A meter when *stream* (stderr) is a terminal, else None: no progress bytes at all."""
    stream = stream if stream is not None else sys.stderr
    return Meter(label, stream) if stream.isatty() else None


class CountingStream(trio.abc.Stream):
    """A stream that reports the octets sent through it (the handshake of a large chain)."""

    def __init__(self, inner: trio.abc.Stream, sent: Callable[[int], None]) -> None:
        self.inner = inner
        self.sent = sent
        self.total = 0

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)
        self.total += len(data)
        self.sent(self.total)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.inner.aclose()
