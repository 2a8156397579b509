"""Certificates for the endpoint tests: albatross profiles from :mod:`ca.profiles`,
plus hand-made odd ones (expired, wrong key usage, SHA-1, unknown critical
extension, ...) built with cryptography for the negative cases.
"""

from __future__ import annotations

import datetime as dt
import ssl
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import crypto

from ca import profiles
from ca.profiles import PrivateKey
from core.wire import EXTENSION_OID, Command, Policy, encode_extension
from tlsendpoint.tlscontext import set_verify_time

__all__ = ["Identity", "Pki", "custom_cert", "write_chain"]

NOW = dt.datetime.now(dt.UTC)
ALBATROSS_OID = x509.ObjectIdentifier(EXTENSION_OID)
POLICY = Policy(
    unikernels=10, cpuids=frozenset({0, 1}), memory=1024, block=100, bridges=frozenset({"service"})
)


def _pem_key(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def write_chain(path: Path, certs: list[x509.Certificate]) -> Path:
    path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs))
    return path


@dataclass
class Identity:
    """A certificate chain (leaf first) and the leaf's key."""

    chain: list[x509.Certificate]
    key: PrivateKey

    def client_context(self, tmp: Path, server_ca: x509.Certificate) -> ssl.SSLContext:
        serial = self.chain[0].serial_number
        cert_file = write_chain(tmp / f"client-{serial}.pem", self.chain)
        key_file = tmp / f"client-{serial}.key"
        key_file.write_bytes(_pem_key(self.key))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.load_verify_locations(
            cadata=server_ca.public_bytes(serialization.Encoding.PEM).decode()
        )
        ctx.load_cert_chain(str(cert_file), str(key_file))
        return ctx


@dataclass
class Pki:
    """A root CA, the endpoint's server certificate, and files for both in *tmp*."""

    tmp: Path
    root_key: PrivateKey = field(default_factory=profiles.generate_key)
    #: When certificates are issued, and - if set - the time the client judges the server at.
    now: dt.datetime = NOW
    verify_time: dt.datetime | None = None

    def __post_init__(self) -> None:
        self.root = profiles.root_ca(self.root_key, "ca", self.now)
        self.server_key = profiles.generate_key()
        self.server = profiles.server_cert(
            self.root, self.root_key, self.server_key.public_key(), "server", self.now
        )
        self.ca_file = write_chain(self.tmp / "cacert.pem", [self.root])
        self.cert_file = write_chain(self.tmp / "server.pem", [self.server])
        self.key_file = self.tmp / "server.key"
        self.key_file.write_bytes(_pem_key(self.server_key))

    def sub_ca(
        self,
        cn: str,
        policy: Policy = POLICY,
        parent: tuple[x509.Certificate, PrivateKey] | None = None,
    ) -> tuple[x509.Certificate, PrivateKey]:
        issuer, issuer_key = parent or (self.root, self.root_key)
        key = profiles.generate_key()
        cert = profiles.intermediate(issuer, issuer_key, key.public_key(), cn, policy, self.now)
        return cert, key

    def leaf(
        self, cn: str, command: Command, via: Sequence[tuple[x509.Certificate, PrivateKey]] = ()
    ) -> Identity:
        """A leaf for *command*; *via* lists sub-CAs deepest first (the leaf's issuer first)."""
        issuer, issuer_key = via[0] if via else (self.root, self.root_key)
        key = profiles.generate_key()
        cert = profiles.leaf(issuer, issuer_key, key.public_key(), cn, command, self.now)
        return Identity([cert, *(c for c, _ in via)], key)

    def client(self, identity: Identity) -> ssl.SSLContext:
        ctx = identity.client_context(self.tmp, self.root)
        if self.verify_time is not None:
            set_verify_time(ctx, self.verify_time)
        return ctx


def custom_cert(
    issuer: tuple[x509.Certificate, PrivateKey] | None,
    cn: str | None,
    *,
    key: PrivateKey | None = None,
    command: Command | None = None,
    ca: bool = False,
    path_length: int | None = None,
    key_usage: x509.KeyUsage | bool | None = True,
    eku: list[x509.ObjectIdentifier] | None = None,
    extra: Sequence[tuple[x509.ExtensionType, bool]] = (),
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    hash_alg: Any = None,
    raw_extension: bytes | None = None,
) -> tuple[x509.Certificate, PrivateKey]:
    """A certificate with exactly the oddities a negative test needs."""
    key = key or profiles.generate_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn is not None else [])
    issuer_cert, issuer_key = issuer if issuer else (None, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_cert.subject if issuer_cert else subject)
        .public_key(key.public_key())
        .serial_number(profiles.new_serial())
        .not_valid_before(not_before or NOW - dt.timedelta(seconds=10))
        .not_valid_after(not_after or NOW + dt.timedelta(days=1))
    )
    if command is not None or raw_extension is not None:
        value = raw_extension if raw_extension is not None else encode_extension(command)  # type: ignore[arg-type]
        builder = builder.add_extension(x509.UnrecognizedExtension(ALBATROSS_OID, value), False)
    builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), True)
    if key_usage is True:
        key_usage = x509.KeyUsage(
            digital_signature=True,
            content_commitment=ca,
            key_encipherment=not ca,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=ca,
            crl_sign=ca,
            encipher_only=False,
            decipher_only=False,
        )
    if isinstance(key_usage, x509.KeyUsage):
        builder = builder.add_extension(key_usage, True)
    if eku is None and not ca:
        eku = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), True)
    builder = builder.add_extension(
        x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False
    )
    if issuer_cert is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            False,
        )
    for ext, critical in extra:
        builder = builder.add_extension(ext, critical)
    if isinstance(hash_alg, hashes.SHA1):
        return _sign_sha1(builder.sign(issuer_key, hashes.SHA256()), issuer_key), key
    if hash_alg is None and isinstance(issuer_key, ec.EllipticCurvePrivateKey):
        hash_alg = hashes.SHA256()
    return builder.sign(issuer_key, hash_alg), key


def _sign_sha1(cert: x509.Certificate, key: PrivateKey) -> x509.Certificate:
    """Re-sign with SHA-1, which cryptography refuses to do; pyOpenSSL still can."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        legacy = crypto.X509.from_cryptography(cert)
        legacy.sign(crypto.PKey.from_cryptography_key(key), "sha1")
    return legacy.to_cryptography()
