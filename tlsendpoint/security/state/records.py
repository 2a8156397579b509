# The security records of issue 6 in one crash-safe store (issue 11): replay records
# and the anti-rollback table, in <state-dir>/security.db (see store/database.py for how
# the file itself is kept safe).
#
# Record before act: record_leaf() checks and records a state-changing leaf in one
# write transaction, committed (fsync'd) before it returns - the caller forwards the
# command only afterwards.  If the record cannot be written, StoreError says why and
# the command must not run.  SIGKILL before the commit: nothing recorded and nothing
# sent; after it: the leaf is used, whatever happens next.
#
# Damage is never skipped: SQLite's own checks find broken pages, and every row carries
# a checksum of its fields, so a changed byte inside a record (which SQLite cannot see)
# is found too - at start (every row), by `albatross-audit check-state`, and while
# running for every row read.  Once damage is found while running, everything that
# depends on the store is refused with the reason until the endpoint restarts (where the
# damage stops the start): a store that lied once is not trusted for the next request.
#
# The start-up check without its cost (issue 13): checking every row takes seconds at
# 190 000 records, and inetd / systemd Accept=yes start a process per connection.  So
# after a full check finds the store intact, its *content* is stamped: a SHA-256 digest
# of security.db and its -wal file, taken before and after the check (stored only if
# both agree, so nothing changed while it ran), in <state-dir>/.security.db.verified.
# A process whose store hashes to that digest holds byte for byte what was checked and
# skips the row pass (hashing costs ~1/50 of it); any difference - a write, a
# checkpoint, a flipped bit on the disk, a copied-in file - gives another digest, and the
# full check runs again, as before.  A missing, unreadable or malformed stamp is no
# stamp.  This is no weaker than one long-running endpoint, which checks once at start
# and then trusts its file and its own writes: the stamp only lets the next process
# start from the same checked state.  Forging a stamp needs write access to the state
# directory, which can rewrite the store (and its checksums, which are not a MAC) anyway.
# `albatross-audit check-state` always runs the full check.
#
# The rules (what is refused, what is written) are pure functions in replay.py and
# rollback.py; times are parameters (the endpoint's clock), never read here.
from __future__ import annotations

import hashlib
import logging
import re
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from durable.database import (
    BUSY_TIMEOUT,
    Database,
    Schema,
    StoreDamaged,
)
from durable.files import write_file
from tlsendpoint.security.rules import replay, rollback
from tlsendpoint.security.rules.replay import LeafRecord, ReplayBounds
from tlsendpoint.security.rules.rollback import Delegation, Seen
from tlsendpoint.security.state.faults import NO_FAULTS, Faults

__all__ = ["SCHEMA", "STORE_FILE", "VERIFIED_FILE", "Counts", "SecurityStore", "content_digest"]

T = TypeVar("T")

log = logging.getLogger("albatross.security")

STORE_FILE = "security.db"
#: The digest of the store's content when a full check last found it intact.
VERIFIED_FILE = ".security.db.verified"
#: Largest stamp file read (a digest in hex and a newline).
_STAMP_MAX = 256

SCHEMA = Schema(
    what="security state",
    application_id=0x416C6254,  # "AlbT"
    version=1,
    statements=(
        """CREATE TABLE replay (
            key TEXT PRIMARY KEY NOT NULL,
            not_after INTEGER NOT NULL CHECK (typeof(not_after) = 'integer'),
            owner TEXT NOT NULL CHECK (length(owner) > 0),
            checksum BLOB NOT NULL CHECK (length(checksum) = 8)
        ) WITHOUT ROWID""",
        "CREATE INDEX replay_by_expiry ON replay (not_after)",
        # live replay records per owner, and in all (owner ""), kept with every change:
        # the bounds are checked without counting (an invariant the checks verify)
        """CREATE TABLE replay_counts (
            owner TEXT PRIMARY KEY NOT NULL,
            live INTEGER NOT NULL CHECK (typeof(live) = 'integer' AND live >= 0)
        ) WITHOUT ROWID""",
        """CREATE TABLE rollback (
            path TEXT PRIMARY KEY NOT NULL,
            not_before INTEGER NOT NULL CHECK (typeof(not_before) = 'integer'),
            serial TEXT NOT NULL,
            hold_until INTEGER NOT NULL CHECK (typeof(hold_until) = 'integer'),
            checksum BLOB NOT NULL CHECK (length(checksum) = 8)
        ) WITHOUT ROWID""",
        "CREATE INDEX rollback_by_hold ON rollback (hold_until)",
    ),
)

