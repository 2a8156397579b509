# Policy anti-rollback (issue 6 point 4).
#
# albatross re-inserts the policies a chain carries on every connection, last
# writer wins (behaviour.md §9.1): after the operator re-issues alice's
# intermediate with a smaller policy, alice's still-valid old certificate
# restores the larger one.  We remember, per delegation path, the newest
# intermediate seen - ordered by (notBefore, serial) - and refuse any older
# one for that path.  Equal is the same certificate: accepted.
#
# The record for a path is kept at least until every certificate we saw for it
# has expired (hold_until = the latest notAfter seen), then may be purged when
# the table is full.  A full table of live records does not evict anyone: the
# new path is simply not recorded (record() returns False; log it).
#
# Persistence: one small JSON file, rewritten atomically (temp file, fsync,
# rename, fsync of the directory) only when a newer delegation appears - rare.
# A damaged file stops the endpoint (fail closed) with a message saying how to
# reset it.  Several processes (--workers, inetd mode) share the file: each
# re-reads it when it changed (one stat per check), and every update happens
# under an exclusive flock of "<file>.lock" after re-reading it.
from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from tlsendpoint.authorize import common_name
from tlsendpoint.chainrules import subject_text
from tlsendpoint.errors import UsageError
from tlsendpoint.security import SecurityRefusal
from tlsendpoint.wire import EXTENSION_OID, Name

__all__ = ["DEFAULT_MAX_ENTRIES", "Delegation", "RollbackGuard", "RollbackRefusal", "delegations"]

DEFAULT_MAX_ENTRIES = 100_000
_OID = x509.ObjectIdentifier(EXTENSION_OID)
_VERSION = 1


class RollbackRefusal(SecurityRefusal):
    """An intermediate older than the newest one seen for its path."""


@dataclass(frozen=True, slots=True)
class Delegation:
    """An intermediate that carries a policy, and the path it delegates."""

    path: Name
    not_before: int  # POSIX seconds
    not_after: int
    serial: int
    subject: str

    @property
    def order(self) -> tuple[int, int]:
        return (self.not_before, self.serial)


def _seconds(when: dt.datetime) -> int:
    return int(when.timestamp())


def delegations(chain: Sequence[x509.Certificate]) -> list[Delegation]:
    """The policy-carrying intermediates of a verified chain (leaf first), top-down.

    Paths are derived as :func:`tlsendpoint.authorize.authorize` does; call this
    after authorize accepted the chain.
    """
    found: list[Delegation] = []
    path: tuple[str, ...] = ()
    for cert in reversed(chain[1:]):
        try:
            cert.extensions.get_extension_for_oid(_OID)
        except x509.ExtensionNotFound:
            continue
        path = (*path, (common_name(cert) or "").lower())
        found.append(
            Delegation(
                Name(path, None),
                _seconds(cert.not_valid_before_utc),
                _seconds(cert.not_valid_after_utc),
                cert.serial_number,
                subject_text(cert),
            )
        )
    return found


