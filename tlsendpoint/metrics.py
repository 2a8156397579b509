# Prometheus metrics for the endpoint (``--metrics HOST:PORT``), through prometheus-client.
#
# What is counted, and where it comes from: the endpoint (server.py) opens one
# Observation per connection (a ContextVar of the connection's task, so the hooks in
# server.py and gate.py are one line each and need no new parameters), notes on it the
# handshake failure, the request, the refusal and the octets uploaded, and hands it back
# when the connection ends; only then are counters moved.  Refusals are counted by a
# stable reason code taken from the refusal's *class* (REFUSAL_CODES, one table), never
# from its text, so a reworded message does not change a time series.
#
# Per delegation path: the policy each intermediate carries, the soonest expiry of the
# certificates at and above it, and the live usage of its subtree.  Usage is asked from
# vmmd (the quota guard's own queries: daemonquery.host_usage) by one task per process,
# after a state-changing command through a delegation and every USAGE_PERIOD seconds,
# never more often than USAGE_MIN_INTERVAL, and never by the scrape.  Paths are label
# values chosen by whoever holds a delegation, so their number is capped
# (--metrics-max-paths, per process): the first N paths seen get series of their own,
# every later one falls into the bucket path="other" (its soonest expiry, and the host
# usage below no tracked path).  Memory is bounded by the cap.
#
# The HTTP side (the server, its address rules, --workers) is metricsserver.py.
from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Final

import trio
from cryptography import x509
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from core.authorize import Refusal, Request
from core.errors import AlbatrossError
from core.routing import ReplyMode, command_name, route
from core.wire import ROOT, Name, Policy
from durable.database import StoreError
from tlsendpoint.limits import DEFAULT_MAX_PATHS
from tlsendpoint.security import SecurityRefusal
from tlsendpoint.security.daemonquery import Query, host_usage
from tlsendpoint.security.rules.auditformat import AuditError
from tlsendpoint.security.rules.naming import NameRefusal
from tlsendpoint.security.rules.pins import PinRefusal
from tlsendpoint.security.rules.quota import QuotaError, Usage
from tlsendpoint.security.rules.replay import ReplayRefusal, is_state_changing
from tlsendpoint.security.rules.revocation import RevocationError, RevocationRefusal
from tlsendpoint.security.rules.rollback import RollbackRefusal, delegations
from tlsendpoint.session import RequestFailed, UploadFailed
from transport.framed import TransportError

__all__ = [
    "DEFAULT_MAX_PATHS",
    "HANDSHAKE_REASONS",
    "OTHER_PATH",
    "REFUSAL_CODES",
    "EndpointMetrics",
    "Observation",
    "handshake_reason",
    "note_chain",
    "note_handshake",
    "note_refusal",
    "note_upload",
    "refusal_code",
    "stream_open",
]

log = logging.getLogger("albatross.metrics")

OTHER_PATH = "other"
#: Usage is asked from vmmd at least this often (seconds) while paths are tracked ...
USAGE_PERIOD = 60.0
#: ... and at most this often, however many commands change it.
USAGE_MIN_INTERVAL = 1.0

#: (class, code): an exception's code is that of the first class it is an instance of
#: (specific classes before their bases).  A new refusal class gets its line here.
REFUSAL_CODES: tuple[tuple[type[BaseException], str], ...] = (
    (QuotaError, "quota"),
    (NameRefusal, "name"),
    (RollbackRefusal, "rollback"),
    (RevocationRefusal, "revoked"),
    (ReplayRefusal, "replay"),
    (PinRefusal, "pin"),  # the image is not one a delegation pinned
    (AuditError, "audit"),  # the audit log could not be written: fail closed
    (RevocationError, "crl"),  # the CRL directory could not be read: fail closed
    (StoreError, "state"),  # the security store (or the host lock) failed: fail closed
    (UploadFailed, "limits"),  # the client's upload broke --max-image/--upload-timeout
    (RequestFailed, "daemon"),  # the daemon could not be reached or did not answer
    (TransportError, "daemon"),
    (OSError, "daemon"),
    (trio.TooSlowError, "daemon"),
    (SecurityRefusal, "security"),  # another security rule (e.g. a CRL handed in)
    (Refusal, "chain"),  # the chain makes no acceptable request (core.authorize)
)
#: Codes of base classes: a cause (or context) of the refusal with another code wins.
_GENERIC = frozenset({"security", "chain", "daemon"})
#: Every code, for the series that exist from the start (rate() needs a zero).
CODES = (*dict.fromkeys(code for _, code in REFUSAL_CODES), "other")

