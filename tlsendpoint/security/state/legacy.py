# The state files of the previous format, migrated into the store once, at start.
#
# Before the store, the state directory held replay.journal (one "key notAfter owner"
# line per used leaf) and rollback.json (newest delegation per path), each with a
# ".lock" file.  At start, if either exists, its records are read strictly, added to the
# store in one transaction, and the file is renamed to "<name>.migrated"; the lock files
# go.  Importing is idempotent, so a crash between the import and the renames, or two
# inetd processes starting at once, only imports the same records twice.
#
# A damaged old file is never skipped (the old reader did skip bad lines, and a used
# leaf ran again): it stops the start, naming the line and what the operator can do.
# A last line without its newline is damage too: the old endpoint may have run the
# command although its record was cut short (a full disk).
from __future__ import annotations

import json
import os
import re
from pathlib import Path

from durable.database import StoreDamaged, StoreError
from durable.files import sync_directory
from tlsendpoint.security.rules.rollback import Seen
from tlsendpoint.security.state.records import STORE_FILE, SecurityStore

__all__ = [
    "OLD_REPLAY_FILE",
    "OLD_ROLLBACK_FILE",
    "OldFileDamaged",
    "migrate",
    "read_journal",
    "read_rollback",
]

OLD_REPLAY_FILE = "replay.journal"
OLD_ROLLBACK_FILE = "rollback.json"
_LINE = re.compile(rb"([0-9a-f]{32}:[0-9a-f]{1,80}) ([0-9]{1,20}) ([\x21-\x7e]{1,200})")


class OldFileDamaged(StoreDamaged):
    """An old state file is damaged; the message says what the operator can do."""


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise StoreError(f"cannot read the old state file {path}: {exc.strerror}") from None


def read_journal(path: Path) -> list[tuple[str, int, str]]:
    """The (key, notAfter, owner) records of an old replay journal; OldFileDamaged if damaged."""
    data = _read(path)
    records: list[tuple[str, int, str]] = []
    offset = 0
    for number, line in enumerate(data.split(b"\n"), start=1):
        end = offset + len(line)
        if end == len(data):  # after the last newline
            if line:
                raise OldFileDamaged(
                    f"the old replay journal {path} is damaged: line {number} is incomplete "
                    "(a crash or a full disk while it was written; the command of the leaf it "
                    "records may have run).  Keep a copy, then either remove that line "
                    f"(truncate -s {offset} {path}) and accept that this one leaf may run "
                    "again until it expires, or restore the file from a backup"
                )
            break
        match = _LINE.fullmatch(line)
        if match is None:
            raise OldFileDamaged(
                f"the old replay journal {path} is damaged: line {number} is not a record "
                f"({line[:40]!r}).  Keep a copy, then restore the file from a backup, or "
                f"remove the damaged line (sed -i '{number}d' {path}) and accept that the "
                "leaf it recorded may run again until it expires"
            )
        key, not_after, owner = match.groups()
        records.append((key.decode(), int(not_after), owner.decode()))
        offset = end + 1
    return records


def read_rollback(path: Path) -> dict[str, Seen]:
    """The records of an old rollback.json; OldFileDamaged if damaged."""
    try:
        data = json.loads(_read(path))
        if data["version"] != 1:
            raise ValueError("version")
        table: dict[str, Seen] = {}
        for name, (not_before, serial, hold) in data["paths"].items():
            if not (isinstance(name, str) and name.endswith(":")):
                raise ValueError(name)
            if not all(type(value) is int for value in (not_before, hold)):
                raise ValueError(name)
            table[name] = Seen(not_before, int(serial, 16), hold)
        return table
    except (ValueError, KeyError, TypeError, AttributeError):
        raise OldFileDamaged(
            f"the old anti-rollback file {path} is damaged: restore it from a backup, or "
            "move it aside to forget every delegation seen (older certificates would be "
            "accepted again once)"
        ) from None


def migrate(store: SecurityStore) -> str | None:
    """Move the old state files of *store*'s directory into it; the log line, or None."""
    directory = store.state_dir
    journal, table = directory / OLD_REPLAY_FILE, directory / OLD_ROLLBACK_FILE
    old = [path for path in (journal, table) if path.exists()]
    if not old:
        return None
    leaves = read_journal(journal) if journal in old else []
    paths = read_rollback(table) if table in old else {}
    store.import_records(leaves, paths)
    try:
        for path in old:
            os.replace(path, path.with_name(path.name + ".migrated"))
        for path in old:
            path.with_name(path.name + ".lock").unlink(missing_ok=True)
        sync_directory(directory)
    except FileNotFoundError:  # another process (inetd) migrated them at the same time
        pass
    except OSError as exc:
        raise StoreError(f"cannot rename the migrated old state files: {exc.strerror}") from None
    return (
        f"migrated {len(leaves)} replay records and {len(paths)} delegation paths from "
        f"{' and '.join(p.name for p in old)} into {STORE_FILE}; the old files are kept as "
        + ", ".join(f"{p.name}.migrated" for p in old)
    )
