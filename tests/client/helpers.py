"""Test doubles for the client: a PKI on disk, a fake daemon socket and a fake TLS endpoint.

The fakes run in a thread (the CLI under test calls ``trio.run`` itself), serve
one connection at a time with a bounded accept loop, and answer with frames
that a *responder* function returns for the command they received.
"""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import struct
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from ca import profiles
from ca.profiles import PrivateKey
from core import certs
from core.wire import (
    BlockSet,
    Command,
    Header,
    Message,
    Name,
    Payload,
    Policy,
    decode_extension,
    decode_message,
    encode_message,
    frame,
)
from tlsendpoint.tlscontext import set_verify_time

NOW = dt.datetime.now(dt.UTC)
ALICE_POLICY = Policy(2, frozenset({0}), 64, 100, frozenset({"service"}))


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.PEM)


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())


@dataclass
class Pki:
    """A root CA, a server certificate (SAN albatross.test, 127.0.0.1), CA alice, a stranger CA."""

    root: Path
    #: When everything is issued (tests of expiry pick a day far from today).
    now: dt.datetime = NOW
    root_cert: x509.Certificate = field(init=False)
    root_key: PrivateKey = field(init=False)

    def __post_init__(self) -> None:
        d = self.root
        self.root_key = profiles.generate_key()
        self.root_cert = profiles.root_ca(self.root_key, "ca", self.now)
        (d / "cacert.pem").write_bytes(pem(self.root_cert))
        (d / "ca.pem").write_bytes(pem(self.root_cert))
        (d / "ca.key").write_bytes(key_pem(self.root_key))
        server_key = profiles.generate_key()
        server = profiles.server_cert(
            self.root_cert,
            self.root_key,
            server_key.public_key(),
            "server",
            self.now,
            dns_names=["albatross.test"],
            ips=["127.0.0.1"],
        )
        (d / "server.pem").write_bytes(pem(server))
        (d / "server.key").write_bytes(key_pem(server_key))
        alice_key = profiles.generate_key()
        alice = profiles.intermediate(
            self.root_cert, self.root_key, alice_key.public_key(), "alice", ALICE_POLICY, self.now
        )
        (d / "alice.pem").write_bytes(pem(alice))
        (d / "alice.key").write_bytes(key_pem(alice_key))
        other_key = profiles.generate_key()
        other = profiles.root_ca(other_key, "stranger", self.now)
        (d / "stranger.pem").write_bytes(pem(other))
        (d / "stranger.key").write_bytes(key_pem(other_key))
        impostor_key = profiles.generate_key()
        impostor = profiles.server_cert(
            other, other_key, impostor_key.public_key(), "server", self.now, ips=["127.0.0.1"]
        )
        (d / "impostor.pem").write_bytes(pem(impostor))
        (d / "impostor.key").write_bytes(key_pem(impostor_key))

    def path(self, name: str) -> str:
        return str(self.root / name)

    def remote_args(self, port: int, ca: str = "ca") -> list[str]:
        return [
            "--destination",
            f"127.0.0.1:{port}",
            "--ca",
            self.path(f"{ca}.pem" if ca != "ca" else "cacert.pem"),
            "--ca-key",
            self.path(f"{ca}.key"),
            "--server-ca",
            self.path("cacert.pem"),
        ]


def reply(name: Name, payload: Payload) -> bytes:
    return frame(encode_message(Message(Header(name), payload)))


def _recv_exact(sock: socket.socket | ssl.SSLSocket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


def read_frame(sock: socket.socket | ssl.SSLSocket) -> bytes | None:
    (length,) = struct.unpack(">i", _recv_exact(sock, 4))
    if length <= 0:
        return None
    return _recv_exact(sock, length)


def read_stream(sock: socket.socket | ssl.SSLSocket) -> list[bytes]:
    chunks = []
    while (chunk := read_frame(sock)) is not None:
        chunks.append(chunk)
    return chunks


@dataclass
class Seen:
    """What a fake received: the command (and name), and an uploaded data stream."""

    name: Name | None
    command: Command
    data: list[bytes]
    cn: str | None = None
    chain_len: int = 0


Responder = Callable[[Seen], list[bytes]]


@dataclass
class _Server:
    sock: socket.socket
    seen: list[Seen] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)