#: OpenSSL's reason mnemonic (``[SSL: X]``, a fixed table of OpenSSL's) -> our label.
HANDSHAKE_REASONS = {
    "CERTIFICATE_VERIFY_FAILED": "certificate_verify_failed",
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": "no_client_certificate",
    "EXCESSIVE_MESSAGE_SIZE": "chain_too_large",
    "UNEXPECTED_EOF_WHILE_READING": "connection_lost",
    "UNSUPPORTED_PROTOCOL": "protocol",
    "WRONG_VERSION_NUMBER": "protocol",
    "NO_SHARED_CIPHER": "protocol",
    "NO_PROTOCOLS_AVAILABLE": "protocol",
    "HTTP_REQUEST": "protocol",
}
HANDSHAKE_LABELS = (
    *dict.fromkeys(HANDSHAKE_REASONS.values()),
    "peer_alert",
    "timeout",
    "certificate_budget",
    "tls_other",
)

RESOURCES = ("unikernels", "memory_mb", "block_mb")

# How the supervisor merges a gauge over the workers (prometheus-client's modes): open
# connections add up, a state (a policy, the newest delegation's expiry) is the one last
# set by any worker (path="other" keeps, per process, the soonest of the paths it holds).
_SUMMED: Final = "livesum"
_LATEST: Final = "mostrecent"
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, float("inf"))


def refusal_code(exc: BaseException) -> str:
    """The stable code of a refusal: its class's, or a more specific one of its causes.

    The first specific code along the causes wins; if there is none, the generic code
    of the deepest cause that has one.
    """
    generic: str | None = None
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < 16:
        seen.add(id(current))
        code = next((c for kind, c in REFUSAL_CODES if isinstance(current, kind)), None)
        if code is not None and code not in _GENERIC:
            return code
        generic = code or generic  # the deepest cause's: "daemon" under "security"
        # a cause, or the exception being handled when it was raised (even "from None":
        # a SecurityRefusal raised for a StoreError is a store failure)
        current = current.__cause__ or current.__context__
    return generic or "other"


def handshake_reason(failure: str | None, *, timed_out: bool, waiting_for_budget: bool) -> str:
    """The label of a failed handshake: OpenSSL's reason mnemonic mapped, or why it ended."""
    if timed_out:
        return "certificate_budget" if waiting_for_budget else "timeout"
    text = failure or ""
    start = text.find("[SSL: ")
    if start < 0:  # the transport broke (tlsstream: "sending failed", "receiving failed")
        return "connection_lost"
    mnemonic = text[start + 6 : text.find("]", start)]
    if "_ALERT_" in mnemonic:  # the client sent an alert (e.g. it did not trust us)
        return "peer_alert"
    return HANDSHAKE_REASONS.get(mnemonic, "tls_other")


# -- one connection ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PathSeen:
    """A delegation path as one chain shows it."""

    name: Name
    policy: Policy
    expires: float  # POSIX seconds: the soonest not-after at and above this delegation
    order: tuple[int, int] = (0, 0)  # the delegation's (not_before, serial): newer wins

    @property
    def label(self) -> str:
        return path_label(self.name)


