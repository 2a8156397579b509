# Append-only, hash-chained audit log that fails closed (issue 6 point 8, issue 11 point 2).
#
# The record format and the reader are in rules/auditformat.py; this module touches
# the file.  The rules:
#
# * Record before you act.  The gate appends an allow decision - and with
#   --audit-fsync syncs it - before the command is forwarded; an append that
#   raises AuditError refuses the command (the client gets the reason), so no
#   command runs unrecorded.  Its outcome is appended when the connection ends.
# * A write is complete or undone.  os.write may write less than asked (a
#   nearly full disk): we loop until every byte is written; when a write or the
#   fsync fails, we truncate the file back to its size before the append (we
#   hold the lock, the bytes are ours), so a full disk leaves no partial line
#   and appends work again as soon as there is space.  If even the truncate
#   fails (an append-only file), the partial line stays; the next append
#   closes it with a recovery record.
# * A torn end is recovered, never skipped or rewritten.  Before each append
#   the end of the file is checked (the last two lines, when they chain).  What
#   a crash leaves - an incomplete last line, or up to two lines that are no
#   records - gets a newline if needed and a "torn" record that chains from the
#   last intact record and covers those bytes by length and hash; the bytes stay
#   in the file as evidence.  The endpoint does this at start (and logs it) and
#   whenever it finds such an end.  An end no crash leaves (a record that does
#   not chain, more lines that are no records) is damage: at start the endpoint
#   stops (exit 125); a running one refuses commands.
# * Bounded waits.  Several processes (inetd, --workers) append under flock()
#   on a descriptor of their own process (a worker forked after the log was
#   opened reopens it: a shared descriptor would share the lock); we poll for
#   the lock up to lock_timeout.  The endpoint appends from a worker thread
#   (append_async) under a deadline, so a slow or hung disk never blocks the
#   event loop; a write abandoned at its deadline may still land later, which
#   leaves an allow decision without outcome - verify lists those.
from __future__ import annotations

import datetime as dt
import errno
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import trio

from core.clock import Clock, system_clock
from durable import locks
from tlsendpoint.security.rules.auditformat import (
    GENESIS,
    MAX_LINE,
    MAX_TORN_LINES,
    VERSION,
    AuditError,
    AuditRecord,
    OutcomeRecord,
    Scanner,
    Verified,
    digest,
    encode,
    parse,
    torn_fields,
)

__all__ = [
    "AUDIT_TIMEOUT",
    "LOCK_TIMEOUT",
    "Appended",
    "AuditDamaged",
    "AuditLog",
    "FileOps",
    "Record",
    "append_async",
    "open_audit_log",
    "verify",
]

# Under the "albatross" logger the endpoint configures (stderr, syslog, journal or none).
log = logging.getLogger("albatross.security")

#: How long an append waits for another process's lock on the log (seconds).
LOCK_TIMEOUT = 5.0
#: The deadline of one append from the endpoint, lock wait included (seconds).
AUDIT_TIMEOUT = 10.0
#: The end of the file read to recover from a crash: the torn lines and records before.
_WINDOW = (MAX_TORN_LINES + 2) * (MAX_LINE + 1)

Record = AuditRecord | OutcomeRecord


class AuditDamaged(AuditError):
    """The log does not end with a record or a crash's incomplete line: not ours to continue."""


class FileOps:
    """The system calls an append makes; tests replace them to simulate a full or hung disk."""

    def write(self, fd: int, data: bytes) -> int:
        return os.write(fd, data)

    def fsync(self, fd: int) -> None:
        os.fsync(fd)

    def truncate(self, fd: int, size: int) -> None:
        os.ftruncate(fd, size)

    def try_lock(self, fd: int) -> bool:
        return locks.try_lock(fd)

    def unlock(self, fd: int) -> None:
        locks.unlock(fd)


@dataclass(frozen=True, slots=True)
class Appended:
    seq: int  # the record's sequence number (an outcome names its decision by it)
    head: str  # the hash of the record's line: the log's new head


