"""One log line per connection: who (peer, chain), what (name, command), how it ended.

The record is filled in as the connection progresses and formatted once at
the end, so every connection - refused, failed, crashed or successful - leaves
exactly one line that answers "who did what".  Certificates are named by
subject and SHA-256 fingerprint (enough to find them in a CA database);
values are quoted so a CN cannot forge extra fields or lines.

:func:`configure_logging` sends the lines to stderr, syslog or the journal -
from a thread of their own (:class:`BackgroundHandler`): writing to a pipe
whose reader stalls, or to a syslog socket whose daemon is busy, blocks, and
the event loop must never wait for that.  At most :data:`LOG_BACKLOG` records
wait; beyond, records are dropped, and a line written before the next record
that got through says how many.

In the journal a connection's entry carries its parts as fields of their own
(``PEER=``, ``CHAIN=``, ``NAME=``, ``COMMAND=``, ``OUTCOME=``, ``DURATION=``,
``UPLOADED=``...: :meth:`ConnectionRecord.fields`), so ``journalctl
OUTCOME=...`` or ``-o json`` need no parsing of MESSAGE.  The journal's native
protocol is written by hand (:class:`JournalHandler`, one datagram per entry)
because python-systemd, which has it, needs libsystemd's headers and a C
compiler to install.  On standard error under systemd (``$JOURNAL_STREAM``
names our stderr) lines carry a ``<N>`` priority prefix instead of our own
timestamp: the journal stamps them itself.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import logging.handlers
import os
import queue
import re
import socket
import struct
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from core.chainrules import subject_text

__all__ = [
    "JOURNAL_FIELDS",
    "LOGGER",
    "LOG_BACKLOG",
    "BackgroundHandler",
    "ConnectionRecord",
    "JournalHandler",
    "configure_logging",
    "describe_chain",
    "stderr_is_journal",
]

LOGGER = logging.getLogger("albatross.endpoint")

JOURNAL_SOCKET = Path("/run/systemd/journal/socket")
#: The attribute of a log record (``extra=``) whose dict becomes journal fields.
JOURNAL_FIELDS = "journal_fields"
# journald's rule for field names: A-Z, 0-9 and _, not starting with _ (trusted fields)
_FIELD_NAME = re.compile(r"[A-Z0-9][A-Z0-9_]{0,63}")
# syslog priorities (sd-daemon.h): the journal's PRIORITY= and the <N> prefix on stderr
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4}


def _quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    if escaped.isprintable():  # the usual case: no per-character pass
        return '"' + escaped + '"'
    return '"' + "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in escaped) + '"'


def describe_chain(chain: Sequence[x509.Certificate]) -> str:
    """``CN=a1 sha256:ab12… <- CN=alice sha256:…``, leaf first."""
    return " <- ".join(
        f"{subject_text(cert)} sha256:{cert.fingerprint(hashes.SHA256()).hex()}" for cert in chain
    )


@dataclass
class ConnectionRecord:
    peer: str
    chain: str = ""
    name: str = ""
    command: str = ""
    outcome: str = "closed before the handshake completed"
    ok: bool = False
    details: list[str] = field(default_factory=list)

    def line(self, duration: float) -> str:
        parts = [f"peer={self.peer}"]
        if self.chain:
            parts.append(f"chain={_quote(self.chain)}")
        if self.name:
            parts.append(f"name={_quote(self.name)}")
        if self.command:
            parts.append(f"command={_quote(self.command)}")
        parts.append(f"outcome={_quote(self.outcome)}")
        parts.extend(self.details)
        parts.append(f"duration={duration:.3f}s")
        return " ".join(parts)

    def fields(self, duration: float) -> dict[str, str]:
        """The parts of :meth:`line` as journal fields: ``{"PEER": ..., "OUTCOME": ...}``."""
        found = {"PEER": self.peer}
        for key, value in (("CHAIN", self.chain), ("NAME", self.name), ("COMMAND", self.command)):
            if value:
                found[key] = value
        found["OUTCOME"] = self.outcome
        for detail in self.details:  # "uploaded=123", "audit=..."
            key, _, value = detail.partition("=")
            if _FIELD_NAME.fullmatch(key.upper()):
                found[key.upper()] = value
        found["DURATION"] = f"{duration:.3f}"
        return found


def _journal_field(key: str, value: str) -> bytes:
    """One field in the native protocol: ``KEY=value\\n``, or, if the value holds a
    newline, ``KEY\\n`` + its length (64-bit little endian) + the value + ``\\n``."""
    raw = value.encode("utf-8", "replace")
    if b"\n" not in raw:
        return key.encode() + b"=" + raw + b"\n"
    return key.encode() + b"\n" + struct.pack("<Q", len(raw)) + raw + b"\n"


class JournalHandler(logging.Handler):
    """systemd-journald's native protocol: one datagram per record, with its fields.

    MESSAGE, PRIORITY and SYSLOG_IDENTIFIER, then the record's :data:`JOURNAL_FIELDS`
    (names journald would refuse are left out; the values stay in MESSAGE anyway).
    """

    def __init__(self, identifier: str, path: Path = JOURNAL_SOCKET) -> None:
        super().__init__()
        self.identifier = identifier
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record).replace("\n", " ")
            priority = _PRIORITY.get(record.levelno, 3)
            payload = [
                _journal_field("MESSAGE", message),
                _journal_field("PRIORITY", str(priority)),
                _journal_field("SYSLOG_IDENTIFIER", self.identifier),
            ]
            extra: Mapping[str, str] = getattr(record, JOURNAL_FIELDS, {})
            payload += [
                _journal_field(key, value)
                for key, value in extra.items()
                if _FIELD_NAME.fullmatch(key)
                and key not in ("MESSAGE", "PRIORITY", "SYSLOG_IDENTIFIER")
            ]
            self.sock.sendto(b"".join(payload), str(self.path))
        except OSError:
            self.handleError(record)

    def close(self) -> None:
        self.sock.close()
        super().close()


class _JournalStreamFormatter(logging.Formatter):
    """``<4>message``: the journal reads the priority and stamps the time itself."""

    def format(self, record: logging.LogRecord) -> str:
        return f"<{_PRIORITY.get(record.levelno, 3)}>{super().format(record)}"


def stderr_is_journal(environ: Mapping[str, str], fd: int) -> bool:
    """Whether *fd* is the stream systemd connected to the journal (``$JOURNAL_STREAM``,
    ``device:inode``; an inherited variable naming another file does not count)."""
    device, _, inode = environ.get("JOURNAL_STREAM", "").partition(":")
    try:
        status = os.fstat(fd)
        return (status.st_dev, status.st_ino) == (int(device), int(inode))
    except (OSError, ValueError):
        return False


#: Records waiting for the log's sink at most; beyond, they are dropped and counted.
LOG_BACKLOG = 10_000
#: How long closing the handler (at exit) waits for the waiting records to be written.
LOG_DRAIN_TIMEOUT = 2.0


class BackgroundHandler(logging.Handler):
    """Formats a record in the caller's thread and has *sink* write it from a thread.

    The thread is started in the process that first logs, so a worker forked
    after :func:`configure_logging` gets its own (threads do not survive
    ``fork``).  :meth:`close` - ``logging.shutdown`` at exit - writes what waits,
    for at most :data:`LOG_DRAIN_TIMEOUT` seconds.
    """

    def __init__(self, sink: logging.Handler, backlog: int = LOG_BACKLOG) -> None:
        super().__init__()
        self.sink = sink
        self.backlog = backlog
        self.dropped = 0
        self._count_lock = threading.Lock()
        self._pid = -1
        self._queue: queue.Queue[logging.LogRecord | None] = queue.Queue(backlog)
        self._thread: threading.Thread | None = None

    def _start(self) -> None:
        # a new queue in a forked child: the parent's may hold a lock its writer had
        self._queue = queue.Queue(self.backlog)
        self._count_lock = threading.Lock()
        self.dropped = 0
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._write, name="albatross-log", daemon=True)
        self._thread.start()

    def emit(self, record: logging.LogRecord) -> None:
        if self._pid != os.getpid():
            self._start()
        try:
            message = self.format(record)  # now: arguments may change after the call
        except Exception:  # as logging.Handler does
            self.handleError(record)
            return
        record = copy.copy(record)  # other handlers still see the original
        record.msg, record.args, record.exc_info, record.exc_text = message, None, None, None
        record.message = message
        with self._count_lock:  # the writer reads the count on the record: no race with it
            try:
                self._queue.put_nowait(record)
            except queue.Full:
                self.dropped += 1
                return
            record.dropped_before, self.dropped = self.dropped, 0

    def _write(self) -> None:
        while True:
            record = self._queue.get()
            try:
                if record is None:
                    return
                with self._count_lock:  # set by emit just after the record was queued
                    dropped = getattr(record, "dropped_before", 0)
                if dropped:
                    note = logging.LogRecord(
                        record.name, logging.WARNING, __file__, 0,
                        f"{dropped} log records dropped: the log could not keep up", None, None,
                    )  # fmt: skip
                    self.sink.handle(note)
                self.sink.handle(record)
            finally:
                self._queue.task_done()

    def flush(self, timeout: float = LOG_DRAIN_TIMEOUT) -> None:
        """Wait (at most *timeout* seconds) until the waiting records are written."""
        if self._pid != os.getpid():
            return
        waiting = self._queue
        with waiting.all_tasks_done:
            waiting.all_tasks_done.wait_for(lambda: not waiting.unfinished_tasks, timeout)

    def close(self) -> None:
        if self._pid == os.getpid() and self._thread is not None:
            with contextlib.suppress(queue.Full):
                self._queue.put(None, timeout=LOG_DRAIN_TIMEOUT)
            self._thread.join(LOG_DRAIN_TIMEOUT)
            self._thread = None
        self.sink.close()
        super().close()


def configure_logging(
    target: str,
    level: int,
    identifier: str = "albatross-tls-endpoint",
    environ: Mapping[str, str] = os.environ,
) -> None:
    """Route the endpoint's log to ``stderr``, ``syslog``, ``journal`` or ``none``."""
    root = logging.getLogger("albatross")
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.setLevel(level)
    root.propagate = False
    handler: logging.Handler
    if target == "stderr":
        handler = logging.StreamHandler(sys.stderr)
        try:
            under_journal = stderr_is_journal(environ, sys.stderr.fileno())
        except (AttributeError, OSError, ValueError):  # a stderr without a file descriptor
            under_journal = False
        if under_journal:
            handler.setFormatter(_JournalStreamFormatter("%(message)s"))
        else:
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    elif target == "syslog":
        address = "/dev/log" if Path("/dev/log").exists() else "/var/run/log"
        handler = logging.handlers.SysLogHandler(
            address=address, facility=logging.handlers.SysLogHandler.LOG_DAEMON
        )
        handler.setFormatter(logging.Formatter(f"{identifier}[%(process)d]: %(message)s"))
    elif target == "journal":
        if not JOURNAL_SOCKET.exists():
            raise FileNotFoundError(2, "no systemd journal socket", str(JOURNAL_SOCKET))
        handler = JournalHandler(identifier)
    else:
        root.addHandler(logging.NullHandler())
        return
    root.addHandler(BackgroundHandler(handler))