@dataclass
class Observation:
    """What one connection did, noted by the endpoint's hooks (see the module comment)."""

    handshake: str | None = None
    kind: str | None = None
    state_changing: bool = False
    paths: tuple[PathSeen, ...] = ()
    refusal: str | None = None
    uploaded: int = 0
    store_ok: bool | None = None
    audit_ok: bool | None = None
    ok: bool = False  # the connection's log line says it ended well
    started: float = 0.0


_CURRENT: ContextVar[Observation | None] = ContextVar("albatross_metrics", default=None)


def path_label(name: Name) -> str:
    """A delegation path as albatross writes it, without the trailing ``:`` (``alice:bob``)."""
    return ":".join(name.path)


def note_handshake(failure: str | None, *, timed_out: bool, waiting_for_budget: bool) -> None:
    seen = _CURRENT.get()
    if seen is not None:
        seen.handshake = handshake_reason(
            failure, timed_out=timed_out, waiting_for_budget=waiting_for_budget
        )


def paths_of(chain: Sequence[x509.Certificate], request: Request) -> tuple[PathSeen, ...]:
    """Each delegation of *chain* with its policy and the soonest expiry at or above it."""
    if not request.policies:  # the operator's own chain: no delegation to parse
        return ()
    policies = {name.path: policy for name, policy in request.policies}
    found: list[PathSeen] = []
    soonest = float("inf")
    for delegation in delegations(chain):  # top-down: an ancestor's expiry binds below it
        soonest = min(soonest, float(delegation.not_after))
        policy = policies.get(delegation.path.path)
        if policy is not None:
            found.append(PathSeen(delegation.path, policy, soonest, delegation.order))
    return tuple(found)


def note_chain(chain: Sequence[x509.Certificate], request: Request, checked: bool) -> None:
    """The authorised request; *checked*: it passed the security store (anti-rollback)."""
    seen = _CURRENT.get()
    if seen is None:
        return
    seen.kind = _kind(request)
    seen.state_changing = is_state_changing(request.command)
    seen.paths = paths_of(chain, request)
    if checked:
        seen.store_ok = True


def note_refusal(exc: BaseException, request: Request | None = None) -> None:
    """A refusal; *request*: what a chain the security rules refused asked for, if known."""
    seen = _CURRENT.get()
    if seen is None:
        return
    if request is not None and seen.kind is None:
        seen.kind = _kind(request)
    seen.refusal = refusal_code(exc)
    if seen.refusal == "state":
        seen.store_ok = False
    elif seen.refusal == "audit":
        seen.audit_ok = False


def note_upload(octets: int) -> None:
    seen = _CURRENT.get()
    if seen is not None:
        seen.uploaded += octets


def note_audit(written: bool) -> None:
    seen = _CURRENT.get()
    if seen is not None and seen.audit_ok is not False:
        seen.audit_ok = written


def _kind(request: Request) -> str:
    return command_name(request.command).replace(" ", "_").replace("-", "_")


# -- the process's metrics ----------------------------------------------------------


@dataclass
class _Tracked:
    name: Name
    policy: Policy
    expires: float
    order: tuple[int, int]