DEFAULT_BOUNDS = ReplayBounds()

_KEY = re.compile(r"[0-9a-f]{32}:[0-9a-f]{1,80}")
_SERIAL = re.compile(r"[0-9a-f]{1,80}")
_OWNER = re.compile(r"[\x21-\x7e]{1,200}")
_PATH = re.compile(r"([^:\s]*:)+")


_REPLAY_HASH = hashlib.blake2b(digest_size=8, person=b"replay")
_ROLLBACK_HASH = hashlib.blake2b(digest_size=8, person=b"rollback")


def replay_checksum(key: str, not_after: int, owner: str) -> bytes:
    """8 octets of BLAKE2b over a replay row's fields (damage detection, not a MAC)."""
    digest = _REPLAY_HASH.copy()
    digest.update(f"{key}\x1f{not_after}\x1f{owner}".encode())
    return digest.digest()


def rollback_checksum(path: str, seen: Seen) -> bytes:
    """8 octets of BLAKE2b over an anti-rollback row's fields."""
    digest = _ROLLBACK_HASH.copy()
    digest.update(f"{path}\x1f{seen.not_before}\x1f{seen.serial:x}\x1f{seen.hold_until}".encode())
    return digest.digest()


def content_digest(path: Path) -> str | None:
    """SHA-256 of the store file and its write-ahead log (hex); None if they cannot be read."""
    digest = hashlib.sha256(b"albatross-tls security.db\x1f")  # SHA-NI: ~1 GB/s
    try:
        for part in (path, Path(f"{path}-wal")):
            digest.update(f"\x1f{part.name}\x1f".encode())
            try:
                with part.open("rb") as file:  # an empty log and none are the same content
                    while chunk := file.read(1 << 20):
                        digest.update(chunk)
            except FileNotFoundError:
                if part == path:
                    return None
    except OSError:
        return None
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class Counts:
    """How many records the store holds (for the integrity check's report)."""

    replay: int
    rollback: int


