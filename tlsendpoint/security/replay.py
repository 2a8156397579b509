# Replay protection (issue 6 point 6).
#
# albatross executes a command certificate every time it is presented within
# its validity (behaviour.md §9.7): whoever holds a 1-day "destroy" leaf can
# destroy the unikernel again and again.  We record each leaf that carried a
# state-changing command, keyed by (issuer DN, serial) - unique per X.509 - and
# refuse it again until its notAfter; then the record expires (the certificate
# would be refused as expired anyway).  Read-only commands are exempt.
# albatross-client mints a fresh leaf per command, so it is unaffected.
#
# A leaf is recorded *before* the command runs (check and record are one step
# under a lock), so two concurrent presentations cannot both pass; a command
# that then fails at the daemon has still used its leaf.
#
# Bounded: at most max_entries live records, and max_per_owner per top-level
# delegation, so one delegate minting long-lived leaves can exhaust only its
# own share (its further state-changing commands are refused until records
# expire).  When full we refuse (fail closed) rather than forget.
#
# Persistence: an append-only journal "key notAfter owner" per line, fsync'd
# per record; rewritten atomically when it holds more than twice the live
# records.  A torn last line (crash) is ignored on load (and ended before the
# next record is appended).
#
# Several processes (--workers, inetd mode) share the journal: check and record
# run under an exclusive flock of "<journal>.lock" (opened per check, so forked
# workers do not share the lock), after reading what the others appended since
# (or the whole file again, if another process compacted it).
from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import os
import tempfile
import threading
from collections import Counter
from pathlib import Path

from cryptography import x509

from tlsendpoint.chainrules import subject_text
from tlsendpoint.errors import UsageError
from tlsendpoint.security import SecurityRefusal
from tlsendpoint.wire import (
    BlockAdd,
    BlockAddOld,
    BlockRemove,
    BlockSet,
    BlockSetOld,
    Command,
    UnikernelCreate,
    UnikernelDestroy,
    UnikernelRestart,
)

__all__ = [
    "DEFAULT_MAX_ENTRIES",
    "DEFAULT_MAX_PER_OWNER",
    "STATE_CHANGING",
    "ReplayGuard",
    "ReplayRefusal",
    "is_state_changing",
    "replay_key",
]

DEFAULT_MAX_ENTRIES = 200_000
DEFAULT_MAX_PER_OWNER = 20_000
_MAX_LINE = 512

#: Commands that change the host; a leaf carrying one runs once.
STATE_CHANGING: frozenset[type[object]] = frozenset(
    {
        UnikernelCreate,
        UnikernelDestroy,
        UnikernelRestart,
        BlockAdd,
        BlockRemove,
        BlockSet,
        BlockAddOld,
        BlockSetOld,
    }
)


class ReplayRefusal(SecurityRefusal):
    """A leaf that already executed, or no room to remember one."""


def is_state_changing(command: Command) -> bool:
    return type(command) in STATE_CHANGING


def replay_key(leaf: x509.Certificate) -> str:
    """(issuer, serial) as text: SHA-256 of the issuer DN's DER (prefix), serial in hex."""
    issuer = hashlib.sha256(leaf.issuer.public_bytes()).hexdigest()[:32]
    return f"{issuer}:{leaf.serial_number:x}"


