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
# The HTTP server is wsgiref's plain (not threading) WSGIServer running prometheus-client's
# WSGI app in one daemon thread: one request at a time, each under a socket timeout
# (SCRAPE_TIMEOUT), so a slow or hostile client costs one thread and one descriptor at
# most and never the event loop.  Scrapes read values under prometheus-client's locks,
# which the event loop holds only for an addition.
#
# Security: the page tells who holds which delegation and how much it uses; there is no
# authentication.  So the address must be a loopback one unless --metrics-public is given
# (then put it behind a firewall or a TLS proxy), and metrics are off by default.
#
# --workers N: prometheus-client's multiprocess mode.  The supervisor creates a private
# directory (mkdtemp, mode 0700) before forking, points PROMETHEUS_MULTIPROC_DIR at it,
# each worker writes its values to its own memory-mapped files there, and the supervisor
# alone serves the scrape, merging them (MultiProcessCollector): counters and histograms
# are summed, gauges merged per MULTIPROCESS_MODES.  It removes the directory when it
# exits.  A worker that exits stops the whole service (workers.py), so no dead worker's
# files outlive their process's run.  Chosen over the supervisor asking each worker: no
# IPC of our own, and a scrape costs the workers nothing.
from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

import click
import trio
from cryptography import x509
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app, values
from prometheus_client.multiprocess import MultiProcessCollector

from core.authorize import Refusal, Request
from core.errors import AlbatrossError
from core.routing import ReplyMode, command_name, route
from core.wire import ROOT, Name, Policy
from durable.database import StoreError
from tlsendpoint.errors import SetupError
from tlsendpoint.security import SecurityRefusal
from tlsendpoint.security.daemonquery import Query, host_usage
from tlsendpoint.security.rules.auditformat import AuditError
from tlsendpoint.security.rules.naming import NameRefusal
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
    "MetricsPlan",
    "MetricsSetupError",
    "Observation",
    "handshake_reason",
    "metrics_options",
    "note_chain",
    "note_handshake",
    "note_refusal",
    "note_upload",
    "open_metrics",
    "refusal_code",
    "stream_open",
]

log = logging.getLogger("albatross.metrics")

DEFAULT_MAX_PATHS = 64
OTHER_PATH = "other"
#: Seconds one scrape's socket may stay silent before it is dropped.
SCRAPE_TIMEOUT = 10.0
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
# connections add up, a state is the one last set by any worker, expiries the soonest.
_SUMMED: Final = "livesum"
_LATEST: Final = "mostrecent"
_SOONEST: Final = "min"
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, float("inf"))


class MetricsSetupError(SetupError):
    """The metrics address cannot be used (exit 125)."""


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
    policies = {name.path: policy for name, policy in request.policies}
    found: list[PathSeen] = []
    soonest = float("inf")
    for delegation in delegations(chain):  # top-down: an ancestor's expiry binds below it
        soonest = min(soonest, float(delegation.not_after))
        policy = policies.get(delegation.path.path)
        if policy is not None:
            found.append(PathSeen(delegation.path, policy, soonest))
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
            " certificates at and above a delegation, in the chains seen.", ["path"],
            registry=registry, multiprocess_mode=_SOONEST,
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
                tracked = self.paths[label] = _Tracked(path.name, path.policy, path.expires)
                new = True
            tracked.policy = path.policy  # the latest chain's policy is the one in force
            tracked.expires = min(tracked.expires, path.expires)
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
                await self.refresh_usage(query)
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


# -- the HTTP side ----------------------------------------------------------------------


