"""Shared helpers for the CA tests: a fixed clock, vector loading, chain verification."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import crypto

from ca.profiles import PrivateKey
from core.pem import certificates_from, csr_from, private_key_from
from tests.vectors import CASES, CERTS

__all__ = [
    "CASES",
    "CERTS",
    "NOW",
    "ca_of",
    "ext_layout",
    "load_cert",
    "load_certs",
    "load_csr",
    "load_key",
    "verify",
]

#: A fixed clock, shortly after the vectors were captured (so their CAs are valid).
NOW = dt.datetime(2026, 11, 27, 19, 0, 0, tzinfo=dt.UTC)


def load_certs(path: Path) -> list[x509.Certificate]:
    return certificates_from(path.read_bytes())


def load_cert(path: Path) -> x509.Certificate:
    return load_certs(path)[0]


def load_csr(path: Path) -> x509.CertificateSigningRequest:
    return csr_from(path.read_bytes())


def load_key(path: Path) -> PrivateKey:
    return private_key_from(path.read_bytes())


def ca_of(name: str) -> tuple[x509.Certificate, PrivateKey]:
    """A captured CA (``root`` or an intermediate in vectors/certs/ca) and its key."""
    if name == "root":
        return load_cert(CERTS / "ca/root-cacert.pem"), load_key(CERTS / "ca/root-ca.key")
    return load_cert(CERTS / f"ca/{name}.pem"), load_key(CERTS / f"ca/{name}.key")


def ext_layout(cert: x509.Certificate) -> list[tuple[str, bool]]:
    """(OID, critical) of every extension, in DER order."""
    return [(ext.oid.dotted_string, ext.critical) for ext in cert.extensions]


def verify(
    chain: Sequence[x509.Certificate], anchors: Sequence[x509.Certificate], at: dt.datetime
) -> None:
    """OpenSSL's verdict on *chain* (leaf first) against *anchors* at time *at*.

    Raises ``crypto.X509StoreContextError`` when OpenSSL refuses the chain.
    """
    store = crypto.X509Store()
    for anchor in anchors:
        store.add_cert(crypto.X509.from_cryptography(anchor))
    store.set_time(at)
    context = crypto.X509StoreContext(
        store,
        crypto.X509.from_cryptography(chain[0]),
        [crypto.X509.from_cryptography(c) for c in chain[1:]],
    )
    context.verify_certificate()


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)
