# Replay protection (issue 6 point 6): the rules.  The records live in the store.
#
# albatross executes a command certificate every time it is presented within
# its validity (behaviour.md §9.7): whoever holds a 1-day "destroy" leaf can
# destroy the unikernel again and again.  We record each leaf that carried a
# state-changing command, keyed by (issuer DN, serial) - unique per X.509 - and
# refuse it again until its notAfter; then the record expires (the certificate
# would be refused as expired anyway).  Read-only commands are exempt.
# albatross-client mints a fresh leaf per command, so it is unaffected.
#
# The store (state/records.py) checks and records in one transaction, durably, before
# the command reaches the daemon: two concurrent presentations cannot both pass, and a
# crash after the record leaves the leaf used; a command that then fails at the daemon
# has still used its leaf.
#
# Bounded: at most max_entries live records, and max_per_owner per top-level
# delegation, so one delegate minting long-lived leaves can exhaust only its
# own share (its further state-changing commands are refused until records
# expire).  When full we refuse (fail closed) rather than forget.
# Pure: values in, values or ReplayRefusal out.  No I/O, no clock.
from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from cryptography import x509

from core.chainrules import subject_text
from core.wire import (
    BlockAdd,
    BlockAddOld,
    BlockRemove,
    BlockSet,
    BlockSetOld,
    Command,
    Name,
    UnikernelCreate,
    UnikernelDestroy,
    UnikernelRestart,
)
from tlsendpoint.security import SecurityRefusal

__all__ = [
    "DEFAULT_MAX_ENTRIES",
    "DEFAULT_MAX_PER_OWNER",
    "STATE_CHANGING",
    "LeafRecord",
    "ReplayBounds",
    "ReplayRefusal",
    "already_used",
    "check_room",
    "is_state_changing",
    "leaf_record",
    "owner_of",
    "replay_key",
]

DEFAULT_MAX_ENTRIES = 200_000
DEFAULT_MAX_PER_OWNER = 20_000

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


@dataclass(frozen=True, slots=True)
class LeafRecord:
    """What the store keeps of a leaf that ran a state-changing command (and what refusals say)."""

    key: str  # replay_key
    not_after: int  # POSIX seconds: the record may go after this
    owner: str  # the top-level delegation ("-" for leaves under the root itself)
    subject: str
    serial: int


def owner_of(name: Name) -> str:
    """The top-level delegation a request named *name* is under ("" for the root): the
    delegation whose share of the records (``max_per_owner``) its leaf uses."""
    return name.path[0] if name.path else ""


def leaf_record(leaf: x509.Certificate, owner: str) -> LeafRecord:
    """The record of *leaf*, presented under top-level delegation *owner* ("" for the root)."""
    return LeafRecord(
        replay_key(leaf),
        int(leaf.not_valid_after_utc.timestamp()),
        owner or "-",
        subject_text(leaf),
        leaf.serial_number,
    )


@dataclass(frozen=True, slots=True)
class ReplayBounds:
    """How many unexpired records the store keeps, in all and per top-level delegation."""

    max_entries: int = DEFAULT_MAX_ENTRIES
    max_per_owner: int = DEFAULT_MAX_PER_OWNER


def already_used(record: LeafRecord) -> ReplayRefusal:
    until = dt.datetime.fromtimestamp(record.not_after, dt.UTC)
    return ReplayRefusal(
        f"leaf certificate {record.subject} (serial {record.serial:x}) "
        "already executed a state-changing command; it is valid until "
        f"{until:%Y-%m-%d %H:%M:%S} UTC but runs only once: "
        "sign a new leaf certificate for each command"
    )


def check_room(record: LeafRecord, owner_live: int, all_live: int, bounds: ReplayBounds) -> None:
    """Refuse to record *record* when its owner's share or the whole record is full.

    *owner_live* and *all_live* count the unexpired records (without this one).
    """
    if owner_live >= bounds.max_per_owner:
        raise ReplayRefusal(
            f"too many unexpired state-changing leaf certificates under {record.owner}: "
            f"at most {bounds.max_per_owner}; use shorter-lived leaves or wait until "
            "older ones expire"
        )
    if all_live >= bounds.max_entries:
        raise ReplayRefusal(
            f"the replay record is full ({bounds.max_entries} unexpired leaves); "
            "try again when some expired"
        )
