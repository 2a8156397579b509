# The audit log's record format and its one reader (issue 6 point 8, issue 11 point 2).
#
# One JSON object per line, canonical (keys sorted, no spaces, ASCII), at most
# MAX_LINE bytes.  Every record has seq (1, 2, ... one per record) and prev (the
# SHA-256 of the previous record's line; 64 zeros for the first): a hash chain.
#
# Format 2 ("v": 2, written since issue 11) has three events, so that a command
# is recorded before it runs (as Vault's audit devices log a request before
# serving it, and refuse it when they cannot):
#   decision - peer, chain, name, command, decision, reason, duration_ms.  An
#              "allow" is written (and with --audit-fsync synced) before the
#              command goes to the daemon; "deny" and "error" when the
#              connection ends.
#   outcome  - decision_seq (the allow it completes), peer, outcome (what the
#              daemon answered, or how the connection ended), duration_ms.
#   torn     - torn_bytes, torn_sha256, reason: the bytes between the last
#              intact record and this one are not a record but what a crash (or
#              a failed write that could not be undone) left; this record
#              chains from the last intact one and covers them by length and hash.
# Format 1 (before issue 11, no "v"): one decision line per connection, written
# when it ended.  It is still read; a log may continue from format 1 to 2.
#
# Crash or tampering.  A crash leaves at most an incomplete line at the end:
# the line being written, plus one more if the endpoint crashes again while
# writing the recovery record (MAX_TORN_LINES), each at most MAX_LINE bytes,
# none of them a record.  So the reader (Scanner) accepts lines that are not
# records at all only right before a torn record that covers exactly them, or
# after the last record (a crash not yet recovered: the endpoint recovers it at
# its next start or write).  A record that does not chain where it stands - an
# edited, removed, inserted, duplicated or reordered line - is tampering, and
# the first one is named.  Bytes after the last record cannot hide or change a
# record; what no chain shows without a head hash kept elsewhere (verify
# --head) is lines cut from the end, or the last record edited.
#
# Pure: bytes in, records and our AuditError out; the file is read and written
# in state/auditlog.py, which uses this Scanner for verify and for recovery alike, so
# the endpoint never writes what the verifier would call tampering.
from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from core.chainrules import subject_text
from core.errors import AlbatrossError
from core.routing import command_name
from core.wire import (
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
    "MAX_TORN_LINES",
    "AuditError",
    "AuditRecord",
    "Crash",
    "OpenDecision",
    "OutcomeRecord",
    "Scanner",
    "Torn",
    "Verified",
    "chain_summary",
    "command_summary",
    "digest",
    "encode",
    "torn_fields",
]

GENESIS = "0" * 64
#: No line is longer (fields are truncated to fit).
MAX_LINE = 16 * 1024
#: Incomplete lines a crash can leave: the line being written, and the recovery's own.
MAX_TORN_LINES = 2
VERSION = 2
_FIELD = 512
_REASON = 2048
_MAX_CHAIN = 10
_V1_KEYS = frozenset(
    {"seq", "time", "peer", "chain", "name", "command", "decision", "reason", "duration_ms", "prev"}
)
_COMMON = frozenset({"v", "seq", "prev", "event", "time"})
_V2_KEYS = {
    "decision": _COMMON | {"peer", "chain", "name", "command", "decision", "reason", "duration_ms"},
    "outcome": _COMMON | {"peer", "decision_seq", "outcome", "duration_ms"},
    "torn": _COMMON | {"torn_bytes", "torn_sha256", "reason"},
}


class AuditError(AlbatrossError):
    """The audit log cannot be written, or does not verify; ``line`` is 1-based (0: whole file)."""

    exit_code = 1

    def __init__(self, message: str, line: int = 0) -> None:
        super().__init__(message)
        self.line = line


def _cut(text: str, limit: int = _FIELD) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _time(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).isoformat(timespec="milliseconds")


