"""The endpoint's crash-safe security state (issue 11), kept in a :mod:`durable` store.

* :mod:`.records` - the security records (replay, anti-rollback) in one SQLite file
  (:class:`durable.database.Database`);
* :mod:`.legacy` - the previous format's files, migrated once at start;
* :mod:`.faults` - the crash tests' kill points (ALBATROSS_TLS_TEST_FAULTS).

The generic parts (the database file, the host-wide lock, atomic files) live in
:mod:`durable`; their names are re-exported here for the security package's callers.
"""

from __future__ import annotations

from durable.database import (
    BUSY_TIMEOUT,
    Database,
    Schema,
    StoreBusy,
    StoreDamaged,
    StoreError,
    StoreUnwritable,
)
from durable.locks import HostLock, LockTimeout
from tlsendpoint.security.store.faults import FAULTS_ENV, NO_FAULTS, Faults
from tlsendpoint.security.store.records import STORE_FILE, Counts, SecurityStore

__all__ = [
    "BUSY_TIMEOUT",
    "FAULTS_ENV",
    "NO_FAULTS",
    "STORE_FILE",
    "Counts",
    "Database",
    "Faults",
    "HostLock",
    "LockTimeout",
    "Schema",
    "SecurityStore",
    "StoreBusy",
    "StoreDamaged",
    "StoreError",
    "StoreUnwritable",
]
