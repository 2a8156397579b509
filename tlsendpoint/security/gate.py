# One connection's way through the security checks of issue 6 (the endpoint's only entry).
#
# The endpoint calls three methods, each from one place (tlsendpoint/server.py):
#
#   gate = security.gate(peer, query, now)     # after accept
#   request = gate.authorize(chain)            # replaces authorize(chain)
#   payload = await gate.serve(request, run)   # wraps serve_request
#   await gate.close(outcome, duration)        # once, whatever happened: the audit record
#
# authorize() runs, in hooks.py's order: CRL directory refresh, authorize, the
# name rule, revocation and anti-rollback, then takes a CRL the leaf hands in.
# Any refusal becomes a :class:`Refusal` (the endpoint answers Failure with
# that text, header ``:``), so the endpoint's existing refusal path serves it.
# serve() refuses a stats subscription that would reach the parent's unikernel
# (naming.check_stats_path, one daemon query), holds the quota reservation from
# the check until the daemon's reply
# (concurrent creates cannot slip past), records the leaf for replay protection
# last (a request refused for another reason keeps its leaf), records the
# allow decision in the audit log - before the command runs, refusing it when
# the record cannot be written (issue 11: the audit log fails closed) - runs
# the command and filters listings; its refusals come back as a Failure payload.
# close() writes the allow's outcome, or the deny/error decision.  Audit writes
# run in a worker thread under a deadline (audit.append_async).
#
# Only the leaf of a state-changing command is kept after authorize(): the
# endpoint drops the parsed chain so a long subscription does not hold it.
from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Sequence

import trio
from cryptography import x509

from tlsendpoint.authorize import Refusal, Request, authorize
from tlsendpoint.errors import AlbatrossError
from tlsendpoint.security import SecurityRefusal
from tlsendpoint.security.audit import (
    AuditError,
    AuditRecord,
    OutcomeRecord,
    append_async,
    chain_summary,
    command_summary,
)
from tlsendpoint.security.hooks import Query, Security
from tlsendpoint.security.replay import is_state_changing
from tlsendpoint.wire import Failure, Payload

__all__ = ["ALLOW", "DENY", "ERROR", "Gate"]

# Under the "albatross" logger the endpoint configures (stderr, syslog, journal or none).
log = logging.getLogger("albatross.security")

#: Audit decisions: the endpoint forwarded the command (whatever the daemon then said) ...
ALLOW = "allow"
#: ... the endpoint refused it (authorisation or a security rule; the reason is the Failure) ...
DENY = "deny"
#: ... or no decision was reached (handshake failed, connection broken, internal error).
ERROR = "error"


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
        self._leaf: x509.Certificate | None = None  # kept only for the replay record
        self._allowed: int | None = None  # seq of the audit log's allow record
        try:
            self._started = trio.current_time()
        except RuntimeError:  # built outside trio (a test): durations count from 0
            self._started = 0.0

    def _deny(self, reason: str) -> str:
        self.decision, self.reason = DENY, reason
        return reason

    def authorize(self, chain: Sequence[x509.Certificate]) -> Request:
        """:func:`authorize` plus the chain rules; raises :class:`Refusal` with the reply text."""
        security = self.security
        if security.audit_log is not None:
            self.chain = chain_summary(chain)
        security.refresh()
        try:
            request = authorize(chain)
            self.request = request
            security.check_name(request)
            security.check_chain(chain, self.now)
            if security.submitted_crl(chain) is not None:
                stored = security.accept_crl(chain)
                log.info("%s: installed the CRL handed in as %s", self.peer, stored.name)
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

    async def serve(self, request: Request, run: Callable[[], Awaitable[Payload]]) -> Payload:
        """Quota reservation and replay record around *run*; listings filtered.

        A refusal is returned as a Failure payload (the reply carries the request's
        header, as any failure of the command would).
        """
        try:
            await self.security.check_stats_path(request, self.query)
            async with self.security.quota.guard(request, self.query):
                if self._leaf is not None:
                    leaf, self._leaf = self._leaf, None
                    self.security.check_replay([leaf], request, self.now)
                await self._record_allow(request)
                self.decision = ALLOW
                payload = await run()
        except SecurityRefusal as refusal:
            return Failure(self._deny(refusal.message))
        except AlbatrossError as exc:
            if self.decision == ALLOW:  # from run(): the endpoint's own handling applies
                raise
            log.error("%s: security state: %s", self.peer, exc.message)
            return Failure(self._deny(f"the endpoint cannot check this request: {exc.message}"))
        return self.security.filter_reply(request, payload)

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
