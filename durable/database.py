# One SQLite database file, crash-safe and shared by every endpoint process (issue 11).
#
# Why SQLite: atomic, durable transactions shared by several processes, and damage
# detection (integrity_check), from the standard library; the hand-written journal and
# JSON file it replaces each re-implemented a part of that, with holes.
#
# Durability: WAL journal with synchronous=FULL, so a transaction is on disk (the WAL
# fsync'd) when COMMIT returns.  A crash (SIGKILL, power cut) loses at most the
# transaction in progress, never an earlier one, and never leaves half a record.
#
# Creation is atomic: the schema is written to a temporary file, which is then linked to
# the path and the directory fsync'd.  So a file at the path always holds a complete
# schema, and an empty, foreign or newer file is damage - never silently re-initialised.
# After start the file is only ever opened, never created (mode=rw).
#
# Processes: every process (a --workers worker forked after start, an inetd child) opens
# its own connection on first use.  A connection inherited through fork is never used nor
# closed in the child (SQLite forbids both); start-up closes its connection before forking.
# Writers wait for each other at most ``busy_timeout``; readers never wait (WAL).
#
# The event loop: :meth:`Database.call` runs a function that uses the database in a worker
# thread, one at a time per process (the connection is not used by two threads at once),
# so a slow disk or a busy wait never blocks the loop.  Start-up and offline tools call
# the synchronous API directly.
#
# Failures become StoreError subclasses whose message names the file and the cause
# (damaged, cannot be written - full, read-only, I/O error -, locked, cannot be opened);
# callers fail closed with that text.
from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import trio

from core.errors import AlbatrossError
from durable.files import sync_directory

__all__ = [
    "BUSY_TIMEOUT",
    "Database",
    "Schema",
    "StoreBusy",
    "StoreDamaged",
    "StoreError",
    "StoreUnwritable",
]

T = TypeVar("T")

#: How long a writer waits for another process's transaction before giving up (seconds).
BUSY_TIMEOUT = 10.0

# Connections inherited through fork: kept referenced so the child never closes them.
_INHERITED: list[sqlite3.Connection] = []


class StoreError(AlbatrossError):
    """The state store cannot be used; ``message`` names the file and the cause."""

    exit_code = 125


class StoreDamaged(StoreError):
    """The file is not an intact store of ours (SQLite found damage, or our checks did)."""


class StoreUnwritable(StoreError):
    """A write failed: full disk, read-only file or file system, I/O error."""


class StoreBusy(StoreError):
    """Another process held the database locked for longer than the busy timeout."""


@dataclass(frozen=True, slots=True)
class Schema:
    """What a store file holds: who it belongs to, its version, the statements creating it."""

    what: str  # for messages: "security state"
    application_id: int  # PRAGMA application_id: tells our file from any other SQLite file
    version: int  # PRAGMA user_version
    statements: tuple[str, ...]


def _file_system_hint(directory: Path) -> str:
    """Why writes under *directory* may fail, as far as the system tells (or "")."""
    try:
        info = os.statvfs(directory)
    except OSError as exc:
        return f"; {directory}: {exc.strerror}"
    if info.f_flag & os.ST_RDONLY:
        return f"; {directory} is on a read-only file system"
    if info.f_bavail == 0 or info.f_favail == 0:
        return f"; the file system of {directory} is full"
    if not os.access(directory, os.W_OK):
        return f"; {directory} is not writable for this user"
    return ""


def classify(exc: sqlite3.Error, path: Path, what: str) -> StoreError:
    """Our error for a SQLite error on *path*, naming the cause."""
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    name = getattr(exc, "sqlite_errorname", "") or type(exc).__name__
    detail = f"{exc} ({name})"
    if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CONSTRAINT):
        # a constraint fails only when the stored values contradict each other
        return StoreDamaged(f"the {what} {path} is damaged: {detail}")
    if code in (sqlite3.SQLITE_FULL, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_IOERR):
        hint = _file_system_hint(path.parent)
        return StoreUnwritable(f"cannot write the {what} {path}: {detail}{hint}")
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return StoreBusy(f"the {what} {path} stayed locked by another process: {detail}")
    if code in (sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM):
        hint = _file_system_hint(path.parent)  # a read-only or full file system: unwritable
        error = StoreUnwritable if hint else StoreError
        return error(f"cannot open the {what} {path}: {detail}{hint}")
    return StoreError(f"the {what} {path} cannot be used: {detail}")


def _uri(path: Path, mode: str) -> str:
    return f"file:{urllib.parse.quote(str(path.absolute()))}?mode={mode}"