class AuditLog:
    """Appends records to *path*; see the module comment for the rules."""

    def __init__(
        self,
        path: Path,
        *,
        fsync: bool = False,
        lock_timeout: float = LOCK_TIMEOUT,
        deadline: float = AUDIT_TIMEOUT,
        ops: FileOps | None = None,
    ) -> None:
        self.path = path
        self.lock_timeout = lock_timeout
        self.deadline = deadline  # of append_async: lock wait, write and fsync together
        self.ops = ops or FileOps()
        self.fsync = fsync
        self._lock = threading.Lock()
        self._fd = self._open()
        self._pid = os.getpid()
        # (size, next seq, head) after our own last write: the same size under the lock
        # means nobody appended since, so the end need not be read again
        self._known: tuple[int, int, str] | None = None

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        except OSError as exc:
            raise AuditError(f"cannot open audit log {self.path}: {exc.strerror}") from None

    @contextmanager
    def _locked(self) -> Iterator[None]:
        if not self._lock.acquire(timeout=self.lock_timeout):
            raise AuditError(
                f"the audit log {self.path} stayed busy in this process for {self.lock_timeout:g} s"
            )
        try:
            if os.getpid() != self._pid:  # forked: our own descriptor, so flock excludes
                os.close(self._fd)
                self._fd, self._pid = self._open(), os.getpid()
            if not locks.lock_within(self._fd, self.lock_timeout, attempt=self.ops.try_lock):
                raise AuditError(
                    f"the audit log {self.path} stayed locked by another process for "
                    f"{self.lock_timeout:g} s"
                )
            try:
                yield
            finally:
                self.ops.unlock(self._fd)
        finally:
            self._lock.release()

    # -- the end of the file -------------------------------------------------------

    def _last_record(self, size: int) -> tuple[int, str] | None:
        """(next seq, head) when the file ends with a record that chains to the line before
        it (the common case: two lines read); None sends the caller to the full check."""
        if size == 0:
            return 1, GENESIS
        start = max(0, size - 2 * (MAX_LINE + 1))
        tail = os.pread(self._fd, size - start, start)
        if not tail.endswith(b"\n"):
            return None
        body = tail[:-1]
        cut = body.rfind(b"\n")
        last, _ = parse(body[cut + 1 :])
        if last is None or (cut < 0 and start > 0):
            return None
        head = digest(body[cut + 1 :])
        if cut < 0:  # the only line
            return (2, head) if (last.seq, last.prev) == (1, GENESIS) else None
        earlier = body.rfind(b"\n", 0, cut)
        before, _ = parse(body[earlier + 1 : cut])
        if before is None or (earlier < 0 and start > 0):
            return None
        chained = last.seq == before.seq + 1 and last.prev == digest(body[earlier + 1 : cut])
        return (last.seq + 1, head) if chained else None

    def _damaged(self, detail: str) -> AuditDamaged:
        return AuditDamaged(
            f"the audit log {self.path} does not end with an audit record or a line torn by a "
            f"crash ({detail}): run `albatross-audit verify {self.path}`, keep the file as "
            "evidence and move it aside to start a new log"
        )

    def _position(self, now: dt.datetime) -> tuple[int, str, int]:
        """(next seq, head, file size) for the next append; recovers a torn end first."""
        size = os.fstat(self._fd).st_size
        if self._known is not None and self._known[0] == size:
            return self._known[1], self._known[2], size
        last = self._last_record(size)
        if last is not None:
            return *last, size
        start = max(0, size - _WINDOW)
        data = os.pread(self._fd, size - start, start)
        if start > 0:  # skip the partial line the window starts in
            data = data[data.find(b"\n") + 1 :] if b"\n" in data else b""
        pieces = data.splitlines(keepends=True)
        scanner = Scanner(outcomes=False) if start == 0 else None
        while scanner is None and pieces:  # start after the first intact record in the window
            piece = pieces.pop(0)
            parsed, _ = parse(piece.rstrip(b"\n"))
            if parsed is not None and piece.endswith(b"\n"):
                scanner = Scanner(seq=parsed.seq + 1, prev=digest(piece[:-1]), outcomes=False)
        if scanner is None:
            raise self._damaged(f"no intact record in its last {_WINDOW} bytes")
        try:
            for piece in pieces:
                scanner.feed(piece)
            torn = scanner.end()
        except AuditError as exc:
            raise self._damaged(exc.message.split(": ", 1)[-1]) from None
        if torn is None:  # intact, e.g. a recovery record after incomplete lines
            return scanner.seq, scanner.prev, size
        line = encode({**torn_fields(torn.region, now), "v": VERSION,
                       "seq": scanner.seq, "prev": scanner.prev})  # fmt: skip
        self._write((b"\n" if torn.newline else b"") + line + b"\n", size)
        log.error(
            "audit log %s: the endpoint stopped while writing its end (%d bytes of an incomplete "
            "line); recovery record %d written, chained from the last intact record",
            self.path,
            len(torn.region),
            scanner.seq,
        )
        return scanner.seq + 1, digest(line), os.fstat(self._fd).st_size

    # -- writing -------------------------------------------------------------------

    def _write(self, data: bytes, size: int) -> None:
        """Write all of *data* (and fsync); on failure undo to *size* and raise AuditError."""
        written = 0
        try:
            while written < len(data):
                count = self.ops.write(self._fd, data[written:])
                if count <= 0:
                    raise OSError(errno.EIO, "the write made no progress")
                written += count
            if self.fsync:
                self.ops.fsync(self._fd)
        except OSError as exc:
            undone = self._undo(size)
            raise AuditError(
                f"cannot write audit log {self.path}: {exc.strerror or exc}"
                + ("" if undone else "; the incomplete line is closed at the next write")
            ) from None

    def _undo(self, size: int) -> bool:
        try:
            if os.fstat(self._fd).st_size != size:
                self.ops.truncate(self._fd, size)
                if self.fsync:
                    self.ops.fsync(self._fd)
        except OSError as exc:
            log.error("audit log %s: cannot remove a failed write: %s", self.path, exc.strerror)
            return False
        return True

    def append(self, record: Record) -> Appended:
        """Write *record* completely (synced with fsync) or raise :class:`AuditError`."""
        with self._locked():
            self._known, (seq, prev, size) = None, self._position(record.time)
            line = encode({**record.fields(), "v": VERSION, "seq": seq, "prev": prev})
            self._write(line + b"\n", size)
            head = digest(line)
            self._known = (size + len(line) + 1, seq + 1, head)
            return Appended(seq, head)

    def check(self, now: dt.datetime) -> None:
        """At start: recover a torn end (logged); :class:`AuditDamaged` for a damaged one."""
        with self._locked():
            self._position(now)

    def close(self) -> None:
        os.close(self._fd)


