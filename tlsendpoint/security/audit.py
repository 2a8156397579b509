# Append-only, hash-chained audit log (issue 6 point 8).
#
# One JSON object per line (keys sorted, no spaces): seq, time, peer, chain
# (each certificate's subject and SHA-256 fingerprint, leaf first), name,
# command, decision, reason, duration_ms and prev = the SHA-256 of the previous
# line's bytes (64 zeros for the first line).  seq counts from 1.
#
# What this detects (verify): an edited line (the next line's prev no longer
# matches), a removed or reordered line (seq jumps, prev mismatches), a torn or
# garbage line.  What it cannot detect alone: someone who rewrites the whole
# tail consistently, or truncation of the last lines; for that keep the head
# hash elsewhere (verify --head, or the endpoint logging the head it returns).
#
# Bounded cost: every field is truncated, so a line is at most MAX_LINE bytes,
# and an append reads only the last MAX_LINE bytes to find the previous line.
# Several processes (inetd mode, --workers) may append: each append holds
# flock() on a descriptor of its own process (a worker forked after the log
# was opened reopens it first: a shared descriptor would share the lock).
from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from tlsendpoint.chainrules import subject_text
from tlsendpoint.errors import AlbatrossError
from tlsendpoint.routing import command_name
from tlsendpoint.wire import (
    BlockAdd,
    BlockAddOld,
    BlockDump,
    Command,
    ConsoleSubscribe,
    UnikernelCreate,
    UnikernelGet,
    UnikernelRestart,
)

__all__ = [
    "GENESIS",
    "MAX_LINE",
    "AuditError",
    "AuditLog",
    "AuditRecord",
    "Verified",
    "chain_summary",
    "command_summary",
    "verify",
]

GENESIS = "0" * 64
#: No line is longer (fields are truncated to fit); also the tail an append reads.
MAX_LINE = 16 * 1024
_FIELD = 512
_REASON = 2048
_MAX_CHAIN = 10
_KEYS = frozenset(
    {"seq", "time", "peer", "chain", "name", "command", "decision", "reason", "duration_ms", "prev"}
)


class AuditError(AlbatrossError):
    """The audit log cannot be written, or does not verify; ``line`` is 1-based (0: whole file)."""

    exit_code = 1

    def __init__(self, message: str, line: int = 0) -> None:
        super().__init__(message)
        self.line = line


def _cut(text: str, limit: int = _FIELD) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def chain_summary(chain: Sequence[x509.Certificate]) -> list[dict[str, str]]:
    """Subject and SHA-256 fingerprint of each certificate, leaf first (at most 10)."""
    return [
        {"subject": _cut(subject_text(c)), "sha256": c.fingerprint(hashes.SHA256()).hex()}
        for c in chain[:_MAX_CHAIN]
    ]


