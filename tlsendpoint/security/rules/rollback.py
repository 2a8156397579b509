# Policy anti-rollback (issue 6 point 4): the rules.  The table lives in the store.
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
# new path is simply not recorded (the store says so; the endpoint logs it).
#
# :func:`plan` decides, from the records seen so far, what to write and whether to
# refuse; the store (state/records.py) reads, plans and writes in one transaction.
# Pure: values in, values or RollbackRefusal out.  No I/O, no clock.
from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cryptography import x509

from core.certs import delegation_hops
from core.chainrules import subject_text
from core.wire import Name
from tlsendpoint.security import SecurityRefusal

__all__ = [
    "DEFAULT_MAX_ENTRIES",
    "Delegation",
    "Plan",
    "RollbackRefusal",
    "Seen",
    "check",
    "delegations",
    "plan",
]

DEFAULT_MAX_ENTRIES = 100_000


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


@dataclass(frozen=True, slots=True)
class Seen:
    """The newest delegation seen for a path, kept until *hold_until* (POSIX seconds)."""

    not_before: int
    serial: int
    hold_until: int

    @property
    def order(self) -> tuple[int, int]:
        return (self.not_before, self.serial)


def _seconds(when: dt.datetime) -> int:
    return int(when.timestamp())


def delegations(chain: Sequence[x509.Certificate]) -> list[Delegation]:
    """The policy-carrying intermediates of a verified chain (leaf first), top-down.

    Paths are derived as :func:`core.authorize.authorize` does; call this
    after authorize accepted the chain.
    """
    return [
        Delegation(
            Name(path, None),
            _seconds(cert.not_valid_before_utc),
            _seconds(cert.not_valid_after_utc),
            cert.serial_number,
            subject_text(cert),
        )
        for path, cert in delegation_hops(reversed(chain[1:]))
    ]


def _when(seconds: int) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def refusal(delegation: Delegation, seen: Seen | None) -> RollbackRefusal | None:
    """The refusal if *delegation* is older than what was *seen* for its path."""
    if seen is None or delegation.order >= seen.order:
        return None
    cn = delegation.path.path[-1]
    return RollbackRefusal(
        f"delegation {delegation.path} (certificate CN {cn}, serial {delegation.serial:x}, "
        f"valid from {_when(delegation.not_before)}) is older than the newest one seen for "
        f"that path (serial {seen.serial:x}, valid from {_when(seen.not_before)}): its policy "
        "may have been reduced since; use the newest certificate for this delegation"
    )


def check(found: Sequence[Delegation], seen: Mapping[str, Seen]) -> None:
    """Raise the first :class:`RollbackRefusal` for *found*; records nothing (explain)."""
    for delegation in found:
        refused = refusal(delegation, seen.get(str(delegation.path)))
        if refused is not None:
            raise refused


@dataclass(frozen=True, slots=True)
class Plan:
    """What to write for a chain, in order, and the refusal to raise after writing it."""

    writes: tuple[tuple[str, Seen], ...]
    new_paths: frozenset[str]  # writes that add a path (they need room in the table)
    refusal: RollbackRefusal | None


def plan(found: Sequence[Delegation], seen: Mapping[str, Seen]) -> Plan:
    """Newer delegations replace the record of their path; an older one is refused.

    Top-down: the writes before a refusal still happen, and a refused old certificate
    that lives longer than the record extends the record's hold (the record must stay
    while that certificate could be presented).
    """
    writes: list[tuple[str, Seen]] = []
    new_paths: set[str] = set()
    for delegation in found:
        key = str(delegation.path)
        old = seen.get(key)
        refused = refusal(delegation, old)
        if refused is not None:
            assert old is not None
            if delegation.not_after > old.hold_until:
                writes.append((key, Seen(old.not_before, old.serial, delegation.not_after)))
            return Plan(tuple(writes), frozenset(new_paths), refused)
        hold = max(delegation.not_after, old.hold_until if old else 0)
        new = Seen(delegation.not_before, delegation.serial, hold)
        if old == new:
            continue
        if old is None:
            new_paths.add(key)
        writes.append((key, new))
    return Plan(tuple(writes), frozenset(new_paths), None)