class EndpointMetrics:
    """The endpoint's series in *registry*, and the per-path bookkeeping (bounded)."""

    def __init__(
        self,
        registry: CollectorRegistry,
        max_paths: int = DEFAULT_MAX_PATHS,
        security: bool = True,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self.max_paths = max_paths
        self.paths: dict[str, _Tracked] = {}
        self.other_expires = float("inf")
        self._clock = clock
        self._dirty: trio.Event | None = None
        self._refreshed: trio.Event | None = None
        self.refreshes = 0
        ns = "albatross_endpoint"
        self.requests = Counter(
            f"{ns}_requests", "Requests by command kind and outcome (success, failure,"
            " refused).", ["kind", "outcome"], registry=registry,
        )  # fmt: skip
        self.refusals = Counter(
            f"{ns}_refusals", "Requests the endpoint refused, by reason code.", ["reason"],
            registry=registry,
        )  # fmt: skip
        self.handshake_failures = Counter(
            f"{ns}_handshake_failures", "TLS handshakes that failed, by reason.", ["reason"],
            registry=registry,
        )  # fmt: skip
        self.duration = Histogram(
            f"{ns}_request_duration_seconds", "Time from accept to the end of the connection,"
            " by command kind.", ["kind"], buckets=DURATION_BUCKETS, registry=registry,
        )  # fmt: skip
        self.uploaded = Counter(
            f"{ns}_uploaded_bytes", "Octets clients uploaded (images, block data), by command"
            " kind.", ["kind"], registry=registry,
        )  # fmt: skip
        self.connections = Gauge(
            f"{ns}_open_connections", "Connections being served.", registry=registry,
            multiprocess_mode=_SUMMED,
        )  # fmt: skip
        self.streams = Gauge(
            f"{ns}_open_streams", "Console and statistics subscriptions being relayed.",
            ["kind"], registry=registry, multiprocess_mode=_SUMMED,
        )  # fmt: skip
        self.policy = Gauge(
            "albatross_delegation_policy", "What a delegation's policy allows (unikernels,"
            " memory and block in MB), by path.", ["path", "resource"], registry=registry,
            multiprocess_mode=_LATEST,
        )  # fmt: skip
        self.usage = Gauge(
            "albatross_delegation_usage", "What a delegation's subtree uses now (unikernels,"
            " memory and block in MB), by path.", ["path", "resource"], registry=registry,
            multiprocess_mode=_LATEST,
        )  # fmt: skip
        self.expiry = Gauge(
            "albatross_delegation_expiry_timestamp_seconds", "The soonest not-after of the"
            " certificates at and above the newest delegation seen at a path.", ["path"],
            registry=registry, multiprocess_mode=_LATEST,
        )  # fmt: skip
        for code in CODES:
            self.refusals.labels(code)
        for reason in HANDSHAKE_LABELS:
            self.handshake_failures.labels(reason)
        self.store_up: Gauge | None = None
        self.audit_up: Gauge | None = None
        if security:
            self.store_up = Gauge(
                f"{ns}_security_store_up", "1 if the last use of the security store"
                " succeeded, 0 if it failed.", registry=registry,
                multiprocess_mode=_LATEST,
            )  # fmt: skip
            self.audit_up = Gauge(
                f"{ns}_audit_log_up", "1 if the last audit log write succeeded (or there is"
                " no audit log), 0 if it failed.", registry=registry,
                multiprocess_mode=_LATEST,
            )  # fmt: skip
            self.store_up.set(1)
            self.audit_up.set(1)

    # -- connections ----------------------------------------------------------------

    def open(self) -> Observation:
        """A connection starts: its Observation becomes the hooks' target (this task's)."""
        seen = Observation(started=self._clock())
        _CURRENT.set(seen)  # each connection runs in a task of its own: no reset needed
        self.connections.inc()
        return seen

    def close(self, seen: Observation, ok: bool) -> None:
        """The connection ended (*ok*: its log line says so): count what it did."""
        self.connections.dec()
        seen.ok = ok
        self._count(seen, ok, self._clock() - seen.started)

    def _count(self, seen: Observation, ok: bool, duration: float) -> None:
        if seen.handshake is not None:
            self.handshake_failures.labels(seen.handshake).inc()
        if seen.store_ok is not None and self.store_up is not None:
            self.store_up.set(1 if seen.store_ok else 0)
        if seen.audit_ok is not None and self.audit_up is not None:
            self.audit_up.set(1 if seen.audit_ok else 0)
        if seen.refusal is not None:
            self.refusals.labels(seen.refusal).inc()
        if seen.kind is None:
            return
        outcome = "refused" if seen.refusal is not None else "success" if ok else "failure"
        self.requests.labels(seen.kind, outcome).inc()
        self.duration.labels(seen.kind).observe(duration)
        if seen.uploaded:
            self.uploaded.labels(seen.kind).inc(seen.uploaded)
        self._track(seen)

    # -- delegation paths -------------------------------------------------------------

    def _track(self, seen: Observation) -> None:
        new = False
        for path in seen.paths:
            label = path.label
            tracked = self.paths.get(label)
            if tracked is None and len(self.paths) >= self.max_paths:
                if path.expires < self.other_expires:
                    self.other_expires = path.expires
                    self.expiry.labels(OTHER_PATH).set(path.expires)
                continue
            if tracked is None:
                tracked = _Tracked(path.name, path.policy, path.expires, path.order)
                self.paths[label] = tracked
                new = True
            elif path.order < tracked.order:
                continue  # an older delegation (anti-rollback refuses it): not what is in force
            # the newest delegation at the path is the one in force: its policy and its
            # expiry, so a renewed delegation clears the expiry alert
            tracked.policy, tracked.expires, tracked.order = path.policy, path.expires, path.order
            block = 0 if path.policy.block is None else path.policy.block
            limits = (path.policy.unikernels, path.policy.memory, block)
            for resource, limit in zip(RESOURCES, limits, strict=True):
                self.policy.labels(label, resource).set(limit)
            self.expiry.labels(label).set(tracked.expires)
        if (new or seen.state_changing) and seen.paths and self._dirty is not None:
            self._dirty.set()

    def set_usage(self, usage: Usage) -> None:
        """Usage of every tracked path's subtree, and of the host below none of them."""
        for label, tracked in self.paths.items():
            totals = usage.totals(tracked.name)
            for resource, used in zip(
                RESOURCES, (totals.unikernels, totals.memory, totals.block), strict=True
            ):
                self.usage.labels(label, resource).set(used)
        if len(self.paths) >= self.max_paths:  # the "other" bucket exists
            paths = [tracked.name.path for tracked in self.paths.values()]
            rest = Usage(
                {n: r for n, r in usage.unikernels.items() if not _below_any(n, paths)},
                {n: s for n, s in usage.blocks.items() if not _below_any(n, paths)},
            )
            totals = rest.totals(ROOT)
            for resource, used in zip(
                RESOURCES, (totals.unikernels, totals.memory, totals.block), strict=True
            ):
                self.usage.labels(OTHER_PATH, resource).set(used)

    async def refresh_usage(self, query: Query) -> bool:
        """Ask vmmd once for the host's usage; False (logged) if it did not answer."""
        try:
            _, usage = await host_usage(query)
        except AlbatrossError as exc:
            log.debug("metrics: usage not refreshed: %s", exc.message)
            return False
        self.set_usage(usage)
        self.refreshes += 1
        return True

    async def refresh_forever(self, query: Query) -> None:
        """The process's usage task (see the module comment); runs until cancelled."""
        while True:
            self._dirty = trio.Event()
            with trio.move_on_after(USAGE_PERIOD):
                await self._dirty.wait()
            if self.paths:
                try:
                    await self.refresh_usage(query)
                except Exception:  # a bug here must not stop the endpoint's accept loops
                    log.exception("metrics: refreshing the usage failed")
            if self._refreshed is not None:
                self._refreshed.set()
            await trio.sleep(USAGE_MIN_INTERVAL)

    async def next_refresh(self) -> None:
        """Wait until the usage task's next round has ended (for tests)."""
        self._refreshed = trio.Event()
        await self._refreshed.wait()


def _below_any(name: Name, paths: list[tuple[str, ...]]) -> bool:
    return any(name.is_below(path) for path in paths)


# -- streams --------------------------------------------------------------------------


@contextlib.contextmanager
def stream_open(metrics: EndpointMetrics | None, request: Request) -> Iterator[None]:
    """Count a console or stats subscription as open while it is relayed."""
    if metrics is None or route(request.command).mode is not ReplyMode.READ:
        yield
        return
    gauge = metrics.streams.labels(_kind(request))
    gauge.inc()
    try:
        yield
    finally:
        gauge.dec()
