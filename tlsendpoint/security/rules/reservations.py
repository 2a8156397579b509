# Reservations: concurrent requests cannot slip past the quota check (issue 6 point 1).
#
# Two connections that read the daemon's usage at the same time would both see
# room for one more unikernel.  So a granted request is *reserved*: the check
# and the reservation are one synchronous step (no await between them, plus a
# lock for threads), and the reservation is held until the daemon has replied.
# A released reservation still counts for every usage snapshot taken *before*
# its release, since such a snapshot may predate the daemon's change; epochs
# order snapshots and releases.  Size is bounded by the open connections.
# Pure: no I/O, no clock.
from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

from core.wire import Name, Policy
from tlsendpoint.security.rules.quota import Demand, Usage, check_usage

__all__ = ["Reservation", "Reservations"]


@dataclass(frozen=True, slots=True)
class Reservation:
    """A granted demand, held until the daemon has replied (:meth:`Reservations.release`)."""

    ident: int
    target: Name
    demand: Demand


class Reservations:
    """In-flight demands, so two requests checked against the same snapshot cannot both pass.

    Per connection: ``snap = book.snapshot()`` *before* asking the daemon for
    usage; ``res = book.reserve(snap, ...)`` checks and reserves in one step (no
    await inside); send the command; after the daemon's reply or any error
    ``book.release(res)``; finally ``book.done(snap)`` (use ``try/finally``).

    A reservation counts while active, and after its release for every snapshot
    taken *before* the release (that snapshot may predate the daemon's change).
    Size is bounded by the number of open connections.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._epoch = 0
        self._next = 0
        self._active: dict[int, Reservation] = {}
        self._released: list[tuple[int, Reservation]] = []  # (epoch of release, reservation)
        self._open: dict[int, int] = {}  # snapshot epoch -> open count

    def snapshot(self) -> int:
        with self._lock:
            self._epoch += 1
            self._open[self._epoch] = 1
            return self._epoch

    def in_flight(self, snapshot: int) -> list[tuple[Name, Demand]]:
        """What counts on top of a usage snapshot taken at *snapshot*."""
        with self._lock:
            return self._in_flight(snapshot)

    def _in_flight(self, snapshot: int) -> list[tuple[Name, Demand]]:
        found = [*self._active.values(), *(r for e, r in self._released if e > snapshot)]
        return [(r.target, r.demand) for r in found]

    def reserve(
        self,
        snapshot: int,
        policies: Sequence[tuple[Name, Policy]],
        root: Policy | None,
        usage: Usage,
        target: Name,
        demand: Demand,
    ) -> Reservation:
        """Check *demand* at *target* with all in flight, then reserve it; raises QuotaError."""
        with self._lock:
            check_usage(policies, root, usage, demand, self._in_flight(snapshot))
            self._next += 1
            reservation = Reservation(self._next, target, demand)
            self._active[reservation.ident] = reservation
            return reservation

    def release(self, reservation: Reservation) -> None:
        with self._lock:
            if self._active.pop(reservation.ident, None) is not None:
                self._epoch += 1
                self._released.append((self._epoch, reservation))
            self._prune()

    def done(self, snapshot: int) -> None:
        with self._lock:
            self._open.pop(snapshot, None)
            self._prune()

    def _prune(self) -> None:
        oldest = min(self._open, default=self._epoch + 1)
        self._released = [(e, r) for e, r in self._released if e > oldest]

    def __len__(self) -> int:
        with self._lock:
            return len(self._active) + len(self._released)
