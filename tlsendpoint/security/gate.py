# One connection's way through the security checks of issue 6 (the endpoint's only entry).
#
# The endpoint calls three methods, each from one place (tlsendpoint/server.py):
#
#   gate = Gate(security, peer, query, now)    # after accept
#   request = await gate.authorize(chain)      # replaces authorize(chain)
#   payload = await gate.serve(request, run)   # run: serve_request, given admit=...
#   await gate.close(outcome, duration)        # once, whatever happened: the audit record
#
# The rules are pure functions (rules/), the state is the process's (process.Security:
# the record store, the CRL directory, the audit log, the quota guard); the gate applies
# the one to the other for one connection, awaiting every store call in a worker thread
# and every daemon query (daemonquery.py) under its deadline.  So it may import all of
# those, the protocol core and trio; only the endpoint (server.py) imports the gate.
#
# authorize() runs: CRL directory refresh, authorize, the name rule, revocation and
# anti-rollback (a store call, in a worker thread), reads the chain's reproducible-build
# pins (rules/pins.py), then takes a CRL the leaf hands in.
# Any refusal becomes a :class:`Refusal` (the endpoint answers Failure with that text,
# header ``:``), so the endpoint's existing refusal path serves it.
#
# serve() refuses a stats subscription that would reach the parent's unikernel
# (rules/naming.check_stats_path, one daemon query) and a state-changing leaf that already ran
# (a read, so a replayed create is refused before its upload), then runs the command.
# A restart under digest pins asks vmmd for the digest of the image that would run again
# (one daemon query) and refuses one the pins do not list.
# The command enters the gate again through *admit*, once it is ready for its daemon
# (after the client's upload, before connecting), in this order:
#
#   0. a create under digest pins: the image's digest (hashed in a worker thread), every
#      pinning hop must list it;
#   1. the quota guard: the host-wide lock (several processes), the usage query, the
#      check and the reservation, held until the daemon's reply;
#   2. the replay record, committed to disk - record before act: if it cannot be
#      written (full disk, read-only, damaged store) the command is refused with the
#      reason and nothing reaches the daemon;
#   3. the allow decision, written (and with --audit-fsync synced) to the audit log -
#      the audit log fails closed: if it cannot be written the command is refused with
#      the reason and nothing reaches the daemon;
#   4. the command goes to the daemon (decision "allow" from here on).
#
# close() writes the allow's outcome, or the deny/error decision.  Audit writes run in a
# worker thread under a deadline (state/auditlog.append_async).
#
# A request refused for another reason before step 2 keeps its leaf (a quota refusal:
# the delegate may free resources and present the same leaf again).  From step 2 on the
# leaf is used, even if the daemon is unreachable or refuses: the endpoint cannot know
# whether a command it sent ran, and a crash there must not let the leaf run twice.
#
# Only the leaf of a state-changing command is kept after authorize(): the
# endpoint drops the parsed chain so a long subscription does not hold it.
from __future__ import annotations

import datetime as dt
import logging
from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import asynccontextmanager
from typing import Protocol

import trio
from cryptography import x509

from core.authorize import Refusal, Request, authorize
from core.errors import AlbatrossError
from core.wire import (
    Command,
    Failure,
    Payload,
    Typ,
    UnikernelCreate,
    UnikernelInfo,
    UnikernelInfoList,
    UnikernelRestart,
)
from durable.database import StoreError
from tlsendpoint.security import SecurityRefusal
from tlsendpoint.security.daemonquery import Query, host_unikernels
from tlsendpoint.security.process import Security
from tlsendpoint.security.rules.auditformat import (
    AuditError,
    AuditRecord,
    OutcomeRecord,
    chain_summary,
    command_summary,
)
from tlsendpoint.security.rules.naming import (
    check_object_name,
    check_stats_path,
    filter_listing,
    parents_object,
)
from tlsendpoint.security.rules.pins import (
    Hop,
    PinRefusal,
    chain_pins,
    check_digest,
    image_digest,
    pins_digests,
)
from tlsendpoint.security.rules.replay import (
    already_used,
    is_state_changing,
    leaf_record,
    owner_of,
)
from tlsendpoint.security.rules.revocation import submitted_crl
from tlsendpoint.security.rules.rollback import delegations
from tlsendpoint.security.state.auditlog import append_async
from tlsendpoint.session import Admit

__all__ = ["ALLOW", "DENY", "ERROR", "Gate", "Run"]

# Under the "albatross" logger the endpoint configures (stderr, syslog, journal or none).
log = logging.getLogger("albatross.security")

#: Images hashed at once for digest pins (per process): worker threads of their own, so
#: that hashing never holds the threads the audit log and the store write through.
HASHING_THREADS = 2
_HASHING: trio.lowlevel.RunVar[trio.CapacityLimiter] = trio.lowlevel.RunVar("hashing")


