# Provenance: which certificate chain created, restarted, updated or destroyed a
# unikernel or block device, answered from the endpoint's audit log (issue 15.5).
#
# Security reasoning.  The answer is only as good as the log, so the log must
# verify first: every line goes through the same Scanner as `albatross-audit
# verify` (one pass, the lines read once, so no line is judged that was not
# verified), and only when the whole hash chain checks out (Scanner.finish) are
# the events handed out; otherwise the AuditError names the first bad line and
# nothing is answered (fail closed).  A line the Scanner let pass without being a
# record (what a crash left) is never an event: only lines that parse as records.
#
# What a record holds (auditformat.py): time, peer, the derived name, the command
# summary, the decision and its reason, and per certificate of the verified
# chain its subject, SHA-256 fingerprint and (records written since issue 15)
# serial; an allowed command's outcome is its own record, tied by decision_seq.
# Pure: lines in, events out.
from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from core.errors import AlbatrossError
from core.wire import Name
from tlsendpoint.security.rules.auditformat import Scanner, Verified, parse

__all__ = ["ACTIONS", "Event", "History", "history"]

#: Command names (as the record's command summary starts) and what they do to the name.
ACTIONS: dict[str, str] = {
    "unikernel force-create": "updated",
    "unikernel create": "created",
    "unikernel restart": "restarted",
    "unikernel destroy": "destroyed",
    "old block add": "created",
    "block add": "created",
    "old block set": "updated",
    "block set": "updated",
    "block remove": "destroyed",
}


@dataclass
class Event:
    """One decision about the name, with the chain that asked and what came of it."""

    line: int
    seq: int
    time: str
    action: str
    command: str
    decision: str  # allow, deny, error
    reason: str
    peer: str
    chain: list[dict[str, str]]  # leaf first: subject, sha256, serial (when recorded)
    outcome: str | None = None  # the daemon's answer to an allowed command (format 2)

    @property
    def cn_path(self) -> str:
        """The chain's subjects from the top down to the leaf."""
        return " > ".join(c.get("subject", "?") for c in reversed(self.chain))

    @property
    def result(self) -> str:
        if self.decision != "allow":
            return f"{self.decision}: {self.reason}"
        if self.outcome is not None:
            return f"allowed: {self.outcome}"
        return "allowed: no outcome recorded" + (" (format 1 log)" if self.seq < 0 else "")

    def as_json(self) -> dict[str, object]:
        return {
            "line": self.line,
            "time": self.time,
            "action": self.action,
            "command": self.command,
            "decision": self.decision,
            "reason": self.reason,
            "outcome": self.outcome,
            "peer": self.peer,
            "cn_path": self.cn_path,
            "chain": self.chain,
        }


@dataclass
class History:
    verified: Verified
    events: list[Event] = field(default_factory=list)


def _action(command: str) -> tuple[str, str] | None:
    for name, action in ACTIONS.items():  # longer names first where one prefixes another
        if command == name or command.startswith(name + " "):
            return name, action
    return None


def _same(recorded: str | None, wanted: Name) -> bool:
    """The record's name (``str(Name)``, e.g. ``alice:web``) names *wanted*."""
    if recorded is None:
        return False
    try:
        return Name.parse(recorded) == wanted
    except AlbatrossError:
        return False


def _chain(value: object) -> list[dict[str, str]]:
    if not isinstance(value, list):
        return []
    return [
        {k: v for k, v in entry.items() if isinstance(k, str) and isinstance(v, str)}
        for entry in value
        if isinstance(entry, dict)
    ]


def history(lines: Iterable[bytes], name: Name, head: str | None = None) -> History:
    """The events about *name* in the log's *lines* (each with its newline), once it verifies.

    Raises :class:`~tlsendpoint.security.rules.auditformat.AuditError` if it does not.
    """
    wanted = name
    scanner = Scanner(head=head)
    events: list[Event] = []
    by_seq: dict[int, Event] = {}
    outcomes: dict[int, str] = {}
    for n, raw in enumerate(lines, start=1):
        scanner.feed(raw)
        parsed, _ = parse(raw.rstrip(b"\n"))
        if parsed is None:
            continue
        fields = json.loads(raw)
        if parsed.event == "outcome":
            outcomes[parsed.decision_seq] = str(fields.get("outcome", ""))
            continue
        if parsed.event != "decision" or not _same(parsed.name, wanted) or parsed.command is None:
            continue
        found = _action(parsed.command)
        if found is None:
            continue
        event = Event(
            n,
            parsed.seq if "v" in fields else -1,
            str(fields.get("time", "")),
            found[1],
            parsed.command,
            str(fields.get("decision", "")),
            str(fields.get("reason", "")),
            str(fields.get("peer", "")),
            _chain(fields.get("chain")),
        )
        events.append(event)
        if event.seq >= 0:
            by_seq[event.seq] = event
    verified = scanner.finish()  # raises before anything is answered
    for seq, outcome in outcomes.items():
        if seq in by_seq:
            by_seq[seq].outcome = outcome
    return History(verified, events)
