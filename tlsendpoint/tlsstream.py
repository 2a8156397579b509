"""The endpoint's TLS stream: an ``ssl.SSLObject`` driven through memory BIOs.

Why not ``trio.SSLStream`` (the endpoint used it before):

* When OpenSSL refuses a handshake it leaves its alert (``unknown ca``,
  ``certificate expired``, ...) in the outgoing BIO, and trio raises without
  sending it: the client saw a bare EOF.  Here every step sends what OpenSSL
  produced *before* it reports the error.
* Every ``trio.SSLStream`` is in a reference cycle (it keeps ``_Once(self._do_handshake)``,
  a bound method of itself), so a finished connection's SSL object - with the
  peer's certificate chain, up to 16 MiB, parsed twice by OpenSSL - stayed until
  the cycle collector ran, which in an idle endpoint can be never: 50 peers that
  left after sending big chains kept 2.4 GiB.  This stream holds no reference to
  itself, and :meth:`aclose` drops the SSL object and its BIOs at once, even if
  something else (a log record's traceback) still holds the stream.
* The certificate budget must see the client's records before OpenSSL reads
  them (:mod:`tlsendpoint.certbudget`).
* CPU: trio's general machinery (locks, conflict detectors, a scheduler pass per
  transport call) cost about as much as the rest of the endpoint (issue 13).

How it works (trio's rule, ``src/trio/_ssl.py``): change the TLS object, then
await exactly one thing - send what OpenSSL produced, or receive bytes for
it - then loop.  Buffers are bounded: ciphertext goes in one transport read
(64 KiB) at a time and OpenSSL consumes it before the next read; plaintext is
encrypted 64 KiB at a time and sent before the next piece; OpenSSL frees its
record buffers while idle (SSL_MODE_RELEASE_BUFFERS, :mod:`tlscontext`).  On
a socket (:class:`UnixStream`) the system call is tried first and the task
waits only when it would block; every public operation is still a trio
checkpoint, so a fast peer cannot starve the other connections.

Only TLS 1.3 is spoken (the endpoint's context allows nothing else): after the
handshake a write never needs a read, so one task may send while another
receives (a stream relay watches its client while it forwards); ciphertext
from both goes out in order, one sender at a time.
"""

from __future__ import annotations

import contextlib
import enum
import operator
import socket
import ssl
from collections.abc import Callable
from typing import TypeVar, cast

import trio

from tlsendpoint.certbudget import FULL_RECORD, CertificateBudget, FirstRecordScanner
from tlsendpoint.tlscontext import set_connection_max_cert_list
from transport.unix import UnixStream

__all__ = ["READ_SIZE", "WRITE_CHUNK", "TLSStream"]

#: Largest transport read, and so the most ciphertext handed to OpenSSL at once.
READ_SIZE = 65536
#: Plaintext encrypted before its ciphertext is sent.
WRITE_CHUNK = 65536

# Every read goes through this one buffer, and what arrived is copied out at once, before
# any await (one thread runs all streams).  ``recv(65536)`` and ``SSLObject.read(65536)``
# would allocate 64 KiB per call and shrink it to the octets received: the freed tails
# scatter glibc's heap between the small objects a held stream keeps, and the process's
# memory per held connection grew with them (issue 13).
_SCRATCH = bytearray(READ_SIZE)
_SCRATCH_VIEW = memoryview(_SCRATCH)

T = TypeVar("T")


class _State(enum.Enum):
    HANDSHAKE = "handshake"
    OPEN = "open"
    BROKEN = "broken"
    CLOSED = "closed"


class _Tls:
    """The SSL object and its two BIOs: dropped together when the stream closes."""

    __slots__ = ("incoming", "outgoing", "ssl_object")

    def __init__(
        self,
        context: ssl.SSLContext,
        server_side: bool,
        server_hostname: str | None,
    ) -> None:
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.ssl_object = context.wrap_bio(
            self.incoming, self.outgoing, server_side=server_side, server_hostname=server_hostname
        )