def open_audit_log(path: Path, *, fsync: bool, clock: Clock = system_clock) -> AuditLog:
    """The endpoint's log, its end checked; :class:`AuditError` if it cannot be opened or is
    damaged.  An end that cannot be recovered *now* (a full disk) is only logged: every
    append tries again and the commands are refused until one succeeds."""
    audit_log = AuditLog(path, fsync=fsync)
    try:
        audit_log.check(clock())
    except AuditDamaged:
        audit_log.close()
        raise
    except AuditError as exc:
        log.error("%s; commands are refused until the audit log can be written", exc.message)
    return audit_log


async def append_async(audit_log: AuditLog, record: Record) -> Appended:
    """:meth:`AuditLog.append` in a worker thread under the log's deadline; the event loop
    runs on meanwhile."""
    with trio.move_on_after(audit_log.deadline):
        return await trio.to_thread.run_sync(audit_log.append, record, abandon_on_cancel=True)
    raise AuditError(
        f"writing the audit log {audit_log.path} took more than {audit_log.deadline:g} s "
        "(a slow or hung disk)"
    )


def verify(path: Path, head: str | None = None) -> Verified:
    """Check the whole chain; raise :class:`AuditError` naming the first bad line.

    *head*: a head hash recorded earlier; it must be the hash of a record in the log
    (lines cut from the end, or the recorded record edited, are found this way).
    """
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise AuditError(f"cannot read audit log {path}: {exc.strerror}") from None
    scanner = Scanner(head=head)
    with handle:
        while raw := handle.readline(MAX_LINE + 2):
            scanner.feed(raw)
    return scanner.finish()