class SecurityStore:
    """Replay records and the anti-rollback table in *path* (``<state-dir>/security.db``)."""

    def __init__(
        self,
        path: Path,
        *,
        replay_bounds: ReplayBounds = DEFAULT_BOUNDS,
        rollback_max: int = rollback.DEFAULT_MAX_ENTRIES,
        busy_timeout: float = BUSY_TIMEOUT,
        faults: Faults = NO_FAULTS,
    ) -> None:
        self.path = path  # <state-dir>/security.db
        self.state_dir = path.parent
        self.database = Database(self.path, SCHEMA, busy_timeout=busy_timeout)
        self.replay_bounds = replay_bounds
        self.rollback_max = rollback_max
        self.faults = faults
        self.damage: StoreDamaged | None = None  # found while running: refuse until restart

    # -- start-up and checks ------------------------------------------------------------

    def open(self) -> None:
        """Start-up: create or open the file and check all of it; raises StoreError.

        The full check is skipped when the content is the one a full check last found
        intact (the module's comment says why that is safe).
        """
        self.database.create_or_open()
        before = content_digest(self.path)
        if before is not None and before == self._verified_digest():
            return
        problems = self.problems()
        if problems:
            raise StoreDamaged(
                f"the security state {self.path} is damaged: "
                + "; ".join(problems[:3])
                + (f" (and {len(problems) - 3} more)" if len(problems) > 3 else "")
            )
        if before is not None and content_digest(self.path) == before:
            self._stamp(before)

    def _verified_digest(self) -> str | None:
        try:
            with (self.state_dir / VERIFIED_FILE).open("rb") as stamp:
                text = stamp.read(_STAMP_MAX)
        except OSError:
            return None
        return text.decode("ascii", "replace").strip() or None

    def _stamp(self, digest: str) -> None:
        try:
            write_file(self.state_dir / VERIFIED_FILE, f"{digest}\n".encode(), mode=0o600)
        except OSError as exc:  # the next start checks everything again: nothing is lost
            log.warning("cannot record that the security state was checked: %s", exc)

    def ready(self) -> None:
        """End of start-up: writes work now, and no connection is left for forked workers."""
        try:
            self.database.probe_write()
        finally:
            self.database.release()

    def close(self) -> None:
        self.database.release()

    def problems(self) -> list[str]:
        """SQLite's integrity check, then every row's checksum and shape: [] when intact."""
        found = self.database.integrity_problems()
        if found:
            return [f"SQLite integrity check: {problem}" for problem in found]
        with self.database.transaction(write=False) as connection:
            for key, not_after, owner, checksum in connection.execute(
                "SELECT key, not_after, owner, checksum FROM replay"
            ):
                problem = _replay_row_problem(key, not_after, owner, checksum)
                if problem:
                    found.append(problem)
            found.extend(_count_problems(connection))
            for path, not_before, serial, hold, checksum in connection.execute(
                "SELECT path, not_before, serial, hold_until, checksum FROM rollback"
            ):
                problem = _rollback_row_problem(path, not_before, serial, hold, checksum)
                if problem:
                    found.append(problem)
        return found

    def counts(self) -> Counts:
        with self.database.transaction(write=False) as connection:
            (replays,) = connection.execute("SELECT count(*) FROM replay").fetchone()
            (paths,) = connection.execute("SELECT count(*) FROM rollback").fetchone()
        return Counts(int(replays), int(paths))

    @contextmanager
    def _transaction(self, *, write: bool) -> Iterator[sqlite3.Connection]:
        if self.damage is not None:
            raise self.damage
        try:
            with self.database.transaction(write=write) as connection:
                yield connection
        except StoreDamaged as exc:
            self.damage = StoreDamaged(
                f"{exc.message}; everything that depends on it is refused until the "
                "endpoint is restarted with a repaired state (albatross-audit check-state)"
            )
            log.error("%s", self.damage.message)
            raise self.damage from None

    async def call(self, function: Callable[..., T], *args: object) -> T:
        """``function(*args)`` (a method of this store) in a worker thread: never on the loop."""
        return await self.database.call(function, *args)

    # -- replay ---------------------------------------------------------------------------

    def leaf_used(self, key: str) -> bool:
        """Whether a leaf with this :func:`replay.replay_key` already ran (a read)."""
        with self._transaction(write=False) as connection:
            return _used(connection, key)

    def record_leaf(self, record: LeafRecord, now: int) -> None:
        """Check and record *record* durably, or raise ReplayRefusal / StoreError.

        *now* (POSIX seconds, the connection's time) decides which records expired.
        """
        self.faults.point("before-record")
        with self._transaction(write=True) as connection:
            if _used(connection, record.key):
                raise replay.already_used(record)
            _purge_expired(connection, now)
            owner_live, all_live = _live(connection, record.owner), _live(connection, _ALL)
            replay.check_room(record, owner_live, all_live, self.replay_bounds)
            _insert_leaf(connection, record.key, record.not_after, record.owner)
        self.faults.point("after-record")

    # -- anti-rollback ----------------------------------------------------------------------

    def seen(self, paths: Iterable[str]) -> dict[str, Seen]:
        """The records for *paths* (a read)."""
        with self._transaction(write=False) as connection:
            return _seen(connection, list(paths))

    def all_seen(self) -> dict[str, Seen]:
        """The whole table (for explain)."""
        with self._transaction(write=False) as connection:
            return _seen(connection, None)

    def record_delegations(self, found: Sequence[Delegation], now: int) -> bool:
        """Check *found* against the table and record newer ones; False if one had no room.

        Raises :class:`rollback.RollbackRefusal` (after writing what precedes it) or
        StoreError.  The usual case - every delegation already known - only reads.
        """
        if not found:
            return True
        paths = [str(d.path) for d in found]
        decided = rollback.plan(found, self.seen(paths))
        complete = True
        if decided.writes:
            with self._transaction(write=True) as connection:
                decided = rollback.plan(found, _seen(connection, paths))  # the latest state
                for path, record in decided.writes:
                    if path in decided.new_paths and not _make_room(
                        connection, self.rollback_max, now
                    ):
                        complete = False
                        continue
                    _write_seen(connection, path, record)
        if decided.refusal is not None:
            raise decided.refusal
        return complete

    # -- migration -------------------------------------------------------------------------

    def import_records(
        self, leaves: Iterable[tuple[str, int, str]], paths: dict[str, Seen]
    ) -> None:
        """Add records from the old state files in one transaction (idempotent)."""
        with self._transaction(write=True) as connection:
            for key, not_after, owner in leaves:
                if not _used(connection, key):
                    _insert_leaf(connection, key, not_after, owner)
            have = _seen(connection, list(paths))
            for path, record in paths.items():
                old = have.get(path)
                if old is not None and old.order > record.order:
                    continue
                if old is not None and old.order == record.order:
                    record = Seen(record.not_before, record.serial,
                                  max(record.hold_until, old.hold_until))  # fmt: skip
                _write_seen(connection, path, record)


