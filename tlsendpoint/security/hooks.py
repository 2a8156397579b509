# The endpoint's security features of issue 6, behind one object per endpoint process.
#
# The order in which a connection goes through them is the gate's (gate.py): one Gate
# per connection (Gate(security, peer, query, now)).  Here: the per-process state - the
# store of replay and anti-rollback records (store/, opened and checked at start, old
# state files migrated), the CRL directory, the audit log, the quota reservations and,
# with several processes, the host-wide quota lock - plus the daemon queries the quota
# check needs and the SIGHUP loop.
#
# Every refusal is a SecurityRefusal (a PolicyError) whose message is the text to send
# as Failure.  Every call that touches the store runs in a worker thread (the async
# methods); the synchronous twins are for start-up, offline tools and tests.  The
# audit log's allow record is written by the gate before the command is forwarded,
# the outcome (or the deny / error decision) when the connection ends.
#
# The quota guard holds a reservation from the check until the daemon's reply, so
# concurrent creates cannot slip past; with several processes it also holds the
# host-wide quota lock for that time - and only that time: the gate enters it after the
# client's upload (session.serve_request's admit), so a slow uploader stalls nobody.
from __future__ import annotations

import datetime as dt
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import trio
from cryptography import x509

from core.authorize import Request
from core.errors import AlbatrossError
from core.routing import command_name
from core.wire import (
    DEFAULT_MAX_FRAME,
    ROOT,
    BlockDeviceList,
    BlockInfo,
    Command,
    Failure,
    Header,
    Message,
    Name,
    Payload,
    Policy,
    PolicyInfo,
    PolicyList,
    UnikernelInfo,
    UnikernelInfoList,
)
from tlsendpoint.security import SecurityRefusal
from tlsendpoint.security.audit import AuditRecord, command_summary, open_audit_log
from tlsendpoint.security.naming import (
    check_object_name,
    check_stats_path,
    filter_listing,
    parents_object,
)
from tlsendpoint.security.quota import (
    Usage,
    check_delegations,
    demand_of,
    root_policy_from,
    usage_from_replies,
)
from tlsendpoint.security.replay import already_used, is_state_changing, leaf_record
from tlsendpoint.security.reservations import Reservation, Reservations
from tlsendpoint.security.revocation import CrlStore, RevocationError, submitted_crl
from tlsendpoint.security.rollback import delegations
from tlsendpoint.security.store import (
    NO_FAULTS,
    STORE_FILE,
    Faults,
    HostLock,
    LockTimeout,
    SecurityStore,
    StoreError,
)
from tlsendpoint.security.store.legacy import migrate
from transport.framed import FramedStream
from transport.unix import open_unix

__all__ = [
    "QUERY_TIMEOUT",
    "Query",
    "QuotaGate",
    "Security",
    "SecurityOptions",
    "daemon_query",
    "host_usage",
    "reload_on_sighup",
]

# Under the "albatross" logger the endpoint configures (stderr, syslog, journal or none).
log = logging.getLogger("albatross.security")

#: Sends one command to vmmd and returns the reply's payload.
Query = Callable[[Name, Command], Awaitable[Payload]]

#: Default deadline for one usage query (connect, send, reply); the endpoint passes its
#: ``Limits.daemon_timeout``.
QUERY_TIMEOUT = 120.0

QUOTA_LOCK = "quota.lock"


def daemon_query(
    vmmd_socket: Path,
    next_sequence: Callable[[], int],
    timeout: float = QUERY_TIMEOUT,
    max_frame: int = DEFAULT_MAX_FRAME,
) -> Query:
    """A :data:`Query` that asks vmmd on its own short connection, under *timeout*.

    Any failure to get a reply becomes a :class:`SecurityRefusal` (the request is
    refused: quotas that cannot be checked are not granted).
    """

    async def query(name: Name, command: Command) -> Payload:
        what = f"{command_name(command)} for {name}"
        try:
            with trio.fail_after(timeout):
                stream = await open_unix(str(vmmd_socket))
                daemon = FramedStream(stream, max_frame, "vmmd")
                try:
                    await daemon.send_message(Message(Header(name, next_sequence()), command))
                    return (await daemon.receive_message()).payload
                finally:
                    await trio.aclose_forcefully(stream)
        except trio.TooSlowError:
            raise SecurityRefusal(
                f"cannot check quotas: vmmd did not answer {what} within {timeout:g} s"
            ) from None
        except (OSError, AlbatrossError) as exc:
            detail = exc.message if isinstance(exc, AlbatrossError) else str(exc)
            raise SecurityRefusal(f"cannot check quotas: asking vmmd {what}: {detail}") from None

    return query