def _when(seconds: int) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class RollbackGuard:
    """Newest delegation per path, persisted in *state_file*."""

    def __init__(self, state_file: Path, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        self.state_file = state_file
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._lock_path = state_file.with_name(state_file.name + ".lock")
        self._signature: tuple[int, int, int] | None = None  # the file as last read or written
        self._seen: dict[str, tuple[int, int, int]] = self._load()  # path -> (nb, serial, hold)

    def _current(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.state_file)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise UsageError(f"cannot read {self.state_file}: {exc.strerror}") from None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _refresh(self) -> None:
        """Read the file again if another process changed it."""
        if self._current() != self._signature:
            self._seen = self._load()

    def _exclusive(self) -> int:
        try:
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise UsageError(f"cannot open {self._lock_path}: {exc.strerror}") from None
        fcntl.flock(fd, fcntl.LOCK_EX)
        return fd

    # -- persistence -----------------------------------------------------------

    def _load(self) -> dict[str, tuple[int, int, int]]:
        self._signature = self._current()
        try:
            raw = self.state_file.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise UsageError(f"cannot read {self.state_file}: {exc.strerror}") from None
        try:
            data = json.loads(raw)
            if data["version"] != _VERSION:
                raise ValueError("version")
            return {
                str(path): (int(nb), int(serial, 16), int(hold))
                for path, (nb, serial, hold) in data["paths"].items()
            }
        except (ValueError, KeyError, TypeError, AttributeError):
            raise UsageError(
                f"{self.state_file} is damaged: restore it from a backup, or delete it to "
                "forget every delegation seen (older certificates would be accepted again once)"
            ) from None

    def _save(self) -> None:
        data = {
            "version": _VERSION,
            "paths": {p: [nb, f"{s:x}", hold] for p, (nb, s, hold) in sorted(self._seen.items())},
        }
        directory = self.state_file.parent
        fd, temporary = tempfile.mkstemp(prefix=f".{self.state_file.name}.", dir=directory)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(json.dumps(data, separators=(",", ":")).encode())
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.state_file)
        except OSError:
            Path(temporary).unlink(missing_ok=True)
            raise
        self._signature = self._current()
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    # -- the check ----------------------------------------------------------------

    def _refusal(self, delegation: Delegation) -> RollbackRefusal | None:
        seen = self._seen.get(str(delegation.path))
        if seen is None or delegation.order >= seen[:2]:
            return None
        cn = delegation.path.path[-1]
        return RollbackRefusal(
            f"delegation {delegation.path} (certificate CN {cn}, serial {delegation.serial:x}, "
            f"valid from {_when(delegation.not_before)}) is older than the newest one seen for "
            f"that path (serial {seen[1]:x}, valid from {_when(seen[0])}): its policy may have "
            "been reduced since; use the newest certificate for this delegation"
        )

    def check(self, chain: Sequence[x509.Certificate]) -> None:
        """Raise :class:`RollbackRefusal` if any delegation is older than one seen; no update."""
        with self._lock:
            self._refresh()
            for delegation in delegations(chain):
                refusal = self._refusal(delegation)
                if refusal is not None:
                    raise refusal

    def check_and_record(self, chain: Sequence[x509.Certificate], now: dt.datetime) -> bool:
        """Check, then remember newer delegations; False if the table had no room for one."""
        found = delegations(chain)
        with self._lock:
            self._refresh()
            if all(self._known(d) for d in found):  # the usual case: nothing to write
                return True
            lock = self._exclusive()
            try:
                self._refresh()
                return self._check_and_record(found, now)
            finally:
                os.close(lock)

    def _known(self, delegation: Delegation) -> bool:
        seen = self._seen.get(str(delegation.path))
        return seen is not None and seen[:2] == delegation.order and seen[2] >= delegation.not_after

    def _check_and_record(self, found: list[Delegation], now: dt.datetime) -> bool:
        """The check and record, under the thread lock and the file lock."""
        changed, complete = False, True
        for delegation in found:
            key = str(delegation.path)
            refusal = self._refusal(delegation)
            seen = self._seen.get(key)
            if refusal is not None:
                assert seen is not None
                if delegation.not_after > seen[2]:  # keep the record while the old one lives
                    self._seen[key] = (seen[0], seen[1], delegation.not_after)
                    changed = True
                if changed:
                    self._save()
                raise refusal
            hold = max(delegation.not_after, seen[2] if seen else 0)
            new = (delegation.not_before, delegation.serial, hold)
            if seen == new:
                continue
            if seen is None and not self._make_room(_seconds(now)):
                complete = False
                continue
            self._seen[key] = new
            changed = True
        if changed:
            self._save()
        return complete

    def _make_room(self, now: int) -> bool:
        if len(self._seen) < self.max_entries:
            return True
        for key in [k for k, (_, _, hold) in self._seen.items() if hold < now]:
            del self._seen[key]
        return len(self._seen) < self.max_entries

    def __len__(self) -> int:
        return len(self._seen)