def chain_summary(chain: Sequence[x509.Certificate]) -> list[dict[str, str]]:
    """Subject, serial (hex) and SHA-256 fingerprint of each certificate, leaf first (at most 10).

    The serial came with issue 15 (``albatross-audit who``); the reader never looked
    inside a chain entry, so records with and without it read alike in both formats.
    """
    return [
        {
            "subject": _cut(subject_text(c)),
            "serial": f"{c.serial_number:x}",
            "sha256": c.fingerprint(hashes.SHA256()).hex(),
        }
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
    """A decision of the endpoint: allow (before forwarding), deny or error (at the end)."""

    time: dt.datetime  # the connection's time (the clock it was judged by)
    peer: str
    chain: Sequence[x509.Certificate] | Sequence[dict[str, str]]  # certificates or chain_summary
    name: str | None  # the derived name, None when authorisation failed before it
    command: str | None  # command_summary(...), None when unknown
    decision: str  # "allow", "deny" or "error"
    reason: str
    duration: float  # seconds since the connection was accepted

    def fields(self) -> dict[str, object]:
        return {
            "event": "decision",
            "time": _time(self.time),
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


@dataclass(frozen=True, slots=True)
class OutcomeRecord:
    """How an allowed command ended: the daemon's answer, or how the connection ended."""

    time: dt.datetime
    peer: str
    decision_seq: int  # seq of the allow record it completes
    outcome: str
    duration: float

    def fields(self) -> dict[str, object]:
        return {
            "event": "outcome",
            "time": _time(self.time),
            "peer": _cut(self.peer, 128),
            "decision_seq": self.decision_seq,
            "outcome": _cut(self.outcome, _REASON),
            "duration_ms": round(self.duration * 1000, 3),
        }


def torn_fields(region: bytes, now: dt.datetime) -> dict[str, object]:
    """The recovery record's own fields for the incomplete *region* (without seq/prev/v)."""
    if region:
        reason = (
            "the bytes before this record are an incomplete line, not a record: the endpoint "
            "stopped while writing it (a crash) or could not finish or undo a write"
        )
    else:
        reason = (
            "the record before this one lacked its newline: the endpoint stopped right after it"
        )
    return {
        "event": "torn",
        "time": _time(now),
        "torn_bytes": len(region),
        "torn_sha256": hashlib.sha256(region).hexdigest(),
        "reason": reason,
    }


def encode(fields: dict[str, object]) -> bytes:
    """The canonical line (without newline) of a record."""
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def digest(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


@dataclass(frozen=True, slots=True)
class Parsed:
    """What the reader uses of a record, type-checked."""

    seq: int
    prev: str
    event: str  # "decision" (also every format 1 record), "outcome" or "torn"
    allowed: bool  # a format 2 allow decision (waits for its outcome)
    name: str | None
    command: str | None
    decision_seq: int  # outcome only
    torn_bytes: int  # torn only
    torn_sha256: str  # torn only


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def parse(line: bytes) -> tuple[Parsed | None, str]:
    """A record of either format, or None and why not (no chain checks)."""
    try:
        fields = json.loads(line)
    except (ValueError, RecursionError):
        return None, "not a JSON object (edited or torn)"
    if not isinstance(fields, dict):
        return None, "not a JSON object (edited or torn)"
    version = fields.get("v")
    event = fields.get("event") if version is not None else "decision"
    if version is None:
        keys: frozenset[str] | None = _V1_KEYS
    elif _int(version) == VERSION and isinstance(event, str):
        keys = _V2_KEYS.get(event)
    else:
        keys = None
    if keys is None or set(fields) != keys or not isinstance(event, str):
        return None, "not an audit record (fields differ)"
    seq, prev = _int(fields["seq"]), fields["prev"]
    name, command = fields.get("name"), fields.get("command")
    decision_seq, torn_bytes = (
        _int(fields.get("decision_seq", 0)),
        _int(fields.get("torn_bytes", 0)),
    )
    torn_sha256 = fields.get("torn_sha256", "")
    if (
        seq is None
        or not isinstance(prev, str)
        or decision_seq is None
        or torn_bytes is None
        or not isinstance(torn_sha256, str)
        or not isinstance(name, str | None)
        or not isinstance(command, str | None)
    ):
        return None, "not an audit record (a field has the wrong type)"
    if encode(fields) != line:
        return None, "not in canonical form (edited)"
    allowed = version is not None and event == "decision" and fields["decision"] == "allow"
    parsed = Parsed(seq, prev, event, allowed, name, command, decision_seq, torn_bytes, torn_sha256)
    return parsed, ""


@dataclass(frozen=True, slots=True)
class Crash:
    """Lines first..last were left incomplete; recovered_at: the torn record's line, or None."""

    first: int
    last: int
    size: int  # bytes of the incomplete lines
    recovered_at: int | None
    whole_record: bool = False  # the line is a whole record, only its newline was missing

    def text(self) -> str:
        first, last = self.first, self.last
        where = f"line {first}" if first == last else f"lines {first}-{last}"
        if self.whole_record:
            what = f"{where}: a whole record whose newline was missing (a crash right after it)"
        else:
            what = f"{where}: {self.size} bytes of an incomplete line (a crash or a failed write)"
        if self.recovered_at is None:
            return f"{what}, at the end; the endpoint closes it at its next start or write"
        return f"{what}, recovered at line {self.recovered_at} (not tampering)"


@dataclass(frozen=True, slots=True)
class OpenDecision:
    """An allow decision without an outcome record."""

    line: int
    seq: int
    name: str | None
    command: str | None

    def text(self) -> str:
        return (
            f"line {self.line}: `{self.command or 'a command'}` for {self.name} was allowed but "
            "has no outcome: the endpoint stopped (a crash) or could not write it before the "
            "daemon answered, or it is still running"
        )


@dataclass(frozen=True, slots=True)
class Torn:
    """An end a recovery record must cover: *region*, the bytes after the last record."""

    region: bytes
    first: int
    last: int
    newline: bool  # the last line lacks its newline: the recovery writes one first
    whole_record: bool = False  # that line is a record: region is empty


@dataclass(frozen=True, slots=True)
class Verified:
    lines: int
    head: str  # hash of the last record (GENESIS for an empty log)
    records: int
    crashes: tuple[Crash, ...]
    open_decisions: tuple[OpenDecision, ...]

    def notes(self) -> list[str]:
        """What an operator should know although the chain is intact."""
        return [c.text() for c in self.crashes] + [d.text() for d in self.open_decisions]


class Scanner:
    """Reads a log line by line: :meth:`feed` each line with its newline, then :meth:`finish`.

    Starts at the beginning (GENESIS), or - for the writer's recovery, which reads only
    the end of the file - after a given record (*seq* is the next one, *prev* its hash).
    """

    def __init__(
        self, *, seq: int = 1, prev: str = GENESIS, head: str | None = None, outcomes: bool = True
    ) -> None:
        self.seq = seq  # the next record's expected seq
        self.prev = prev  # the last record's hash
        self.line = 0
        self.records = 0
        self.pending: list[bytes] = []  # lines since the last record that are not records
        self.tail: bytes | None = None  # the last line, when it has no newline
        self.crashes: list[Crash] = []
        self._head = head
        self._head_seen = head is None or head == prev
        self._outcomes = outcomes  # check that outcomes complete open allow decisions
        self._open: dict[int, OpenDecision] = {}
        self._pending_error = AuditError("no error", 0)
        self._pending_line = 0
        self._error = AuditError("no error", 0)

    def _judge(self, line: bytes, n: int) -> Parsed | None:
        parsed, why = parse(line)
        if parsed is None:
            self._error = AuditError(f"line {n}: {why}", n)
        elif parsed.seq != self.seq:
            self._error = AuditError(
                f"line {n}: sequence number {parsed.seq}, expected {self.seq}: "
                "lines were removed, inserted or reordered before it",
                n,
            )
        elif parsed.prev != self.prev:
            self._error = AuditError(
                f"line {n}: does not chain to line {n - 1}: "
                f"line {n - 1} was edited, or lines were replaced",
                n - 1,
            )
        else:
            return parsed
        return None

    def _take(self, line: bytes, n: int) -> bool:
        """Accept *line* as the next record; False if it is no record at all (perhaps what a
        crash left).  A record that does not belong here raises: that is never a crash."""
        parsed = self._judge(line, n)
        if parsed is None:
            shape, _ = parse(line)
            if shape is None:
                return False
            if shape.event == "torn" and self.pending:
                before = self._pending_line - 1  # the record the crash's bytes follow
                raise AuditError(
                    f"line {n}: a recovery record that does not chain to line {before}: "
                    f"line {before} was edited, or lines were replaced",
                    before,
                )
            raise self._pending_error if self.pending else self._error
        if parsed.event == "torn":
            region = b"\n".join(self.pending)
            covers = parsed.torn_bytes == len(region) and parsed.torn_sha256 == digest(region)
            if not covers or not (self.pending or self.records):  # never what a crash leaves
                raise AuditError(
                    f"line {n}: a recovery record that does not match the {len(region)} bytes "
                    "of incomplete lines before it (edited)",
                    n,
                )
            first = self._pending_line if self.pending else n - 1
            self.crashes.append(Crash(first, n - 1, len(region), n, not self.pending))
            self.pending.clear()
        elif self.pending:  # a record after bytes that no recovery record covers
            raise self._pending_error
        self._accept(parsed, line, n)
        return True

    def _accept(self, parsed: Parsed, line: bytes, n: int) -> None:
        self.prev, self.seq = digest(line), self.seq + 1
        self.records += 1
        self._head_seen = self._head_seen or self.prev == self._head
        if not self._outcomes:
            return
        if parsed.allowed:
            self._open[parsed.seq] = OpenDecision(n, parsed.seq, parsed.name, parsed.command)
        elif parsed.event == "outcome" and self._open.pop(parsed.decision_seq, None) is None:
            raise AuditError(
                f"line {n}: an outcome for record {parsed.decision_seq}, which is not an "
                "allowed command waiting for its outcome (edited)",
                n,
            )

    def feed(self, raw: bytes) -> None:
        """The next line, with its newline (only the last line may lack it)."""
        if self.tail is not None:
            raise AuditError(f"line {self.line}: incomplete, yet more follows", self.line)
        self.line += 1
        n = self.line
        complete = raw.endswith(b"\n")
        line = raw[:-1] if complete else raw
        if len(line) > MAX_LINE:
            raise AuditError(f"line {n}: longer than {MAX_LINE} bytes: not an audit record", n)
        if not complete:
            self.tail = raw
        elif not self._take(line, n):
            if not self.pending:
                self._pending_error, self._pending_line = self._error, n
            self.pending.append(line)
            if len(self.pending) > MAX_TORN_LINES:
                raise self._pending_error

    def end(self) -> Torn | None:
        """At the end of the file: what a recovery record must cover, None if nothing.

        What a crash leaves after the last record: at most MAX_TORN_LINES lines that are
        no records, the last one perhaps without its newline; or a whole record without
        its newline.  Anything else raised :class:`AuditError` while feeding, or here.
        """
        n = self.line
        if self.tail is None:
            if not self.pending:
                return None
            return Torn(b"\n".join(self.pending), self._pending_line, n, newline=False)
        if self._take(self.tail, n):
            return Torn(b"", n, n, newline=True, whole_record=True)
        if not self.pending:
            self._pending_error, self._pending_line = self._error, n
        if len(self.pending) >= MAX_TORN_LINES:
            raise self._pending_error
        return Torn(b"\n".join([*self.pending, self.tail]), self._pending_line, n, newline=True)

    def finish(self) -> Verified:
        """The verdict on the whole log (after feeding every line from the first)."""
        torn = self.end()
        if torn is not None:
            crash = Crash(torn.first, torn.last, len(torn.region), None, torn.whole_record)
            self.crashes.append(crash)
        if not self._head_seen:
            raise AuditError(
                f"the head {self._head} is not the hash of any record in the log: lines were "
                "removed from the end or the last line was edited (or the head is not this "
                "log's)",
                self.line,
            )
        return Verified(
            self.line, self.prev, self.records, tuple(self.crashes), tuple(self._open.values())
        )
