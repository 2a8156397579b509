"""One authorised request, carried to its daemon and back (albatross_tls_endpoint.ml ``handle``).

After the handshake and :func:`core.authorize.authorize`, the sequence is
albatross's (behaviour.md §2.6): take an uploaded image if the certificate's is
empty; connect to the daemon socket of the command's route; for vmmd push the
chain's policies first, deepest first, each answered before the next; send the
command; relay the client's data stream for block set; then relay the reply in
the route's mode and return the *final payload*, which the caller sends with
header (certificate version, 0, derived name).

Differences from albatross, all in the direction of "never hang, never hoard,
always say why": every wait has a deadline from :class:`Limits`; uploads are
bounded; failures albatross answers with silence (an aborted upload) get a
reason; while a stream runs we also watch the client, so a client that goes
away ends the daemon connection at once instead of at the next daemon write
(§2.8, mollymawk #193).  Failure texts start with albatross's own words.

The caller may pass *admit*, a context entered once the request is ready for its
daemon - after the client's upload, before connecting - and left after the daemon's
reply (or the stream's end).  The security gate checks quotas and records the leaf
there, so nothing it holds (the host-wide quota lock) waits on a client's upload.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from functools import partial
from pathlib import Path
from typing import TypeVar

import trio

from core.authorize import Request
from core.errors import AlbatrossError, ParseError
from core.routing import ReplyMode, Socket, route, streams_upward, uploads_image
from core.wire import (
    SUCCESS_TYPES,
    BlockData,
    Command,
    End,
    Failure,
    Header,
    Message,
    Payload,
    PolicyAdd,
    UnikernelCreate,
)
from tlsendpoint.limits import Limits
from transport.framed import FramedStream, TransportError
from transport.unix import UnixStream, open_unix

__all__ = [
    "Admit",
    "ClientGone",
    "RequestFailed",
    "SequenceCounter",
    "SessionStats",
    "UploadFailed",
    "serve_request",
]

T = TypeVar("T")

#: Entered with the command as it goes to its daemon (upload done), left after its reply.
Admit = Callable[[Command], AbstractAsyncContextManager[object]]


def _admit_all(_command: Command) -> AbstractAsyncContextManager[object]:
    return contextlib.nullcontext()


class RequestFailed(AlbatrossError):
    """The request cannot be completed; ``message`` is the failure sent to the client."""


class UploadFailed(RequestFailed):
    """The client's upload broke a limit (--max-image, --upload-timeout) or its stream."""


class ClientGone(AlbatrossError):
    """The client went away; there is nobody left to send a reply to."""


class SequenceCounter:
    """albatross's global sequence number, shared by all connections, starting at 0."""

    def __init__(self) -> None:
        self.value = 0

    def next(self) -> int:
        value = self.value
        self.value += 1
        return value


@dataclasses.dataclass
class SessionStats:
    """What happened, for the connection's log line."""

    uploaded: int = 0
    relayed: int = 0
    forwarded: int = 0


async def _deadline(
    seconds: float,
    action: Awaitable[T],
    on_timeout: str,
    error: type[RequestFailed] = RequestFailed,
) -> T:
    with trio.move_on_after(seconds):
        return await action
    raise error(on_timeout)


async def _guard(
    seconds: float,
    action: Callable[[], Awaitable[T]],
    failure: str,
    what: str,
    error: type[RequestFailed] = RequestFailed,
) -> T:
    """Run *action* under a deadline; any transport or parse error becomes *failure*."""
    try:
        return await _deadline(
            seconds, action(), f"{failure}: {what} timed out after {seconds:g} s", error
        )
    except (TransportError, ParseError) as exc:
        raise error(f"{failure}: {exc.message}") from exc


async def _receive_image(
    client: FramedStream, command: UnikernelCreate, limits: Limits, stats: SessionStats
) -> UnikernelCreate:
    chunks: list[bytes] = []
    failure = "error retrieving unikernel image"
    while True:
        item = await _guard(
            limits.upload_timeout, client.receive_frame, failure, "waiting for data", UploadFailed
        )
        if isinstance(item, End):
            break
        stats.uploaded += len(item)
        if stats.uploaded > limits.max_image:
            raise UploadFailed(
                f"{failure}: the image exceeds the limit of {limits.max_image} octets"
                " (endpoint option --max-image)"
            )
        chunks.append(item)
    config = dataclasses.replace(command.config, image=b"".join(chunks))
    return dataclasses.replace(command, config=config)


async def _connect(path: Path, socket: Socket, limits: Limits) -> FramedStream:
    try:
        stream = await _deadline(
            limits.daemon_timeout,
            open_unix(str(path)),
            f"couldn't reach service {socket.value}: connecting to {path} timed out",
        )
    except OSError as exc:
        raise RequestFailed(
            f"couldn't reach service {socket.value}: {path}: {exc.strerror or exc}"
        ) from exc
    return FramedStream(stream, limits.max_frame, f"{socket.value} daemon")


def _describe_reply(message: Message) -> str:
    """albatross's ``pp_wire`` for a reply, as far as failures need it."""
    payload, name = message.payload, message.header.name.pretty()
    if isinstance(payload, Failure):
        return f"host {name}: command failed {payload.message}"
    return f"host {name}: {type(payload).__name__}"