class ReplayGuard:
    """Remembers state-changing leaves until they expire, in the journal *path*."""

    def __init__(
        self,
        path: Path,
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_per_owner: int = DEFAULT_MAX_PER_OWNER,
        fsync: bool = True,
    ) -> None:
        self.path = path
        self.max_entries = max_entries
        self.max_per_owner = max_per_owner
        self._fsync = fsync
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[int, str]] = {}  # key -> (notAfter seconds, owner)
        self._owners: Counter[str] = Counter()
        self._lines = 0
        self._offset = 0  # journal bytes read (complete lines)
        self._torn = False  # the journal ends in a torn line
        self._lock_path = path.with_name(path.name + ".lock")
        self._fd = self._open()
        self._catch_up()

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as exc:
            raise UsageError(f"cannot open replay journal {self.path}: {exc.strerror}") from None

    def _catch_up(self) -> None:
        """Read what was appended since (by any process); start over after a compaction."""
        try:
            current = os.stat(self.path)
            if current.st_ino != os.fstat(self._fd).st_ino:  # another process compacted it
                os.close(self._fd)
                self._fd = self._open()
                self._seen.clear()
                self._owners.clear()
                self._lines = self._offset = 0
            size = os.fstat(self._fd).st_size
            data = (
                os.pread(self._fd, size - self._offset, self._offset)
                if size > self._offset
                else b""
            )
        except OSError as exc:
            raise UsageError(f"cannot read replay journal {self.path}: {exc.strerror}") from None
        end = data.rfind(b"\n") + 1
        self._torn = end < len(data)
        self._offset += end
        for raw in data[:end].splitlines():
            self._lines += 1
            parts = raw.decode("ascii", "replace").split()
            if len(parts) == 3 and parts[1].isdigit() and parts[0] not in self._seen:
                self._seen[parts[0]] = (int(parts[1]), parts[2])
                self._owners[parts[2]] += 1

    def _exclusive(self) -> int:
        """An exclusive lock shared with other processes; close the returned fd to release."""
        try:
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise UsageError(f"cannot open {self._lock_path}: {exc.strerror}") from None
        fcntl.flock(fd, fcntl.LOCK_EX)
        return fd

    def close(self) -> None:
        os.close(self._fd)

    def __len__(self) -> int:
        return len(self._seen)

    def check_and_record(
        self, leaf: x509.Certificate, command: Command, owner: str, now: dt.datetime
    ) -> None:
        """Refuse a leaf that already ran a state-changing command; otherwise remember it.

        *owner* is the top-level delegation the leaf is under (``""`` for the root):
        each owner may hold at most ``max_per_owner`` live records.
        """
        if not is_state_changing(command):
            return
        key = replay_key(leaf)
        expires = int(leaf.not_valid_after_utc.timestamp())
        owner = owner or "-"
        with self._lock:
            lock = self._exclusive()
            try:
                self._check_and_record(leaf, key, expires, owner, now)
            finally:
                os.close(lock)

    def _check_and_record(
        self, leaf: x509.Certificate, key: str, expires: int, owner: str, now: dt.datetime
    ) -> None:
        """The check and record, under the thread lock and the file lock."""
        self._catch_up()
        if key in self._seen:
            raise ReplayRefusal(
                f"leaf certificate {subject_text(leaf)} (serial {leaf.serial_number:x}) "
                "already executed a state-changing command; it is valid until "
                f"{leaf.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC but runs only once: "
                "sign a new leaf certificate for each command"
            )
        self._purge(int(now.timestamp()))
        if self._owners[owner] >= self.max_per_owner:
            raise ReplayRefusal(
                f"too many unexpired state-changing leaf certificates under {owner}: "
                f"at most {self.max_per_owner}; use shorter-lived leaves or wait until "
                "older ones expire"
            )
        if len(self._seen) >= self.max_entries:
            raise ReplayRefusal(
                f"the replay record is full ({self.max_entries} unexpired leaves); "
                "try again when some expired"
            )
        self._write(f"{key} {expires} {owner}\n".encode("ascii")[:_MAX_LINE])
        self._seen[key] = (expires, owner)
        self._owners[owner] += 1
        if self._lines > 2 * len(self._seen) + 1000:
            self._compact()

    def _purge(self, now: int) -> None:
        for key in [k for k, (expires, _) in self._seen.items() if expires <= now]:
            _, owner = self._seen.pop(key)
            self._owners[owner] -= 1

    def _write(self, line: bytes) -> None:
        if self._torn:  # end the torn line, or this record would be lost with it
            line = b"\n" + line
            self._torn = False
        os.write(self._fd, line)
        if self._fsync:
            os.fsync(self._fd)
        self._lines += 1
        self._offset = os.fstat(self._fd).st_size

    def _compact(self) -> None:
        body = "".join(f"{k} {e} {o}\n" for k, (e, o) in self._seen.items()).encode("ascii")
        fd, temporary = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(body)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
        except OSError:
            Path(temporary).unlink(missing_ok=True)
            raise
        os.close(self._fd)
        self._fd = self._open()
        self._lines = len(self._seen)
        self._offset = os.fstat(self._fd).st_size
        self._torn = False
