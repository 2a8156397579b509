# The HTTP side of ``--metrics``: the address rules, the server, and ``--workers``.
#
# What is counted is metrics.py's; this module serves it.
#
# The HTTP server is wsgiref's plain (not threading) WSGIServer running prometheus-client's
# WSGI app in one daemon thread: one request at a time, each under a deadline
# (SCRAPE_TIMEOUT in all: a timer cuts a trickling client off), so a slow or hostile
# client costs a thread, a timer and one descriptor at most, never the event loop; it can
# delay other scrapes by that much, which is why the address is a loopback one by default.
# Scrapes read values under prometheus-client's locks, which the event loop holds only for
# an addition.
#
# Security: the page tells who holds which delegation and how much it uses; there is no
# authentication.  So the address must be a loopback one unless --metrics-public is given
# (then put it behind a firewall or a TLS proxy), and metrics are off by default.
#
# --workers N: prometheus-client's multiprocess mode.  The supervisor creates a private
# directory (mkdtemp, mode 0700) before forking, points PROMETHEUS_MULTIPROC_DIR at it,
# each worker writes its values to its own memory-mapped files there, and the supervisor
# alone serves the scrape, merging them (MultiProcessCollector): counters and histograms
# are summed, gauges as metrics.py says (_SUMMED, _LATEST, _SOONEST).  It removes the
# directory when it exits.  A worker that exits stops the whole service (workers.py), so
# no dead worker's files outlive their process's run.  Chosen over the supervisor asking
# each worker: no IPC of our own, and a scrape costs the workers nothing.
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from tlsendpoint.errors import SetupError

if TYPE_CHECKING:  # prometheus-client is imported when metrics are served, not for --help
    from prometheus_client import CollectorRegistry

    from tlsendpoint.metrics import EndpointMetrics

__all__ = [
    "SCRAPE_TIMEOUT",
    "MetricsPlan",
    "MetricsSetupError",
    "open_metrics",
]

log = logging.getLogger("albatross.metrics")

#: Seconds one scrape may take in all (one is served at a time): then it is cut.
SCRAPE_TIMEOUT = 5.0


class MetricsSetupError(SetupError):
    """The metrics address cannot be used (exit 125)."""


class _QuietHandler(WSGIRequestHandler):
    """One scrape, without a log line."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(WSGIServer):
    """wsgiref's one-request-at-a-time server on a socket bound before (see the module)."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.deadline = deadline
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

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve one scrape within *deadline* seconds in all (a trickling client too)."""
        request.settimeout(self.deadline)
        cut = threading.Timer(self.deadline, _cut, (request,))
        cut.start()
        try:
            super().process_request(request, client_address)
        finally:
            cut.cancel()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("metrics: scrape from %s failed", client_address, exc_info=True)


def _cut(connection: socket.socket) -> None:
    """Time is up: the handler's next read or write fails, and the scrape ends."""
    with contextlib.suppress(OSError):
        connection.shutdown(socket.SHUT_RDWR)


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


def _registry() -> CollectorRegistry:
    from prometheus_client import CollectorRegistry

    return CollectorRegistry()


@dataclass
class MetricsPlan:
    """``--metrics``: the bound socket, the registry it serves, the workers' directory."""

    sock: socket.socket
    max_paths: int
    security: bool
    directory: Path | None = None  # --workers: prometheus-client's multiprocess directory
    registry: CollectorRegistry = field(default_factory=lambda: _registry())
    scrape_timeout: float = SCRAPE_TIMEOUT
    _server: _Server | None = None
    _thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()[:2]
        return str(host), int(port)

    def endpoint_metrics(self) -> EndpointMetrics:
        """This process's series (in a worker: its own files in the shared directory)."""
        from prometheus_client import values

        from tlsendpoint.metrics import EndpointMetrics

        if self.directory is not None:
            self.sock.close()  # a worker serves no scrape
            # this worker's pid, its files
            values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
        else:  # in this process's memory, whatever PROMETHEUS_MULTIPROC_DIR the caller had
            values.ValueClass = values.MutexValue
        return EndpointMetrics(self.registry, self.max_paths, self.security)

    def start(self) -> None:
        """Serve scrapes in a daemon thread (after the fork: the workers have no thread)."""
        from prometheus_client import make_wsgi_app
        from prometheus_client.multiprocess import MultiProcessCollector

        if self.directory is not None:
            MultiProcessCollector(self.registry, str(self.directory))  # type: ignore[no-untyped-call]
        self._server = _Server(self.sock, self.scrape_timeout)
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