async def _push_policies(
    daemon: FramedStream, request: Request, counter: SequenceCounter, limits: Limits
) -> None:
    for path, policy in request.policies:
        message = Message(Header(path, counter.next()), PolicyAdd(policy))
        await _guard(
            limits.daemon_timeout,
            partial(daemon.send_message, message),
            "failed to write policy",
            "writing",
        )
        reply = await _guard(
            limits.daemon_timeout,
            daemon.receive_message,
            "read error after writing policy",
            "waiting for the reply",
        )
        if not isinstance(reply.payload, SUCCESS_TYPES):
            raise RequestFailed(
                f"expected success when adding policy, got: {_describe_reply(reply)}"
            )


async def _relay_upward(
    client: FramedStream, daemon: FramedStream, limits: Limits, stats: SessionStats
) -> None:
    while True:
        item = await _guard(
            limits.upload_timeout,
            client.receive_frame,
            "reading tls chunk",
            "waiting for data",
            UploadFailed,
        )
        if isinstance(item, End):
            await _guard(limits.daemon_timeout, daemon.send_end, "writing block data", "writing")
            return
        await _guard(
            limits.daemon_timeout,
            partial(daemon.send_frame, item),
            "writing block data",
            "writing",
        )
        stats.relayed += len(item)


async def _watch_client(client: FramedStream, gone: trio.Event, scope: trio.CancelScope) -> None:
    """Discard anything the client sends during a stream; on EOF or error, end the stream."""
    try:
        while await client.stream.receive_some(65536):
            pass
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    gone.set()
    scope.cancel()


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    found: BaseException = group
    while isinstance(found, BaseExceptionGroup):
        found = found.exceptions[0]
    return found


async def _relay_stream(
    client: FramedStream,
    daemon: FramedStream,
    request: Request,
    mode: ReplyMode,
    limits: Limits,
    stats: SessionStats,
) -> Payload:
    timeout = limits.idle_timeout if mode is ReplyMode.READ else limits.daemon_timeout
    gone = trio.Event()
    final: Payload = Failure("exception while reading from fd")
    stalled: str | None = None  # raised after the nursery: strict exception groups
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_watch_client, client, gone, nursery.cancel_scope)
            while True:
                with trio.move_on_after(timeout) as idle:
                    try:
                        message = await daemon.receive_message()
                    except (TransportError, ParseError) as exc:
                        final = Failure(f"exception while reading from fd: {exc.message}")
                        break
                if idle.cancelled_caught:
                    final = Failure(
                        f"exception while reading from fd: no message from the {daemon.peer}"
                        f" for {timeout:g} s, closing the stream"
                    )
                    break
                if isinstance(message.payload, BlockData) and message.payload.data is None:
                    final = message.payload
                    break
                header = dataclasses.replace(message.header, version=request.version)
                try:
                    with trio.fail_after(limits.send_timeout):
                        await client.send_message(Message(header, message.payload))
                except TransportError as exc:
                    stalled = f"the client went away during the stream: {exc.message}"
                    break
                except trio.TooSlowError:
                    stalled = (
                        f"the client stopped reading the stream (a message was not taken"
                        f" within {limits.send_timeout:g} s)"
                    )
                    break
                stats.forwarded += 1
            nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # A shutdown cancels both tasks: the caller wants one Cancelled, not a group of them.
        if group.split(trio.Cancelled)[1] is None:
            raise _first(group) from None
        raise
    if stalled is not None:
        raise ClientGone(stalled)
    if gone.is_set():
        raise ClientGone(f"the client closed the connection after {stats.forwarded} messages")
    return final


async def serve_request(
    client: FramedStream,
    request: Request,
    socket_dir: Path,
    limits: Limits,
    counter: SequenceCounter,
    stats: SessionStats,
    admit: Admit = _admit_all,
) -> Payload:
    """Carry *request* to its daemon (inside *admit*); return the final payload for the client."""
    command: Command = request.command
    if uploads_image(command):
        assert isinstance(command, UnikernelCreate)
        command = await _receive_image(client, command, limits, stats)
    async with admit(command):
        return await _forward(client, request, command, socket_dir, limits, counter, stats)


async def _forward(
    client: FramedStream,
    request: Request,
    command: Command,
    socket_dir: Path,
    limits: Limits,
    counter: SequenceCounter,
    stats: SessionStats,
) -> Payload:
    target = route(command)
    daemon = await _connect(socket_dir / target.socket.filename, target.socket, limits)
    try:
        if target.socket is Socket.VMMD:
            await _push_policies(daemon, request, counter, limits)
        message = Message(Header(request.name, counter.next()), command)
        await _guard(
            limits.daemon_timeout,
            partial(daemon.send_message, message),
            "couldn't write unikernel to VMMD",
            "writing",
        )
        if streams_upward(command):
            await _relay_upward(client, daemon, limits, stats)
        if target.mode is ReplyMode.SINGLE:
            reply = await _guard(
                limits.daemon_timeout,
                daemon.receive_message,
                "error reading from fd",
                f"waiting for the {daemon.peer}'s reply",
            )
            return reply.payload
        return await _relay_stream(client, daemon, request, target.mode, limits, stats)
    finally:
        if isinstance(daemon.stream, UnixStream):
            daemon.stream.close()  # synchronous: no cancellation exception
        else:
            await trio.aclose_forcefully(daemon)
