"""The endpoint's trio shell: accept, handshake, authorise, serve, reply, log.

Each connection runs in its own task in one nursery and catches everything it
can raise, so one peer never affects another (albatross ``Lwt.async`` per
connection).  The steps and their bounds:

1. TLS handshake (:class:`TLSStream`) under ``handshake_timeout``, its client
   chain within the certificate budget (:mod:`tlsendpoint.certbudget`); a
   failed one sends OpenSSL's alert, is logged and closed;
2. :func:`authorize` on the verified chain; a :class:`Refusal` is answered with
   ``Failure <reason>`` (header: version 5, sequence 0, name ``:``) - albatross
   closes silently here;
3. :func:`serve_request` to the daemon, then the final reply with header
   (certificate version, 0, derived name), then close_notify;
4. one log line (:class:`ConnectionRecord`).

After the handshake every request gets a reply: an exception nothing else
handled (a bug, or a library raising what it should not) is answered with
``Failure internal error: ...`` and logged with its traceback; only a client
that went away gets none.

Concurrency is bounded by a :class:`trio.CapacityLimiter`: the accept loop
takes a slot *before* accepting, so excess connections wait in the kernel's
listen backlog instead of costing memory here.  ``accept`` errors such as
EMFILE are logged and retried after a short pause (albatross retries at once
and floods its log).  :meth:`Endpoint.serve` stops accepting when ``shutdown``
is set and gives running connections ``grace_period`` seconds.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from core.authorize import Refusal, Request, authorize
from core.clock import Clock, system_clock
from core.errors import AlbatrossError
from core.routing import Socket, command_name
from core.wire import ROOT, VERSION, Failure, Header, Message, Name, Payload, StringReply
from tlsendpoint.certbudget import SMALL_CHAIN, CertificateBudget
from tlsendpoint.connlog import JOURNAL_FIELDS, LOGGER, ConnectionRecord, describe_chain
from tlsendpoint.limits import Limits
from tlsendpoint.security.daemonquery import daemon_query
from tlsendpoint.security.gate import Gate
from tlsendpoint.security.process import Security, reload_on_sighup
from tlsendpoint.session import (
    ClientGone,
    RequestFailed,
    SequenceCounter,
    SessionStats,
    serve_request,
)
from tlsendpoint.tlscontext import (
    peer_chain,
    set_connection_max_cert_list,
    set_max_cert_list,
    set_verify_time,
)
from tlsendpoint.tlsstream import TLSStream
from transport.framed import FramedStream, TransportError
from transport.unix import UnixStream, lean_stream

if TYPE_CHECKING:  # prometheus-client and the metrics module: imported only with --metrics
    from tlsendpoint.metrics import EndpointMetrics

_T = TypeVar("_T")

__all__ = ["Endpoint", "describe_peer"]

#: Pause after an accept error (EMFILE, ENFILE, ENOBUFS, ENOMEM) before retrying.
ACCEPT_ERROR_PAUSE = 0.1
#: Connections taken from the backlog at once, without yielding, after each accept.
ACCEPT_BURST = 16
#: How long closing a connection (close_notify) may take.
CLOSE_TIMEOUT = 2.0

_ACCEPT_RESOURCE_ERRORS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}


def describe_peer(stream: trio.abc.Stream) -> str:
    """``host:port`` (or ``unix``/``?``) of a socket stream's peer."""
    if isinstance(stream, trio.SocketStream | UnixStream):
        try:
            address = stream.socket.getpeername()
        except OSError:
            return "?"
        if isinstance(address, tuple):
            host, port = address[0], address[1]
            return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        return "unix" if not address else str(address)
    return "stream"


def _accepted(sock: socket.socket) -> UnixStream:
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        # as trio.SocketStream does: a reply must not wait for the client's ACK (Nagle)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return UnixStream(sock)


def _address(listener: trio.abc.Listener[trio.abc.Stream]) -> object:
    if isinstance(listener, trio.SocketListener):
        return listener.socket.getsockname()
    return repr(listener)


def _payload_outcome(payload: Payload) -> tuple[bool, str]:
    if isinstance(payload, Failure):
        return False, f"failure: {payload.message}"
    if isinstance(payload, StringReply):
        return True, f"success: {payload.text}"
    return True, f"success: {type(payload).__name__}"