def command_summary(command: Command) -> str:
    """The command's name and its resource-relevant arguments (never argv or image bytes)."""
    text = command_name(command)
    if isinstance(command, UnikernelCreate):
        c = command.config
        cpus = ",".join(str(i) for i in sorted(c.cpuids))
        text += f" memory={c.memory}MB cpuids={cpus} image={len(c.image)}B"
        if c.bridges:
            text += " bridges=" + ",".join(sorted(n.bridge or n.name for n in c.bridges))
        if c.blocks:
            text += " blocks=" + ",".join(sorted(b.device or b.name for b in c.blocks))
    elif isinstance(command, UnikernelRestart) and command.arguments is not None:
        text += f" memory={command.arguments.memory}MB"
    elif isinstance(command, BlockAdd | BlockAddOld):
        text += f" size={command.size}MB"
    elif isinstance(command, ConsoleSubscribe):
        text += f" count={command.count}" if command.since is None else f" since={command.since}"
    elif isinstance(command, UnikernelGet | BlockDump):
        text += f" level={command.level}"
    return _cut(text)


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One decision of the endpoint."""

    time: dt.datetime
    peer: str
    chain: Sequence[x509.Certificate] | Sequence[dict[str, str]]  # certificates or chain_summary
    name: str | None  # the derived name, None when authorisation failed before it
    command: str | None  # command_summary(...), None when unknown
    decision: str  # "allow", "deny" or "error"
    reason: str
    duration: float  # seconds

    def fields(self) -> dict[str, object]:
        return {
            "time": self.time.astimezone(dt.UTC).isoformat(timespec="milliseconds"),
            "peer": _cut(self.peer, 128),
            "chain": [
                c if isinstance(c, dict) else chain_summary([c])[0] for c in self.chain[:_MAX_CHAIN]
            ],
            "name": None if self.name is None else _cut(self.name),
            "command": None if self.command is None else _cut(self.command),
            "decision": _cut(self.decision, 16),
            "reason": _cut(self.reason, _REASON),
            "duration_ms": round(self.duration * 1000, 3),
        }


def _digest(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


def _encode(fields: dict[str, object]) -> bytes:
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _last_line(fd: int, size: int) -> bytes | None:
    """The last complete line (without newline) in the file, reading at most MAX_LINE+1 bytes."""
    if size == 0:
        return None
    start = max(0, size - MAX_LINE - 1)
    tail = os.pread(fd, size - start, start)
    if not tail.endswith(b"\n"):
        raise AuditError("the audit log ends with an incomplete line: run verify and repair it")
    body = tail[:-1]
    cut = body.rfind(b"\n")
    if cut < 0 and start > 0:
        raise AuditError("the last line of the audit log is too long: it was not written by us")
    return body[cut + 1 :]


class AuditLog:
    """Appends records to *path*; each append returns the new head (hash of the new line)."""

    def __init__(self, path: Path, *, fsync: bool = False) -> None:
        self.path = path
        self._fsync = fsync
        self._lock = threading.Lock()
        self._fd = self._open()
        self._pid = os.getpid()

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o640)
        except OSError as exc:
            raise AuditError(f"cannot open audit log {self.path}: {exc.strerror}") from None

    def append(self, record: AuditRecord) -> str:
        with self._lock:
            if os.getpid() != self._pid:  # forked: our own descriptor, so flock excludes
                os.close(self._fd)
                self._fd, self._pid = self._open(), os.getpid()
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                last = _last_line(self._fd, os.fstat(self._fd).st_size)
                seq, prev = 1, GENESIS
                if last is not None:
                    try:
                        seq = int(json.loads(last)["seq"]) + 1
                    except (ValueError, KeyError, TypeError):
                        raise AuditError(
                            "the last line of the audit log is not ours: run verify"
                        ) from None
                    prev = _digest(last)
                line = _encode({**record.fields(), "seq": seq, "prev": prev})
                os.write(self._fd, line + b"\n")
                if self._fsync:
                    os.fsync(self._fd)
                return _digest(line)
            except OSError as exc:
                raise AuditError(f"cannot write audit log {self.path}: {exc.strerror}") from None
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        os.close(self._fd)


@dataclass(frozen=True, slots=True)
class Verified:
    lines: int
    head: str  # hash of the last line (GENESIS for an empty log)


def verify(path: Path, head: str | None = None) -> Verified:
    """Check the whole chain; raise :class:`AuditError` naming the first bad line."""
    prev, count = GENESIS, 0
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise AuditError(f"cannot read audit log {path}: {exc.strerror}") from None
    with handle:
        while True:
            raw = handle.readline(MAX_LINE + 2)
            if not raw:
                break
            count += 1
            if not raw.endswith(b"\n"):
                raise AuditError(f"line {count}: incomplete or longer than {MAX_LINE}", count)
            line = raw[:-1]
            try:
                fields = json.loads(line)
            except ValueError:
                raise AuditError(
                    f"line {count}: not a JSON object (edited or torn)", count
                ) from None
            if not isinstance(fields, dict) or set(fields) != _KEYS:
                raise AuditError(f"line {count}: not an audit record (fields differ)", count)
            if fields["seq"] != count:
                raise AuditError(
                    f"line {count}: sequence number {fields['seq']}, expected {count}: "
                    "lines were removed, inserted or reordered before it",
                    count,
                )
            if fields["prev"] != prev:
                raise AuditError(
                    f"line {count}: does not chain to line {count - 1}: "
                    f"line {count - 1} was edited, or lines were replaced",
                    count - 1,
                )
            if _encode(fields) != line:
                raise AuditError(f"line {count}: not in canonical form (edited)", count)
            prev = _digest(line)
    if head is not None and head != prev:
        raise AuditError(
            f"the last line ({count}) has hash {prev}, not the expected head {head}: "
            "lines were removed from the end or the last line was edited",
            count,
        )
    return Verified(count, prev)