def _unexpected(what: str, reply: Payload) -> SecurityRefusal:
    detail = reply.message if isinstance(reply, Failure) else type(reply).__name__
    return SecurityRefusal(f"cannot check quotas: the daemon answered {what} with {detail}")


async def host_usage(query: Query) -> tuple[Policy | None, Usage]:
    """The root policy and everything running on the host, as vmmd reports them now."""
    policies = await query(ROOT, PolicyInfo())
    info = await query(ROOT, UnikernelInfo())
    blocks = await query(ROOT, BlockInfo())
    root = root_policy_from(policies) if isinstance(policies, PolicyList) else None
    if not isinstance(info, UnikernelInfoList):
        raise _unexpected("unikernel info", info)
    if not isinstance(blocks, BlockDeviceList):
        raise _unexpected("block info", blocks)
    return root, usage_from_replies(ROOT, info, blocks)


class QuotaGate:
    """Ancestor and host quotas with reservations (:mod:`.quota`), fed by daemon queries.

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


@dataclass(frozen=True, slots=True)
class SecurityOptions:
    """Where the security state lives (endpoint options, documented in the README)."""

    state_dir: Path  # security.db (the store) and, with several processes, quota.lock
    anchor: x509.Certificate  # the endpoint's CA (top of every chain; signs root CRLs)
    crl_dir: Path | None = None
    audit_log: Path | None = None
    audit_fsync: bool = False
    shared: bool = False  # several endpoint processes serve this host (quota lock file)
    faults: Faults = NO_FAULTS  # crash tests only (store/faults.py)


class Security:
    """Everything of issue 6 the endpoint calls; the order is the gate's (:mod:`.gate`).

    Construction is the start-up: it opens and checks the store (migrating old state
    files once) and raises StoreError (or another AlbatrossError) if anything is wrong.
    """

    def __init__(self, options: SecurityOptions) -> None:
        self.options = options
        self.store = SecurityStore(options.state_dir / STORE_FILE, faults=options.faults)
        self.store.open()
        migrated = migrate(self.store)
        if migrated is not None:
            log.info("%s", migrated)
        self.store.ready()  # writes work; no connection left open for forked workers
        self.crls = CrlStore(options.crl_dir, options.anchor) if options.crl_dir else None
        self.audit_log = (  # a torn end is recovered here (logged); a damaged one stops
            open_audit_log(options.audit_log, fsync=options.audit_fsync)
            if options.audit_log
            else None
        )
        lock = HostLock(
            options.state_dir / QUOTA_LOCK,
            "the quota lock (another request of this host holds it from its usage query "
            "until vmmd's reply)",
        )
        self.quota = QuotaGate(lock if options.shared else None)

    def close(self) -> None:
        """Close the store's connection and the audit log (at shutdown)."""
        self.store.close()
        if self.audit_log is not None:
            self.audit_log.close()

    def refresh(self) -> None:
        """Reload the CRL directory if it changed; a broken directory keeps the old CRLs."""
        if self.crls is None:
            return
        try:
            if self.crls.maybe_reload():
                log.info("reloaded CRLs from %s", self.crls.directory)
        except RevocationError as exc:
            log.error("CRLs not reloaded, the previous ones stay in force: %s", exc.message)

    def check_name(self, request: Request) -> None:
        """A single-object command needs a real name (:mod:`.naming`)."""
        check_object_name(request)

    async def check_stats_path(self, request: Request, query: Query) -> None:
        """A stats subscription at a delegate's path: refused while the parent's twin runs."""
        if parents_object(request) is None:
            return
        info = await query(ROOT, UnikernelInfo())
        if not isinstance(info, UnikernelInfoList):
            raise _unexpected("unikernel info", info)
        check_stats_path(request, (name for name, _ in info.unikernels))

    def filter_reply(self, request: Request, reply: Payload) -> Payload:
        """A listing at a delegate's path without the parent's same-named object."""
        return filter_listing(request.name, reply)

    def check_revocation(self, chain: Sequence[x509.Certificate]) -> None:
        """Refuse a chain with a revoked certificate (CRL directory and handed-in CRLs)."""
        if self.crls is not None:
            self.crls.check(chain)

    async def check_rollback(self, chain: Sequence[x509.Certificate], now: dt.datetime) -> None:
        """Anti-rollback: refuse an older delegation, record newer ones (worker thread)."""
        found = delegations(chain)
        if found and not await self.store.call(
            self.store.record_delegations, found, int(now.timestamp())
        ):
            log.warning("anti-rollback table full: a new delegation path was not recorded")

    def check_chain(self, chain: Sequence[x509.Certificate], now: dt.datetime) -> None:
        """Revocation, then anti-rollback, blocking (tools and tests; the gate awaits)."""
        self.check_revocation(chain)
        if not self.store.record_delegations(delegations(chain), int(now.timestamp())):
            log.warning("anti-rollback table full: a new delegation path was not recorded")

    def submitted_crl(self, chain: Sequence[x509.Certificate]) -> bytes | None:
        return submitted_crl(chain[0]) if chain else None

    def accept_crl(self, chain: Sequence[x509.Certificate]) -> Path:
        """Install the CRL the leaf carries; SecurityRefusal if not acceptable."""
        data = self.submitted_crl(chain)
        if self.crls is None or data is None:
            raise SecurityRefusal("this endpoint does not accept CRLs (no CRL directory)")
        return self.crls.accept_submitted(chain, data)

    async def refuse_used_leaf(self, leaf: x509.Certificate, request: Request) -> None:
        """Refuse now a leaf that already ran (a read; the record itself comes later)."""
        record = leaf_record(leaf, _owner(request))
        if await self.store.call(self.store.leaf_used, record.key):
            raise already_used(record)

    async def record_leaf(self, leaf: x509.Certificate, request: Request, now: dt.datetime) -> None:
        """Record the state-changing leaf durably (worker thread); ReplayRefusal if it ran."""
        record = leaf_record(leaf, _owner(request))
        await self.store.call(self.store.record_leaf, record, int(now.timestamp()))

    def check_replay(
        self, chain: Sequence[x509.Certificate], request: Request, now: dt.datetime
    ) -> None:
        """:meth:`record_leaf`, blocking (tools and tests); read-only commands pass."""
        if not is_state_changing(request.command):
            return
        self.store.record_leaf(leaf_record(chain[0], _owner(request)), int(now.timestamp()))

    def audit(
        self,
        *,
        now: dt.datetime,
        peer: str,
        chain: Sequence[x509.Certificate],
        request: Request | None,
        decision: str,
        reason: str,
        duration: float,
    ) -> str | None:
        """Append one record; returns the new head hash (log it now and then)."""
        if self.audit_log is None:
            return None
        record = AuditRecord(
            now,
            peer,
            chain,
            None if request is None else str(request.name),
            None if request is None else command_summary(request.command),
            decision,
            reason,
            duration,
        )
        return self.audit_log.append(record).head


def _owner(request: Request) -> str:
    """The top-level delegation a request is under ("" for the root): replay shares."""
    return request.name.path[0] if request.name.path else ""


async def reload_on_sighup(security: Security) -> None:
    """Run in the server's nursery: SIGHUP reloads the CRL directory."""
    with trio.open_signal_receiver(signal.SIGHUP) as signals:
        async for _ in signals:
            if security.crls is None:
                continue
            try:
                security.crls.reload()
                log.info("SIGHUP: reloaded CRLs from %s", security.crls.directory)
            except RevocationError as exc:
                log.error("SIGHUP: CRLs not reloaded, previous ones stay: %s", exc.message)