def _write_seen(connection: sqlite3.Connection, path: str, record: Seen) -> None:
    """Store *record* as the newest delegation seen at *path* (with its row checksum)."""
    connection.execute(
        "INSERT OR REPLACE INTO rollback (path, not_before, serial, hold_until, checksum)"
        " VALUES (?, ?, ?, ?, ?)",
        (path, record.not_before, f"{record.serial:x}", record.hold_until,
         rollback_checksum(path, record)),
    )  # fmt: skip


_ALL = ""  # replay_counts: the row of all owners (an owner is never empty: "-" for the root)


def _live(connection: sqlite3.Connection, owner: str) -> int:
    row = connection.execute("SELECT live FROM replay_counts WHERE owner = ?", (owner,)).fetchone()
    return 0 if row is None else int(row[0])


def _add_live(connection: sqlite3.Connection, owner: str, change: int) -> None:
    if change > 0:
        connection.execute(
            "INSERT INTO replay_counts (owner, live) VALUES (?, ?)"
            " ON CONFLICT (owner) DO UPDATE SET live = live + excluded.live",
            (owner, change),
        )
        return
    connection.execute(
        "UPDATE replay_counts SET live = live + ? WHERE owner = ?", (change, owner)
    )  # below zero: the CHECK constraint fails (a damaged count), the transaction goes
    connection.execute("DELETE FROM replay_counts WHERE owner = ? AND live = 0", (owner,))


def _insert_leaf(connection: sqlite3.Connection, key: str, not_after: int, owner: str) -> None:
    connection.execute(
        "INSERT INTO replay (key, not_after, owner, checksum) VALUES (?, ?, ?, ?)",
        (key, not_after, owner, replay_checksum(key, not_after, owner)),
    )
    _add_live(connection, owner, 1)
    _add_live(connection, _ALL, 1)


def _purge_expired(connection: sqlite3.Connection, now: int) -> None:
    """Records whose leaf expired go (an expired leaf is refused by TLS anyway)."""
    expired = connection.execute(
        "SELECT owner, count(*) FROM replay WHERE not_after <= ? GROUP BY owner", (now,)
    ).fetchall()
    if not expired:
        return
    for owner, count in expired:
        _add_live(connection, owner, -count)
    _add_live(connection, _ALL, -sum(count for _, count in expired))
    connection.execute("DELETE FROM replay WHERE not_after <= ?", (now,))