class _QuietHandler(WSGIRequestHandler):
    """One scrape: no log line per request, and a deadline on the socket."""

    timeout = SCRAPE_TIMEOUT

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(WSGIServer):
    """wsgiref's one-request-at-a-time server on a socket bound before (see the module)."""

    def __init__(self, sock: socket.socket) -> None:
        self.address_family = sock.family
        super().__init__(sock.getsockname()[:2], _QuietHandler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock
        self.server_address = sock.getsockname()
        # as HTTPServer.server_bind, without its reverse DNS lookup (getfqdn)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]
        self.setup_environ()

    def server_bind(self) -> None:  # the socket is bound already
        pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("metrics: scrape from %s failed", client_address, exc_info=True)


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT``; click.BadParameter if it is not one."""
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise click.BadParameter(
            f"{text!r} is not HOST:PORT (for example 127.0.0.1:9464 or [::1]:9464)"
        )
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _listen(host: str, port: int) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise MetricsSetupError(f"cannot use the metrics address {host}:{port}: {exc}") from exc
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(16)
    except OSError as exc:
        sock.close()
        raise MetricsSetupError(
            f"cannot listen for metrics on {host}:{port}: {exc.strerror or exc}"
        ) from exc
    return sock


@dataclass
class MetricsPlan:
    """``--metrics``: the bound socket, the registry it serves, the workers' directory."""

    sock: socket.socket
    max_paths: int
    security: bool
    directory: Path | None = None  # --workers: prometheus-client's multiprocess directory
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    _server: _Server | None = None
    _thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()[:2]
        return str(host), int(port)

    def endpoint_metrics(self) -> EndpointMetrics:
        """This process's series (in a worker: its own files in the shared directory)."""
        if self.directory is not None:
            self.sock.close()  # a worker serves no scrape
            # this worker's pid, its files
            values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
        else:  # in this process's memory, whatever PROMETHEUS_MULTIPROC_DIR the caller had
            values.ValueClass = values.MutexValue
        return EndpointMetrics(self.registry, self.max_paths, self.security)

    def start(self) -> None:
        """Serve scrapes in a daemon thread (after the fork: the workers have no thread)."""
        if self.directory is not None:
            MultiProcessCollector(self.registry, str(self.directory))  # type: ignore[no-untyped-call]
        self._server = _Server(self.sock)
        self._server.set_app(make_wsgi_app(self.registry))
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.5,), name="metrics", daemon=True
        )
        self._thread.start()
        host, port = self.address
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        merged = "" if self.directory is None else f" (the workers' values in {self.directory})"
        log.info("metrics on http://%s/metrics%s", where, merged)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        self.sock.close()
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)


def _address_option(
    ctx: click.Context, _: click.Parameter, value: str | None
) -> tuple[str, int] | None:
    if value is None:
        return None
    host, port = parse_address(value)
    if not ctx.params.get("metrics_public") and not is_loopback(host):
        raise click.BadParameter(
            f"{host} is not a loopback address: the metrics name delegations and their"
            " usage without authentication; add --metrics-public to serve them there"
        )
    return host, port


def open_metrics(
    address: tuple[str, int], max_paths: int, workers: int, security: bool
) -> MetricsPlan:
    """Bind the metrics socket (start-up errors now, not at the first scrape).

    With several workers, also create the multiprocess directory and point
    PROMETHEUS_MULTIPROC_DIR at it (inherited by the workers).
    """
    host, port = address
    plan = MetricsPlan(_listen(host, port), max_paths, security)
    if workers > 1:
        plan.directory = Path(tempfile.mkdtemp(prefix="albatross-metrics-"))
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(plan.directory)
    return plan


def metrics_options(func: Any) -> Any:
    """The click options of :func:`open_metrics` (``metrics``, ``metrics_public``, ...)."""
    options = [
        click.option(
            "--metrics",
            metavar="HOST:PORT",
            default=None,
            callback=_address_option,
            help="Serve Prometheus metrics over HTTP at this address (a loopback one unless"
            " --metrics-public).  [default: off]",
        ),
        click.option(
            "--metrics-public",
            is_flag=True,
            is_eager=True,  # --metrics checks it
            help="Allow --metrics on a non-loopback address (no authentication: firewall it).",
        ),
        click.option(
            "--metrics-max-paths",
            type=click.IntRange(min=1),
            default=DEFAULT_MAX_PATHS,
            show_default=True,
            help="Delegation paths with series of their own (per worker); later ones count"
            ' as path="other".',
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func
