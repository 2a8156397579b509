"""Crash-safe files for any state: one SQLite database file and one host-wide lock (issue 11).

* :mod:`.database` - a SQLite file: atomic creation, WAL with synchronous=FULL,
  per-process connections, transactions, a worker-thread runner, failures named;
* :mod:`.locks` - an flock shared by every endpoint process, waited for with a deadline.

They know nothing about security (what the endpoint keeps in them is in
:mod:`tlsendpoint.security.state`): other state, the CA toolkit's files say, can use them.
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
from tlsendpoint.security.store.locks import HostLock, LockTimeout

__all__ = [
    "BUSY_TIMEOUT",
    "Database",
    "HostLock",
    "LockTimeout",
    "Schema",
    "StoreBusy",
    "StoreDamaged",
    "StoreError",
    "StoreUnwritable",
]