class TLSStream(trio.abc.Stream):
    """TLS over *transport*; the server side by default, the client side for tests.

    *budget*: the certificate budget a server-side handshake takes a share of;
    *linger*: :meth:`aclose` waits for the peer to close (see :meth:`_linger`).
    """

    def __init__(
        self,
        transport: trio.abc.Stream,
        context: ssl.SSLContext,
        *,
        server_side: bool = True,
        server_hostname: str | None = None,
        budget: CertificateBudget | None = None,
        linger: bool = False,
    ) -> None:
        self.transport = transport
        self._lingers = linger
        self._socket = transport.socket if isinstance(transport, UnixStream) else None
        self._tls: _Tls | None = _Tls(context, server_side, server_hostname)
        self._state = _State.HANDSHAKE
        self._budget = budget if server_side else None
        self._scanner = FirstRecordScanner() if self._budget is not None else None
        self._token = object()  # the budget's borrower: not the stream, so it cannot pin it
        self._holds_share = False
        #: True while the handshake waits for a share of the certificate budget.
        self.waiting_for_budget = False
        self._busy_handshake = False
        self._busy_receive = False
        self._busy_send = False
        self._flushing = False
        self._flushed: trio.Event | None = None
        self._alert_sent = False

    # -- state --------------------------------------------------------------------

    def _live(self) -> _Tls:
        if self._tls is None:
            raise trio.ClosedResourceError("the TLS stream was closed")
        return self._tls

    def _check_usable(self) -> None:
        if self._state is _State.CLOSED:
            raise trio.ClosedResourceError("the TLS stream was closed")
        if self._state is _State.BROKEN:
            raise trio.BrokenResourceError("the TLS connection failed earlier")

    @property
    def ssl_object(self) -> ssl.SSLObject:
        """The connection's ``ssl.SSLObject`` (the verified chain, the cipher)."""
        return self._live().ssl_object

    @property
    def holds_budget_share(self) -> bool:
        return self._holds_share

    # -- the transport ------------------------------------------------------------

    async def _send_bytes(self, data: bytes) -> bool:
        """Write *data* to the transport; True if the task waited (a checkpoint)."""
        sock = self._socket
        if sock is None:
            await self.transport.send_all(data)
            return True
        view = memoryview(data)
        waited = False
        while view:
            error: str | None = None
            try:
                sent = sock.send(view)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                error = f"sending failed: {exc}"
            if error is not None:
                raise trio.BrokenResourceError(error)
            if sent:
                view = view[sent:]
            else:
                await trio.lowlevel.wait_writable(sock)
                waited = True
        return waited

    async def _receive_bytes(self) -> tuple[bytes | bytearray, bool]:
        """One transport read (b"" at EOF), and whether the task waited."""
        sock = self._socket
        if sock is None:
            return await self.transport.receive_some(READ_SIZE), True
        waited = False
        while True:
            error: str | None = None
            try:
                received = sock.recv_into(_SCRATCH_VIEW, READ_SIZE)
                return bytes(_SCRATCH_VIEW[:received]), waited
            except BlockingIOError:
                pass
            except OSError as exc:
                error = f"receiving failed: {exc}"
            if error is not None:
                raise trio.BrokenResourceError(error)
            await trio.lowlevel.wait_readable(sock)
            waited = True

    async def _flush(self) -> bool:
        """Send everything OpenSSL produced, in order; one task writes at a time."""
        waited = False
        tls = self._live()
        while tls.outgoing.pending:
            if self._flushing:  # the writing task sends our bytes too; wait until it is done
                if self._flushed is None:
                    self._flushed = trio.Event()
                await self._flushed.wait()
                waited = True
                self._check_usable()
                continue
            self._flushing = True
            try:
                while tls.outgoing.pending:
                    waited |= await self._send_bytes(tls.outgoing.read())
            except BaseException:
                self._state = _State.BROKEN  # part of a record may be out: nothing can follow
                raise
            finally:
                self._flushing = False
                if self._flushed is not None:
                    self._flushed.set()
                    self._flushed = None
        return waited

    async def _pull(self) -> bool:
        """Feed one transport read to OpenSSL (through the budget during the handshake)."""
        data, waited = await self._receive_bytes()
        tls = self._live()
        if not data:
            tls.incoming.write_eof()
            return waited
        if self._scanner is not None:
            length = self._scanner.feed(data)
            if length is not None:
                self._scanner = None
                if length >= FULL_RECORD:
                    try:
                        await self._take_share()
                    except BaseException:
                        self._state = _State.BROKEN  # *data* is lost
                        raise
                    waited = True
        tls.incoming.write(data)
        return waited

    async def _take_share(self) -> None:
        budget = self._budget
        assert budget is not None
        self.waiting_for_budget = True  # stays so if the deadline ends the wait
        await budget.acquire(self._token)
        self.waiting_for_budget = False
        self._holds_share = True
        set_connection_max_cert_list(self._live().ssl_object, budget.share)

    # -- the loop -----------------------------------------------------------------

    async def _retry(self, operation: Callable[[], T]) -> tuple[T, bool]:
        """Run *operation* until OpenSSL completes it; the result and whether we waited."""
        waited = False
        while True:
            failure: str | None = None
            want_read = False
            result: T | None = None
            try:
                result = operation()
            except ssl.SSLWantReadError:
                want_read = True
            except ssl.SSLError as exc:  # OpenSSL's reason, for the log
                failure = str(exc)
            if failure is not None:
                self._state = _State.BROKEN
                self._alert_sent = bool(self._live().outgoing.pending)
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    waited |= await self._flush()  # the alert OpenSSL wrote for the peer
                raise trio.BrokenResourceError(failure)
            if self._live().outgoing.pending:
                waited |= await self._flush()
            if not want_read:
                return result, waited  # type: ignore[return-value]
            waited |= await self._pull()

    # -- trio.abc.Stream ----------------------------------------------------------

    async def do_handshake(self) -> None:
        """Complete the handshake (the caller puts the deadline around it)."""
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._state is not _State.HANDSHAKE:
            self._check_usable()
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        if self._busy_handshake:
            raise trio.BusyResourceError("another task is doing this TLS handshake")
        self._busy_handshake = True
        try:
            _, waited = await self._retry(self._live().ssl_object.do_handshake)
        finally:
            self._busy_handshake = False
        self._state = _State.OPEN
        self._scanner = None
        if not waited:
            await trio.lowlevel.cancel_shielded_checkpoint()

    def _read(self, size: int) -> bytes:
        """Up to *size* octets of plaintext from the records OpenSSL already has."""
        ssl_object = self._live().ssl_object
        total = 0
        size = min(size, READ_SIZE)
        while total < size:
            try:
                # with a buffer, read() returns the count (typeshed says bytes)
                count = cast(int, ssl_object.read(size - total, _SCRATCH_VIEW[total:size]))
            except ssl.SSLZeroReturnError:  # close_notify: the end of the stream
                break
            except ssl.SSLWantReadError:
                if total:
                    break
                raise
            if not count:
                break
            total += count
        return bytes(_SCRATCH_VIEW[:total])

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        size = READ_SIZE if max_bytes is None else operator.index(max_bytes)
        if size < 1:
            raise ValueError("max_bytes must be >= 1")
        if self._busy_receive:
            raise trio.BusyResourceError("another task is receiving on this TLS stream")
        self._busy_receive = True
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
            waited = False
            if self._state is _State.HANDSHAKE:
                await self.do_handshake()
                waited = True
            self._check_usable()
            data, more = await self._retry(lambda: self._read(size))
            if not (waited or more):
                await trio.lowlevel.cancel_shielded_checkpoint()
            return data
        finally:
            self._busy_receive = False

    def _write(self, piece: memoryview) -> None:
        ssl_object = self._live().ssl_object
        while piece:
            piece = piece[ssl_object.write(piece) :]

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._busy_send:
            raise trio.BusyResourceError("another task is sending on this TLS stream")
        self._busy_send = True
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
            waited = False
            if self._state is _State.HANDSHAKE:
                await self.do_handshake()
                waited = True
            self._check_usable()
            view = memoryview(data).cast("B")
            for start in range(0, len(view), WRITE_CHUNK):
                piece = view[start : start + WRITE_CHUNK]
                _, more = await self._retry(lambda: self._write(piece))  # noqa: B023 - awaited now
                waited |= more
            if not waited:
                await trio.lowlevel.cancel_shielded_checkpoint()
        finally:
            self._busy_send = False

    async def wait_send_all_might_not_block(self) -> None:
        if self._busy_send:
            raise trio.BusyResourceError("another task is sending on this TLS stream")
        self._busy_send = True
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
            self._check_usable()
            if self._flushing:
                await self._flush()
            elif self._socket is not None:
                await trio.lowlevel.wait_writable(self._socket)
            else:
                await self.transport.wait_send_all_might_not_block()
        finally:
            self._busy_send = False

    def _release(self) -> None:
        """Drop the SSL object, its buffers and the budget share; the stream is closed."""
        self._state = _State.CLOSED
        self._tls = None
        self._scanner = None
        if self._holds_share:
            self._holds_share = False
            assert self._budget is not None
            self._budget.release(self._token)

    def close(self) -> None:
        """Close at once, without close_notify (a socket transport closes synchronously)."""
        self._release()
        if isinstance(self.transport, UnixStream):
            self.transport.close()

    async def _linger(self) -> None:
        """On a socket: end our direction, then drop what the peer still sends until it closes.

        A peer may still be sending when we close: refused in the middle of its
        flight (a chain over the limit) or of an upload, or simply not done reading
        our last reply.  Closing a socket with unread data, or receiving data after
        the close, makes the kernel answer with a reset, which destroys our alert or
        last reply if the peer has not read it yet (the lingering close of RFC 9112
        §9.6).  So: FIN, then read and discard until the peer closes - bounded by
        the caller's deadline, holding nothing (the SSL object is gone by then).
        Other transports (in-memory pairs) have no resets: nothing to do.  Only with
        ``linger=True`` (the endpoint, which bounds it): otherwise :meth:`aclose`
        would wait for the peer, which a stream's user does not expect.
        """
        sock = self._socket
        if sock is None or not self._lingers:
            return
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            sock.shutdown(socket.SHUT_WR)
            while (await self._receive_bytes())[0]:
                pass

    async def aclose(self) -> None:
        """Send close_notify if the connection is healthy, then close the transport.

        Then, or after a refused handshake, linger (:meth:`_linger`).  The caller
        bounds it; cancelled, it still closes everything.
        """
        if self._state is _State.CLOSED:
            await trio.lowlevel.checkpoint()
            return
        healthy = self._state is _State.OPEN and not self._flushing
        try:
            if self._alert_sent:
                self._release()  # the SSL object and the budget share are not needed for it
                await self._linger()
            elif healthy:
                await trio.lowlevel.checkpoint_if_cancelled()  # aclose_forcefully: no close_notify
                with contextlib.suppress(ssl.SSLError):  # SSLWantReadError: we do not wait
                    self._live().ssl_object.unwrap()  # for the peer's close_notify
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await self._flush()
                self._release()
                await self._linger()
        finally:
            self._release()
            await self.transport.aclose()