def _hashing_limiter() -> trio.CapacityLimiter:
    try:
        return _HASHING.get()
    except LookupError:
        limiter = trio.CapacityLimiter(HASHING_THREADS)
        _HASHING.set(limiter)
        return limiter


#: Audit decisions: the endpoint forwarded the command (whatever the daemon then said) ...
ALLOW = "allow"
#: ... the endpoint refused it (authorisation or a security rule; the reason is the Failure) ...
DENY = "deny"
#: ... or no decision was reached (handshake failed, connection broken, internal error).
ERROR = "error"


class Run(Protocol):
    """The command's way to its daemon (``serve_request``), entering *admit* when ready."""

    def __call__(self, *, admit: Admit) -> Awaitable[Payload]: ...


class Gate:
    """The security decisions for one connection, from the verified chain to the audit line."""

    def __init__(self, security: Security, peer: str, query: Query, now: dt.datetime) -> None:
        self.security = security
        self.peer = peer
        self.query = query
        self.now = now  # the connection's time: rollback and replay records are kept by it
        self.chain: list[dict[str, str]] = []  # the audit's summary, not the certificates
        self.request: Request | None = None
        self.decision = ERROR
        self.reason: str | None = None
        self.refusal: AlbatrossError | None = None  # serve()'s refusal, for the metrics
        self._leaf: x509.Certificate | None = None  # kept only for the replay record
        self._allowed: int | None = None  # seq of the audit log's allow record
        self._pins: tuple[Hop, ...] = ()  # the chain's digest pins, top-down
        try:
            self._started = trio.current_time()
        except RuntimeError:  # built outside trio (a test): durations count from 0
            self._started = 0.0

    def _deny(self, reason: str) -> str:
        self.decision, self.reason = DENY, reason
        return reason

    async def authorize(self, chain: Sequence[x509.Certificate]) -> Request:
        """:func:`authorize` plus the chain rules; raises :class:`Refusal` with the reply text."""
        security = self.security
        if security.audit_log is not None:
            self.chain = chain_summary(chain)
        security.refresh()
        try:
            request = authorize(chain)
            self.request = request
            check_object_name(request)
            if security.crls is not None:
                security.crls.check(chain)
            await self._check_rollback(chain)
            hops = chain_pins(chain)
            self._pins = hops if pins_digests(hops) else ()
            self._accept_crl(chain)
        except Refusal as refusal:
            self._deny(refusal.message)
            raise
        except SecurityRefusal as refusal:
            raise Refusal(self._deny(refusal.message)) from refusal
        except AlbatrossError as exc:  # the state could not be read or written: fail closed
            log.error("%s: security state: %s", self.peer, exc.message)
            reason = f"the endpoint cannot check this request: {exc.message}"
            raise Refusal(self._deny(reason)) from exc
        if is_state_changing(request.command):
            self._leaf = chain[0]
        return request

    async def serve(self, request: Request, run: Run) -> Payload:
        """Checks around *run* (see the module comment); listings filtered.

        A refusal is returned as a Failure payload (the reply carries the request's
        header, as any failure of the command would).
        """
        try:
            if parents_object(request) is not None:  # the stats path rule needs the host's names
                check_stats_path(request, await host_unikernels(self.query))
            if self._leaf is not None:
                await self._refuse_used_leaf(self._leaf, request)
            if self._pins and isinstance(request.command, UnikernelRestart):
                await self._check_running_image(request)
            payload = await run(admit=lambda command: self._admit(request, command))
        except SecurityRefusal as refusal:
            self.refusal = refusal
            return Failure(self._deny(refusal.message))
        except AlbatrossError as exc:
            if self.decision == ALLOW:  # from run(): the endpoint's own handling applies
                raise
            self.refusal = exc
            log.error("%s: security state: %s", self.peer, exc.message)
            return Failure(self._deny(f"the endpoint cannot check this request: {exc.message}"))
        return filter_listing(request.name, payload)  # no parent's object at a delegate's path

    # -- the chain rules on the process's state ---------------------------------------

    async def _check_rollback(self, chain: Sequence[x509.Certificate]) -> None:
        """Anti-rollback: refuse an older delegation, record newer ones (worker thread)."""
        store = self.security.store
        found = delegations(chain)
        if found and not await store.call(
            store.record_delegations, found, int(self.now.timestamp())
        ):
            log.warning("anti-rollback table full: a new delegation path was not recorded")

    def _accept_crl(self, chain: Sequence[x509.Certificate]) -> None:
        """Install the CRL the leaf carries, if any; SecurityRefusal if not acceptable."""
        data = submitted_crl(chain[0])
        if data is None:
            return
        if self.security.crls is None:
            raise SecurityRefusal("this endpoint does not accept CRLs (no CRL directory)")
        stored = self.security.crls.accept_submitted(chain, data)
        log.info("%s: installed the CRL handed in as %s", self.peer, stored.name)

    async def _refuse_used_leaf(self, leaf: x509.Certificate, request: Request) -> None:
        """Refuse now a leaf that already ran (a read; the record itself comes later)."""
        store = self.security.store
        record = leaf_record(leaf, owner_of(request.name))
        if await store.call(store.leaf_used, record.key):
            raise already_used(record)

    async def _check_running_image(self, request: Request) -> None:
        """A restart runs vmmd's image again: its digest must be pinned too (one query)."""
        try:
            info = await self.query(request.name, UnikernelInfo())
        except SecurityRefusal as exc:  # vmmd unreachable or silent: say what was asked for
            raise PinRefusal(f"cannot check the pins of the running image: {exc.message}") from exc
        if not isinstance(info, UnikernelInfoList):
            detail = info.message if isinstance(info, Failure) else type(info).__name__
            raise PinRefusal(f"cannot check the pins: vmmd answered unikernel info with {detail}")
        for name, unikernel in info.unikernels:
            if name == request.name:
                if unikernel.typ is not Typ.SOLO5:  # its digest field is a bhyve VM name
                    raise PinRefusal(
                        f"{name} is a {unikernel.typ.name.lower()} unikernel: a pinned"
                        " delegation restarts only solo5 images, whose digest vmmd reports"
                    )
                check_digest(self._pins, unikernel.digest, f"the image of {name}")
                return
        # not running: vmmd answers the restart itself ("not found"), nothing runs

    async def _check_image(self, command: Command) -> None:
        """A create under digest pins: the image's digest must be listed by every hop."""
        if self._pins and isinstance(command, UnikernelCreate):
            # its own two threads: hashing up to 1 GiB must not take the audit log's
            digest = await trio.to_thread.run_sync(
                image_digest, command.config, limiter=_hashing_limiter()
            )
            check_digest(self._pins, digest)

    @asynccontextmanager
    async def _admit(self, request: Request, command: Command) -> AsyncIterator[None]:
        """Pins, then quota guard, then the durable replay record, around the daemon's part."""
        await self._check_image(command)
        async with self.security.quota.guard(request, self.query):
            if self._leaf is not None:
                leaf, self._leaf = self._leaf, None
                store = self.security.store
                record = leaf_record(leaf, owner_of(request.name))
                try:  # durably, in a worker thread; ReplayRefusal if it ran meanwhile
                    await store.call(store.record_leaf, record, int(self.now.timestamp()))
                except StoreError as exc:
                    log.error("%s: cannot record the leaf: %s", self.peer, exc.message)
                    raise SecurityRefusal(
                        "the endpoint cannot record this leaf before running its command, "
                        f"so nothing was sent to the daemon: {exc.message}"
                    ) from None
            await self._record_allow(request)
            self.decision = ALLOW
            yield
            self.security.store.faults.point("after-reply")

    async def _record_allow(self, request: Request) -> None:
        """The allow decision, written (and synced) before the command may run."""
        log_file = self.security.audit_log
        if log_file is None:
            return
        record = AuditRecord(
            self.now,
            self.peer,
            self.chain,
            str(request.name),
            command_summary(request.command),
            ALLOW,
            "",
            trio.current_time() - self._started,
        )
        try:
            self._allowed = (await append_async(log_file, record)).seq
        except AuditError as exc:
            log.error("%s: audit log: %s; the command was refused", self.peer, exc.message)
            raise SecurityRefusal(
                f"the endpoint cannot record this request in its audit log, so it did not run "
                f"it: {exc.message}"
            ) from exc

    async def close(self, outcome: str, duration: float) -> str | None:
        """The audit record of the connection's end (if enabled); returns the log's new head.

        After an allow: its outcome; otherwise the deny or error decision.
        """
        log_file = self.security.audit_log
        if log_file is None:
            return None
        request = self.request
        record: AuditRecord | OutcomeRecord
        if self._allowed is not None:
            record = OutcomeRecord(self.now, self.peer, self._allowed, outcome, duration)
        else:
            record = AuditRecord(
                self.now,
                self.peer,
                self.chain,
                None if request is None else str(request.name),
                None if request is None else command_summary(request.command),
                self.decision,
                self.reason if self.decision == DENY and self.reason else outcome,
                duration,
            )
        try:
            return (await append_async(log_file, record)).head
        except AlbatrossError as exc:
            log.error("%s: audit log: %s", self.peer, exc.message)
            return None
