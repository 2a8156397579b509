# The quota guard: a resource-adding request checked against every ancestor and the
# host, and held until the daemon has replied (issue 6 points 1 and 2).
#
# The rules are pure (rules/quota.py: the check; rules/reservations.py: requests in
# flight); this module feeds them the daemon's usage (daemonquery.py) and holds what it
# granted.  The guard holds a reservation from the check until the daemon's reply, so
# concurrent creates cannot slip past; with several processes (--workers, inetd, socket
# activation) it also holds the host-wide quota lock (store/locks.py) for that time -
# and only that time: the gate enters the guard after the client's upload
# (session.serve_request's admit), so a slow uploader stalls nobody.  Waiting for the
# lock ends after its deadline with a refusal that says so (fail closed).
#
# Imports: the quota rules, the daemon queries and the host lock (store/locks.py); no
# state store, not the per-process Security (which holds one guard) nor the gate.
from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from core.authorize import Request
from durable.database import StoreError
from durable.locks import HostLock, LockTimeout
from tlsendpoint.security import SecurityRefusal
from tlsendpoint.security.daemonquery import QUERY_TIMEOUT, Query, host_usage
from tlsendpoint.security.rules.quota import check_delegations, demand_of
from tlsendpoint.security.rules.reservations import Reservation, Reservations

__all__ = ["QuotaGuard"]

# Under the "albatross" logger the endpoint configures (stderr, syslog, journal or none).
log = logging.getLogger("albatross.security")


class QuotaGuard:
    """Ancestor and host quotas with reservations (:mod:`.rules.quota`), fed by daemon queries.

    Reservations live in this process.  When several endpoint processes serve one
    host (*lock* given: --workers, inetd, socket activation), a resource-adding
    request also holds the host-wide *lock* from the usage query until the daemon's
    reply, so such requests run one at a time across the processes; waiting for it
    ends after *lock_timeout* seconds with a refusal that says so.
    """

    def __init__(self, lock: HostLock | None = None, lock_timeout: float = QUERY_TIMEOUT) -> None:
        self.book = Reservations()
        self.lock = lock
        self.lock_timeout = lock_timeout

    @asynccontextmanager
    async def _across_processes(self) -> AsyncIterator[None]:
        if self.lock is None:
            yield
            return
        held = False
        try:
            async with self.lock.hold(self.lock_timeout):
                held = True
                yield
        except StoreError as exc:  # LockTimeout, or the lock file cannot be opened
            if held:
                raise
            if isinstance(exc, LockTimeout):
                log.warning("quota check: %s", exc.message)
            raise SecurityRefusal(f"cannot check quotas: {exc.message}") from None

    @asynccontextmanager
    async def guard(self, request: Request, query: Query) -> AsyncIterator[Reservation | None]:
        """Check *request* against every ancestor and the host; hold it until the block exits.

        Yields None for commands that add no resources (no daemon queries then).
        """
        demand = demand_of(request.name, request.command)
        if demand is None:
            yield None
            return
        async with self._across_processes():
            snapshot = self.book.snapshot()
            try:
                root, usage = await host_usage(query)
                check_delegations(request.policies)
                held = self.book.reserve(
                    snapshot, request.policies, root, usage, request.name, demand
                )
                try:
                    yield held
                finally:
                    self.book.release(held)
            finally:
                self.book.done(snapshot)