@dataclass
class Endpoint:
    """The TLS endpoint: a TLS context, the daemon socket directory and the limits."""

    ssl_context: ssl.SSLContext
    socket_dir: Path
    limits: Limits = field(default_factory=Limits)
    counter: SequenceCounter = field(default_factory=SequenceCounter)
    security: Security | None = None  # issue 6 rules (tlsendpoint.security); None: albatross's
    #: The time chains are judged at.  OpenSSL reads the system time itself; any
    #: other clock (a test replaying captured certificates) is pinned into the
    #: TLS context before each handshake.
    clock: Clock = system_clock
    metrics: EndpointMetrics | None = None  # --metrics (tlsendpoint.metrics)

    def __post_init__(self) -> None:
        self.limiter = trio.CapacityLimiter(self.limits.max_connections)
        self.active = 0
        self.cert_budget = self._certificate_budget()
        self.vmmd_query = daemon_query(  # the quota check's usage queries
            self.socket_dir / Socket.VMMD.filename,
            self.counter.next,
            self.limits.daemon_timeout,
            self.limits.max_frame,
        )

    def _certificate_budget(self) -> CertificateBudget | None:
        """Connections start at OpenSSL's default chain limit; big chains take a share.

        Proven at start-up: one connection's limit is raised and read back (ctypes;
        :func:`set_connection_max_cert_list`), or the endpoint does not start.
        """
        largest = self.limits.max_cert_list
        if largest <= SMALL_CHAIN:
            set_max_cert_list(self.ssl_context, largest)
            return None
        budget = CertificateBudget(self.limits.cert_budget, largest)
        set_max_cert_list(self.ssl_context, SMALL_CHAIN)
        probe = self.ssl_context.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_side=True)
        set_connection_max_cert_list(probe, largest)
        return budget

    # -- one connection ----------------------------------------------------------

    async def _reply(
        self,
        client: FramedStream,
        name: Name,
        version: int,
        payload: Payload,
        record: ConnectionRecord,
    ) -> None:
        """Send the final reply; if that fails, say so in the log line (albatross ignores it)."""
        message = Message(Header(name, 0, version), payload)
        with trio.move_on_after(self.limits.send_timeout) as sending:
            try:
                await client.send_message(message)
            except TransportError as exc:
                record.outcome += f" (reply not delivered: {exc.message})"
                record.ok = False
        if sending.cancelled_caught:
            record.outcome += f" (reply not taken within {self.limits.send_timeout:g} s)"
            record.ok = False

    # -- metrics: they observe, they never decide ------------------------------------

    def _observe(self, what: str, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T | None:
        """Run the metrics call *what*; its failure is logged, and the connection goes on."""
        try:
            return fn(*args, **kwargs)
        except Exception:  # e.g. a full disk under the --workers value files
            LOGGER.exception("metrics: %s failed; the connection is not affected", what)
            return None

    def _hook(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """:mod:`tlsendpoint.metrics`'s hook *name* with --metrics (imported only then)."""
        if self.metrics is None:
            return None
        from tlsendpoint import metrics as hooks

        return self._observe(name, getattr(hooks, name), *args, **kwargs)

    async def _handshake(self, tls: TLSStream, record: ConnectionRecord) -> bool:
        """The TLS handshake under its deadline; False (and the reason logged) if it failed."""
        with trio.move_on_after(self.limits.handshake_timeout):
            try:
                await tls.do_handshake()
            except trio.BrokenResourceError as exc:
                record.outcome = f"TLS handshake failed: {exc}"
                self._hook("note_handshake", str(exc), timed_out=False, waiting_for_budget=False)
                return False
            return True
        record.outcome = f"TLS handshake not completed within {self.limits.handshake_timeout:g} s"
        self._hook(
            "note_handshake", None, timed_out=True, waiting_for_budget=tls.waiting_for_budget
        )
        if tls.waiting_for_budget and self.cert_budget is not None:
            budget = self.cert_budget.describe()
            record.outcome += f" (waiting for a share of the certificate budget: {budget})"
        return False

    async def _authorize(
        self, tls: TLSStream, record: ConnectionRecord, gate: Gate | None
    ) -> Request:
        try:
            chain = peer_chain(tls.ssl_object)
        except ValueError as exc:  # OpenSSL accepted DER that cryptography refuses
            raise Refusal(f"certificate not acceptable: {exc}") from exc
        if LOGGER.isEnabledFor(logging.WARNING):  # -q: no fingerprints
            record.chain = describe_chain(chain)
        # the parsed chain is not kept: a held subscription must not hold the certificates
        request = authorize(chain) if gate is None else await gate.authorize(chain)
        self._hook("note_chain", chain, request, checked=gate is not None)
        return request

    async def _serve_request(
        self,
        client: FramedStream,
        request: Request,
        record: ConnectionRecord,
        gate: Gate | None,
    ) -> Payload | None:
        """The final payload for the client, or None if the client went away."""
        record.name = str(request.name)
        record.command = command_name(request.command)
        stats = SessionStats()
        try:
            run = partial(
                serve_request, client, request, self.socket_dir, self.limits, self.counter, stats
            )
            streaming = self._hook("stream_open", self.metrics, request)
            with streaming if streaming is not None else contextlib.nullcontext():
                return await (run() if gate is None else gate.serve(request, run))
        except RequestFailed as failed:
            self._hook("note_refusal", failed)
            return Failure(failed.message)
        except ClientGone as gone:
            record.outcome = f"client gone: {gone.message}"
            return None
        finally:
            self._hook("note_upload", stats.uploaded + stats.relayed)
            record.details.extend(
                f"{key}={value}"
                for key, value in (
                    ("uploaded", stats.uploaded),
                    ("relayed", stats.relayed),
                    ("streamed", stats.forwarded),
                )
                if value
            )

    async def _serve_tls(
        self, tls: TLSStream, record: ConnectionRecord, gate: Gate | None = None
    ) -> None:
        if not await self._handshake(tls, record):
            return
        client = FramedStream(tls, self.limits.max_frame, "client")
        name, version = ROOT, VERSION  # the reply header until a request is known
        failure: str | None = None
        reply: Payload
        try:
            request = await self._authorize(tls, record, gate)
            name, version = request.name, request.version
            payload = await self._serve_request(client, request, record, gate)
            if payload is None:
                return
            record.ok, record.outcome = _payload_outcome(payload)
            reply = payload
        except Refusal as refusal:
            self._hook("note_refusal", refusal, None if gate is None else gate.request)
            record.outcome = f"refused: {refusal.message}"
            reply = Failure(refusal.message)
        except TransportError as exc:  # the client's connection broke: nobody to answer
            record.outcome = f"connection broken: {exc.message}"
            return
        except Exception as exc:  # a bug: the client still gets an answer, the log the details
            LOGGER.exception("internal error while serving %s", record.peer)
            failure = f"internal error: {type(exc).__name__}: {exc}"
        if failure is not None:  # replied outside the except block: the traceback is let go
            record.outcome = failure
            reply = Failure(failure)
        await self._reply(client, name, version, reply, record)

    async def handle(self, transport: trio.abc.Stream, peer: str | None = None) -> None:
        """Serve one accepted connection; never raises (except cancellation)."""
        record = ConnectionRecord(peer or describe_peer(transport))
        started = trio.current_time()
        now = self.clock()
        if self.clock is not system_clock:
            set_verify_time(self.ssl_context, now)
        tls = TLSStream(
            lean_stream(transport), self.ssl_context, budget=self.cert_budget, linger=True
        )
        gate = (
            None
            if self.security is None
            else Gate(self.security, record.peer, self.vmmd_query, now)
        )
        self.active += 1
        seen = None
        failure: str | None = None
        try:
            if self.metrics is not None:
                seen = self._observe("open", self.metrics.open)
            await self._serve_tls(tls, record, gate)
        except (TransportError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            failure = f"connection broken: {exc}"
        except AlbatrossError as exc:
            failure = f"error: {exc.message}"
        except Exception as exc:  # one bad connection must never stop the server
            LOGGER.exception("internal error while serving %s", record.peer)
            failure = f"internal error: {type(exc).__name__}: {exc}"
        except trio.Cancelled:
            record.ok = False
            record.outcome = "ended by shutdown (grace period over)"
            raise
        finally:
            self.active -= 1
            with trio.CancelScope(shield=True):  # cleanup and the log line survive cancellation
                with (
                    trio.move_on_after(CLOSE_TIMEOUT),
                    contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError),
                ):
                    await tls.aclose()  # closes the transport too, even when cancelled
                tls.close()
            if failure is not None:
                record.ok, record.outcome = False, failure
            if gate is not None:  # the audit record (security), before the log line
                with trio.CancelScope(shield=True):  # bounded by the audit write's deadline
                    head = await gate.close(record.outcome, trio.current_time() - started)
                if head is not None:
                    record.details.append(f"audit={head}")
                if gate.refusal is not None:  # by gate.serve
                    self._hook("note_refusal", gate.refusal)
                if gate.security.audit_log is not None:
                    self._hook("note_audit", head is not None)
            if self.metrics is not None and seen is not None:  # counted before the log line
                self._observe("close", self.metrics.close, seen, record.ok)
            level = logging.INFO if record.ok else logging.WARNING
            if LOGGER.isEnabledFor(level):  # -q: no formatting, no fingerprints
                took = trio.current_time() - started
                fields = {JOURNAL_FIELDS: record.fields(took)}  # the journal's own fields
                LOGGER.log(level, "%s", record.line(took), extra=fields)

    # -- listeners ---------------------------------------------------------------

    async def _run_connection(self, transport: trio.abc.Stream, token: object) -> None:
        try:
            await self.handle(transport)
        finally:
            self.limiter.release_on_behalf_of(token)

    async def _accept_loop(
        self, listener: trio.abc.Listener[trio.abc.Stream], connections: trio.Nursery
    ) -> None:
        while True:
            token = object()
            await self.limiter.acquire_on_behalf_of(token)
            try:
                transport = await listener.accept()
            except OSError as exc:
                self.limiter.release_on_behalf_of(token)
                if exc.errno not in _ACCEPT_RESOURCE_ERRORS:
                    raise
                LOGGER.error("accept failed: %s; retrying in %s s", exc, ACCEPT_ERROR_PAUSE)
                await trio.sleep(ACCEPT_ERROR_PAUSE)
                continue
            except BaseException:
                self.limiter.release_on_behalf_of(token)
                raise
            connections.start_soon(self._run_connection, lean_stream(transport), token)
            if isinstance(listener, trio.SocketListener):
                # borrowed (not dup'ed: no extra descriptor); O_NONBLOCK is trio's
                backlog = socket.socket(fileno=listener.socket.fileno())
                try:
                    self._accept_waiting(backlog, connections)
                finally:
                    backlog.detach()

    def _accept_waiting(self, backlog: socket.socket, connections: trio.Nursery) -> None:
        """Take up to ACCEPT_BURST connections already in the backlog, without yielding.

        trio's ``accept`` checkpoints after every connection, so under load the
        backlog drains one connection per scheduler round while the accepted
        ones are served: the queued ones wait many rounds (tail latency).
        """
        for _ in range(ACCEPT_BURST):
            token = object()
            try:
                self.limiter.acquire_on_behalf_of_nowait(token)
            except trio.WouldBlock:
                return
            try:
                sock, _ = backlog.accept()
            except OSError:  # none waiting (EAGAIN); real errors come from the awaited accept
                self.limiter.release_on_behalf_of(token)
                return
            connections.start_soon(self._run_connection, _accepted(sock), token)

    async def serve(
        self,
        listeners: Sequence[trio.abc.Listener[trio.abc.Stream]],
        shutdown: trio.Event,
        *,
        task_status: trio.TaskStatus[list[object]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Accept on *listeners* until *shutdown* is set, then drain within the grace period."""
        async with trio.open_nursery() as connections:
            async with trio.open_nursery() as accepting:
                for listener in listeners:
                    accepting.start_soon(self._accept_loop, listener, connections)
                if self.security is not None:
                    accepting.start_soon(reload_on_sighup, self.security)
                if self.metrics is not None:
                    accepting.start_soon(self.metrics.refresh_forever, self.vmmd_query)
                task_status.started([_address(lst) for lst in listeners])
                await shutdown.wait()
                accepting.cancel_scope.cancel()
            for listener in listeners:
                await listener.aclose()
            if self.active:
                LOGGER.warning(
                    "stopping: %d connection(s) still running, %g s grace period",
                    self.active,
                    self.limits.grace_period,
                )
            connections.cancel_scope.deadline = trio.current_time() + self.limits.grace_period
