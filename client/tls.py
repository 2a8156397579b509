# TLS 1.3 client over a trio stream, pyOpenSSL in memory-BIO mode.
#
# How it works (trio's _ssl.py rule): change the TLS object, then await exactly
# one thing (send what OpenSSL produced, or receive bytes for it), then loop.
# The certificates are cryptography objects: our leaf + CA chain as the client
# certificate, the --server-ca certificates as the only trust anchors.
#
# Security reasoning.  OpenSSL verifies the server chain (VERIFY_PEER; the
# callback only passes OpenSSL's verdict through).  After the handshake, in pure
# code, we require serverAuth in the server leaf's EKU (or no EKU, as
# ocaml-tls), and - beyond albatross, which checks no name - when a server name
# is known, that it appears in the leaf's subjectAltName, and that the server
# certificate is issued directly by a --server-ca certificate: when the server
# CA is also the root of the delegations, a delegate holding an intermediate CA
# key could otherwise mint a "server" certificate that chains to the root and
# impersonate the endpoint (check_server_issuer).  Failures map to
# albatross-client's exit codes: an alert refusing our certificate is 119, a
# server certificate that does not validate is 120, anything else 121.
from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress

import trio
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import ExtendedKeyUsageOID
from OpenSSL import SSL, crypto

from ca.profiles import PrivateKey
from client.errors import (
    ClientError,
    CommunicationFailed,
    LocalAuthenticationFailed,
    RemoteAuthenticationFailed,
)

__all__ = ["TLSClientStream", "check_server_cert", "check_server_issuer", "classify"]

_CHUNK = 65536


#: Alerts by which a server refuses our certificate (RFC 8446 §6.2), as OpenSSL names them.
#: albatross-client counts bad_certificate and certificate_expired; the endpoint sends the
#: others too (OpenSSL's choice per verification error).  decrypt_error: a signature in our
#: chain or our CertificateVerify did not verify (a CA of the same name but another key).
_REFUSED_OUR_CERTIFICATE = (
    "alert bad certificate",
    "alert certificate expired",
    "alert certificate revoked",
    "alert certificate unknown",
    "alert unsupported certificate",
    "alert unknown ca",
    "alert decrypt error",
    "certificate required",
)


def classify(exc: Exception, stage: str = "failed to establish TLS connection") -> ClientError:
    """Map an OpenSSL error to albatross-client's exit status (``classify_tls_error``)."""
    text = str(exc)
    if any(alert in text for alert in _REFUSED_OUR_CERTIFICATE):
        return LocalAuthenticationFailed(f"local authentication failure {text}")
    if "certificate verify failed" in text:
        return RemoteAuthenticationFailed(f"remote authentication failure {text}")
    return CommunicationFailed(f"{stage}: {text}")


def check_server_cert(cert: x509.Certificate, server_name: str | None) -> None:
    """serverAuth (or no EKU) and, when *server_name* is given, a matching SAN entry."""
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        eku = None
    if eku is not None and ExtendedKeyUsageOID.SERVER_AUTH not in eku:
        raise RemoteAuthenticationFailed(
            "remote authentication failure: the server certificate is not for serverAuth"
        )
    if server_name is None:
        return
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise RemoteAuthenticationFailed(
            f"remote authentication failure: the server certificate names no host, "
            f"expected {server_name} (drop the server name to skip this check)"
        ) from None
    try:
        ip = ipaddress.ip_address(server_name)
    except ValueError:
        wanted = server_name.lower().rstrip(".")
        ok = any(_dns_matches(n, wanted) for n in san.get_values_for_type(x509.DNSName))
    else:
        ok = ip in san.get_values_for_type(x509.IPAddress)
    if not ok:
        raise RemoteAuthenticationFailed(
            f"remote authentication failure: the server certificate is not for {server_name}"
        )


def _dns_matches(pattern: str, wanted: str) -> bool:
    """RFC 6125 §6.4.3: ``*`` only as the whole left-most label, standing for exactly one
    non-empty label (``*.example`` covers ``a.example``, not ``a.b.example``, ``example``
    or ``.example``); case and a final dot do not matter."""
    pattern = pattern.lower().rstrip(".")
    if not pattern.startswith("*."):
        return bool(wanted) and pattern == wanted
    label, dot, rest = wanted.partition(".")
    return bool(label and dot and rest) and rest == pattern[2:]