class Database:
    """One store file: atomic creation, per-process connections, transactions, a thread runner."""

    def __init__(self, path: Path, schema: Schema, *, busy_timeout: float = BUSY_TIMEOUT) -> None:
        self.path = path
        self.schema = schema
        self.busy_timeout = busy_timeout
        self._lock = threading.Lock()  # one thread at a time on this process's connection
        self._limiter = trio.CapacityLimiter(1)  # and one worker thread at a time per process
        self._connection: sqlite3.Connection | None = None
        self._pid = 0

    # -- start-up -------------------------------------------------------------------

    def create_or_open(self) -> bool:
        """Create the file if it does not exist (atomically), then check it is ours.

        Returns True if it was created.  Raises :class:`StoreError`.
        """
        created = False
        if not self.path.exists():
            created = self._create()
        self.open_existing()
        return created

    def open_existing(self) -> None:
        """Open the file (never creating it) and check it is ours; raises StoreError."""
        if not self.path.exists():
            raise StoreError(
                f"there is no {self.schema.what} at {self.path} (the endpoint creates it at start)"
            )
        with self._lock:
            self._verify_identity(self._connect())

    def _create(self) -> bool:
        directory = self.path.parent
        temporary = directory / f".{self.path.name}.new-{os.getpid()}"
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            temporary.unlink(missing_ok=True)
            os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            connection = sqlite3.connect(temporary, isolation_level=None)  # side files: 0600 too
            try:
                connection.execute("PRAGMA journal_mode=WAL")  # kept in the file
                connection.execute("BEGIN IMMEDIATE")
                for statement in self.schema.statements:
                    connection.execute(statement)
                connection.execute(f"PRAGMA application_id={self.schema.application_id:d}")
                connection.execute(f"PRAGMA user_version={self.schema.version:d}")
                connection.execute("COMMIT")
            finally:
                connection.close()  # checkpoints: the whole schema is in the file itself
            fd = os.open(temporary, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(temporary, self.path)  # never replaces a file another process made
                created = True
            except FileExistsError:
                created = False
            sync_directory(directory)
        except sqlite3.Error as exc:
            raise classify(exc, self.path, self.schema.what) from None
        except OSError as exc:
            hint = _file_system_hint(directory) if directory.is_dir() else ""
            raise StoreUnwritable(
                f"cannot create the {self.schema.what} {self.path}: {exc.strerror or exc}{hint}"
            ) from None
        finally:
            for leftover in (temporary, Path(f"{temporary}-wal"), Path(f"{temporary}-shm")):
                leftover.unlink(missing_ok=True)
        return created

    def _verify_identity(self, connection: sqlite3.Connection) -> None:
        what, path = self.schema.what, self.path
        try:
            if path.stat().st_size == 0:
                raise StoreDamaged(f"the {what} {path} is damaged: the file is empty")
            application_id = connection.execute("PRAGMA application_id").fetchone()[0]
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            if application_id != self.schema.application_id:
                raise StoreDamaged(
                    f"the {what} {path} is damaged: it is not an albatross-tls state file "
                    f"(SQLite application_id {application_id:#x})"
                )
            if version > self.schema.version:
                raise StoreError(
                    f"the {what} {path} was written by a newer version (format {version}, "
                    f"this endpoint knows {self.schema.version}): upgrade the endpoint"
                )
            if version < self.schema.version:
                raise StoreDamaged(f"the {what} {path} is damaged: unknown format {version}")
            mode = connection.execute("PRAGMA journal_mode").fetchone()[0]
            if str(mode).lower() != "wal":  # someone changed it: put it back
                connection.execute("PRAGMA journal_mode=WAL")
        except sqlite3.Error as exc:
            raise classify(exc, path, what) from None
        except OSError as exc:
            raise StoreError(f"cannot open the {what} {path}: {exc.strerror}") from None

    def integrity_problems(self) -> list[str]:
        """SQLite's own full check (``PRAGMA integrity_check``): [] when intact."""
        with self.transaction(write=False) as connection:
            rows = connection.execute("PRAGMA integrity_check").fetchall()
        found = [str(row[0]) for row in rows]
        return [] if found == ["ok"] else found

    def probe_write(self) -> None:
        """Take and release the write lock: fails now, at start, if writes cannot work."""
        with self.transaction(write=True):
            pass

    # -- connections ----------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        """This process's connection (opened on first use; never one inherited by fork)."""
        if self._connection is not None and self._pid == os.getpid():
            return self._connection
        if self._connection is not None:  # forked: SQLite forbids using or closing it here
            _INHERITED.append(self._connection)
            self._connection = None
        try:
            connection = sqlite3.connect(
                _uri(self.path, "rw"),
                uri=True,
                timeout=self.busy_timeout,
                isolation_level=None,  # we issue BEGIN / COMMIT ourselves
                check_same_thread=False,  # worker threads take turns (self._lock)
            )
        except sqlite3.Error as exc:
            raise classify(exc, self.path, self.schema.what) from None
        try:
            connection.execute("PRAGMA synchronous=FULL")
            connection.execute("PRAGMA cell_size_check=ON")
            connection.execute("PRAGMA trusted_schema=OFF")
        except sqlite3.Error as exc:
            connection.close()
            raise classify(exc, self.path, self.schema.what) from None
        self._connection, self._pid = connection, os.getpid()
        return connection

    def release(self) -> None:
        """Close this process's connection (before forking workers, and at shutdown)."""
        with self._lock:
            if self._connection is not None and self._pid == os.getpid():
                self._connection.close()
            elif self._connection is not None:
                _INHERITED.append(self._connection)
            self._connection = None

    @contextmanager
    def transaction(self, *, write: bool) -> Iterator[sqlite3.Connection]:
        """One transaction on this process's connection: committed, or rolled back on error.

        A write transaction takes the write lock at once (BEGIN IMMEDIATE), so its reads
        see the latest state and no other process writes in between.
        """
        with self._lock:
            connection = self._connect()
            try:
                connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                yield connection
                connection.execute("COMMIT")
            except sqlite3.Error as exc:
                _rollback(connection)
                raise classify(exc, self.path, self.schema.what) from None
            except BaseException:
                _rollback(connection)
                raise

    async def call(self, function: Callable[..., T], *args: object) -> T:
        """``function(*args)`` in a worker thread, one at a time per process."""
        return await trio.to_thread.run_sync(function, *args, limiter=self._limiter)


def _rollback(connection: sqlite3.Connection) -> None:
    if connection.in_transaction:  # SQLite may have rolled back already (SQLITE_FULL)
        with contextlib.suppress(sqlite3.Error):
            connection.execute("ROLLBACK")
