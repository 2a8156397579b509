# The security state one endpoint process holds (issue 6), opened at start.
#
# Security is built once per process (start-up, or each inetd child): it opens and
# checks the store of replay and anti-rollback records (state/records.py; old state
# files migrated once), the CRL directory (state/crldir.py), the audit log
# (state/auditlog.py: a torn end recovered, a damaged one stops the start) and the
# quota guard (quotaguard.py: this process's reservations and, with several processes,
# the host-wide quota lock).  Anything wrong raises, so the endpoint does not start
# without its state (setup.py turns that into exit 125 with advice).
#
# What a connection does with them is the gate's (gate.py): one Gate per connection,
# Gate(security, peer, query, now).  Here only what outlives a connection: the CRL
# directory reloaded when it changes (refresh, per connection) and on SIGHUP
# (reload_on_sighup, in the server's nursery), and close() at shutdown.
#
# Imports: the state stores, the quota guard, the rules' errors and the file helpers
# (store/); never the gate, which holds a Security and not the other way round.
from __future__ import annotations

import logging
import signal
from dataclasses import dataclass
from pathlib import Path

import trio
from cryptography import x509

from durable.locks import HostLock
from tlsendpoint.security.quotaguard import QuotaGuard
from tlsendpoint.security.rules.revocation import RevocationError
from tlsendpoint.security.state.auditlog import open_audit_log
from tlsendpoint.security.state.crldir import CrlStore
from tlsendpoint.security.state.faults import NO_FAULTS, Faults
from tlsendpoint.security.state.legacy import migrate
from tlsendpoint.security.state.records import STORE_FILE, SecurityStore

__all__ = ["QUOTA_LOCK", "Security", "SecurityOptions", "reload_on_sighup"]

# Under the "albatross" logger the endpoint configures (stderr, syslog, journal or none).
log = logging.getLogger("albatross.security")

#: The host-wide quota lock's file in the state directory (several processes only).
QUOTA_LOCK = "quota.lock"


@dataclass(frozen=True, slots=True)
class SecurityOptions:
    """Where the security state lives (endpoint options, documented in the README)."""

    state_dir: Path  # security.db (the store) and, with several processes, quota.lock
    anchor: x509.Certificate  # the endpoint's CA (top of every chain; signs root CRLs)
    crl_dir: Path | None = None
    audit_log: Path | None = None
    audit_fsync: bool = False
    shared: bool = False  # several endpoint processes serve this host (quota lock file)
    faults: Faults = NO_FAULTS  # crash tests only (state/faults.py)


class Security:
    """The security state of one endpoint process; a connection uses it through :mod:`.gate`.

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
        self.quota = QuotaGuard(lock if options.shared else None)

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
