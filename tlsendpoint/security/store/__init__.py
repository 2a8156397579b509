"""The endpoint's crash-safe state (issue 11): one SQLite store and one host-wide lock.

* :mod:`.database` - a SQLite file: atomic creation, WAL with synchronous=FULL,
  per-process connections, transactions, a worker-thread runner, failures named;
* :mod:`.records` - the security records in it (replay, anti-rollback);
* :mod:`.legacy` - the previous format's files, migrated once at start;
* :mod:`.locks` - an flock shared by every endpoint process, waited for with a deadline;
* :mod:`.faults` - the crash tests' kill points (ALBATROSS_TLS_TEST_FAULTS).

``database`` and ``locks`` know nothing about security: other state (the CA toolkit's
files, say) can use them.
"""

from __future__ import annotations

from tlsendpoint.security.store.database import (
    BUSY_TIMEOUT,
    Database,
    Schema,
    StoreBusy,
    StoreDamaged,
    StoreError,
    StoreUnwritable,
)
from tlsendpoint.security.store.faults import FAULTS_ENV, NO_FAULTS, Faults
from tlsendpoint.security.store.locks import HostLock, LockTimeout
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