def _serve(server: _Server, handle: Callable[[socket.socket], None]) -> None:
    server.sock.settimeout(0.1)
    while not server.stop.is_set():
        try:
            conn, _ = server.sock.accept()
        except (TimeoutError, OSError):
            continue
        conn.settimeout(10)
        try:
            handle(conn)
        except (EOFError, OSError, ssl.SSLError):
            pass
        finally:
            conn.close()


def _hold(tls: ssl.SSLSocket, stop: threading.Event) -> None:
    """Keep the connection open until the client closes it or the fake stops.

    No deadline of its own: a held connection ends only by the client (what the
    test waits for) or when the test leaves the fake's context.
    """
    tls.settimeout(0.2)
    while not stop.is_set():
        try:
            if not tls.recv(1):
                return
        except TimeoutError:
            continue
        except (OSError, ssl.SSLError):
            return


@contextmanager
def fake_daemon(path: Path, responder: Responder) -> Iterator[list[Seen]]:
    """A unix-socket daemon at *path*: read a command (+ block-set stream), send replies."""
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    sock.listen(4)
    server = _Server(sock)

    def handle(conn: socket.socket) -> None:
        body = read_frame(conn)
        assert body is not None
        msg = decode_message(body)
        command = msg.payload
        data = read_stream(conn) if isinstance(command, BlockSet) else []
        seen = Seen(msg.header.name, command, data)  # type: ignore[arg-type]
        server.seen.append(seen)
        for chunk in responder(seen):
            conn.sendall(chunk)

    thread = threading.Thread(target=_serve, args=(server, handle), daemon=True)
    thread.start()
    try:
        yield server.seen
    finally:
        server.stop.set()
        thread.join(5)
        sock.close()


def fake_endpoint(
    pki: Pki,
    responder: Responder,
    *,
    server_cert: str = "server",
    trust: str = "cacert.pem",
    hold: bool = False,
    closed: threading.Event | None = None,
    now: dt.datetime | None = None,
) -> AbstractContextManager[tuple[int, list[Seen]]]:
    """A TLS 1.3 endpoint on 127.0.0.1 that reads the command from the client's leaf."""
    return fake_tls_server(
        Path(pki.path(f"{server_cert}.pem")),
        Path(pki.path(f"{server_cert}.key")),
        Path(pki.path(trust)),
        responder,
        hold,
        now=now,
        closed=closed,
    )


@contextmanager
def fake_tls_server(
    cert: Path,
    key: Path,
    trust: Path,
    responder: Responder,
    hold: bool = False,
    now: dt.datetime | None = None,
    closed: threading.Event | None = None,
) -> Iterator[tuple[int, list[Seen]]]:
    """The fake endpoint with explicit certificate, key and client trust anchor files.

    With *hold*, the connection stays open after the replies until the client closes
    it (or the fake stops); *closed* is then set once the client has closed.  *now*:
    judge the client's chain as at that time (captured certificates), not today.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(cert, key)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(trust)
    if now is not None:
        set_verify_time(ctx, now)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(4)
    server = _Server(sock)

    def handle(conn: socket.socket) -> None:
        with ctx.wrap_socket(conn, server_side=True) as tls:
            der = tls.getpeercert(binary_form=True)
            assert der is not None
            leaf = x509.load_der_x509_certificate(der)
            command = certs.albatross_command(leaf)
            assert command is not None
            data = read_stream(tls) if isinstance(command, BlockSet) else []
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # an empty CN (policy at root)
                cn = certs.common_name(leaf.subject)
            seen = Seen(None, command, data, cn)
            server.seen.append(seen)
            for chunk in responder(seen):
                tls.sendall(chunk)
            if hold:
                _hold(tls, server.stop)
                if closed is not None:
                    closed.set()
            with suppress(OSError, ssl.SSLError):
                tls.unwrap()

    thread = threading.Thread(target=_serve, args=(server, handle), daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1], server.seen
    finally:
        server.stop.set()
        thread.join(5)
        sock.close()


def decode_ext(hexstr: str) -> Command:
    return decode_extension(bytes.fromhex(hexstr))