def check_server_issuer(cert: x509.Certificate, anchors: list[x509.Certificate]) -> None:
    """The server certificate must be a --server-ca certificate or signed directly by one."""
    for anchor in anchors:
        if cert == anchor:
            return
        try:
            cert.verify_directly_issued_by(anchor)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return
    issuer = cert.issuer.rfc4514_string() or "(empty)"
    raise RemoteAuthenticationFailed(
        "remote authentication failure: the server certificate is issued by "
        f"{issuer}, not directly by the --server-ca certificate; an intermediate CA "
        "(a delegate's) may not issue server certificates"
    )


class TLSClientStream:
    """A TLS client connection over *transport*; ``receive_some`` returns b"" at the end."""

    def __init__(
        self,
        transport: trio.abc.Stream,
        certs: list[x509.Certificate],
        key: PrivateKey,
        anchors: list[x509.Certificate],
        sni: str | None = None,
        now: dt.datetime | None = None,
    ) -> None:
        """*now*: verify the server's chain as at that time (None: the system time)."""
        ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
        ctx.set_min_proto_version(SSL.TLS1_3_VERSION)
        ctx.set_max_proto_version(SSL.TLS1_3_VERSION)
        ctx.use_certificate(certs[0])
        ctx.use_privatekey(key)
        for extra in certs[1:]:
            ctx.add_extra_chain_cert(extra)
        store = ctx.get_cert_store()
        assert store is not None
        for anchor in anchors:
            store.add_cert(crypto.X509.from_cryptography(anchor))
        if now is not None:
            store.set_time(now.astimezone(dt.UTC).replace(tzinfo=None))
        self._store = store
        ctx.set_verify(SSL.VERIFY_PEER, lambda _c, _x, _e, _d, ok: bool(ok))
        self._conn = SSL.Connection(ctx, None)
        self._conn.set_connect_state()
        if sni is not None and not _is_ip(sni):
            self._conn.set_tlsext_host_name(sni.encode("idna"))
        self._transport = transport
        self._anchors = anchors
        self._eof = False

    async def _flush(self) -> None:
        while True:
            try:
                data = self._conn.bio_read(_CHUNK)
            except SSL.WantReadError:
                return
            if not data:
                return
            await self._transport.send_all(data)

    async def _feed(self) -> None:
        data = await self._transport.receive_some(_CHUNK)
        if data:
            self._conn.bio_write(data)
        else:
            self._conn.bio_shutdown()

    async def do_handshake(self) -> x509.Certificate:
        """Run the handshake; return the server's leaf certificate."""
        while True:
            try:
                self._conn.do_handshake()
            except SSL.WantReadError:
                await self._flush()
                await self._feed()
                continue
            except SSL.Error as exc:
                await self._try_flush()
                error = classify(exc)
                if isinstance(error, RemoteAuthenticationFailed):
                    error = RemoteAuthenticationFailed(error.message + self._verify_reason())
                raise error from None
            break
        await self._flush()
        peer = self._conn.get_peer_certificate(as_cryptography=True)
        if peer is None:
            raise RemoteAuthenticationFailed("remote authentication failure: no server certificate")
        check_server_issuer(peer, self._anchors)
        return peer

    def _verify_reason(self) -> str:
        """Why OpenSSL refused the server's chain (its handshake error only says that it did).

        The chain the server sent is verified again, with the same anchors and time,
        through pyOpenSSL's public X509StoreContext, whose error carries the reason.
        """
        sent = self._conn.get_peer_cert_chain()
        if not sent:
            return ""
        context = crypto.X509StoreContext(self._store, sent[0], sent[1:])
        try:
            context.verify_certificate()
        except crypto.X509StoreContextError as exc:
            subject = exc.certificate.to_cryptography().subject.rfc4514_string() or "(empty)"
            return f": {exc} ({subject})"
        return ""

    async def _try_flush(self) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            await self._flush()

    async def send_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                sent = self._conn.send(view[:_CHUNK].tobytes())
            except SSL.WantReadError:
                await self._flush()
                await self._feed()
                continue
            except SSL.Error as exc:
                raise classify(exc, "write failed") from None
            view = view[sent:]
            await self._flush()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Up to 64 KiB of plaintext (whatever *max_bytes*: a TLS record is read whole)."""
        if self._eof:
            return b""
        while True:
            try:
                return self._conn.recv(_CHUNK)
            except SSL.WantReadError:
                await self._flush()
                await self._feed()
            except SSL.ZeroReturnError:
                self._eof = True
                return b""
            except SSL.SysCallError:
                # Peer closed the TCP connection without close_notify (ocaml-tls Tls_eof).
                self._eof = True
                return b""
            except SSL.Error as exc:
                raise classify(exc, "read failed") from None

    async def aclose(self) -> None:
        try:
            self._conn.shutdown()
            await self._flush()
        except (SSL.Error, trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            await self._transport.aclose()


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