def _count_problems(connection: sqlite3.Connection) -> list[str]:
    """The kept counts must be what the records say."""
    actual = dict(connection.execute("SELECT owner, count(*) FROM replay GROUP BY owner"))
    if actual:
        actual[_ALL] = sum(actual.values())
    kept = dict(connection.execute("SELECT owner, live FROM replay_counts"))
    return [
        f"replay count of {owner or 'all owners'!r}: kept {kept.get(owner, 0)}, "
        f"the records say {actual.get(owner, 0)}"
        for owner in sorted(set(actual) | set(kept))
        if kept.get(owner) != actual.get(owner)
    ]


def _damaged(what: str) -> StoreDamaged:
    return StoreDamaged(f"the security state is damaged: {what} does not match its checksum")


def _used(connection: sqlite3.Connection, key: str) -> bool:
    row = connection.execute(
        "SELECT not_after, owner, checksum FROM replay WHERE key = ?", (key,)
    ).fetchone()
    if row is None:
        return False
    if _replay_row_problem(key, *row):
        raise _damaged(f"the replay record {key}")
    return True


def _seen(connection: sqlite3.Connection, paths: list[str] | None) -> dict[str, Seen]:
    query = "SELECT path, not_before, serial, hold_until, checksum FROM rollback"
    if paths is None:
        rows = connection.execute(query).fetchall()
    else:
        marks = ", ".join("?" * len(paths))
        rows = connection.execute(f"{query} WHERE path IN ({marks})", paths).fetchall()
    found: dict[str, Seen] = {}
    for path, not_before, serial, hold, checksum in rows:
        if _rollback_row_problem(path, not_before, serial, hold, checksum):
            raise _damaged(f"the anti-rollback record of {path}")
        found[path] = Seen(not_before, int(serial, 16), hold)
    return found


def _make_room(connection: sqlite3.Connection, limit: int, now: int) -> bool:
    """Room for one more path: expired records go when the table is full."""
    (count,) = connection.execute("SELECT count(*) FROM rollback").fetchone()
    if count < limit:
        return True
    connection.execute("DELETE FROM rollback WHERE hold_until < ?", (now,))
    (count,) = connection.execute("SELECT count(*) FROM rollback").fetchone()
    return bool(count < limit)


def _replay_row_problem(key: object, not_after: object, owner: object, checksum: object) -> str:
    """Why a replay row is not one we wrote ("" if it is): the checksum first (fast)."""
    if (
        isinstance(key, str)
        and isinstance(not_after, int)
        and isinstance(owner, str)
        and checksum == replay_checksum(key, not_after, owner)
    ):
        return ""
    where = f"replay record {key!r}"
    if not (isinstance(key, str) and _KEY.fullmatch(key)):
        return f"{where}: the key is not issuer-hash:serial"
    if not (isinstance(not_after, int) and not_after >= 0):
        return f"{where}: the expiry {not_after!r} is not a time"
    if not (isinstance(owner, str) and _OWNER.fullmatch(owner)):
        return f"{where}: the owner {owner!r} is not a delegation name"
    return f"{where}: does not match its checksum"


def _rollback_row_problem(
    path: object, not_before: object, serial: object, hold: object, checksum: object
) -> str:
    """Why an anti-rollback row is not one we wrote ("" if it is)."""
    where = f"anti-rollback record {path!r}"
    if not (isinstance(path, str) and _PATH.fullmatch(path)):
        return f"{where}: the path is not a delegation path"
    if not (isinstance(serial, str) and _SERIAL.fullmatch(serial)):
        return f"{where}: the serial {serial!r} is not hexadecimal"
    if not (isinstance(not_before, int) and isinstance(hold, int) and 0 <= not_before <= hold):
        return f"{where}: the times {not_before!r}, {hold!r} are not in order"
    if checksum != rollback_checksum(path, Seen(not_before, int(serial, 16), hold)):
        return f"{where}: does not match its checksum"
    return ""
