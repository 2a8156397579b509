"""The captured certificates, re-signed to be valid now (vectors/README.md "Re-signing").

A leaf keeps its subject and every extension (the albatross extension, key
usages, AKI) and gets a fresh key (hence a new SKI), serial and validity
window; the key of the CA that issued it signs it again.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ca import profiles
from ca.profiles import PrivateKey
from tests.endpoint.pki import Identity, Pki
from tests.vectors import CERTS, capture_end

__all__ = ["VectorPki", "resign_leaf"]

CA_DIR = CERTS / "ca"


def _key(path: Path) -> PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), None)
    return key  # type: ignore[return-value]


def _issuer_key(cert: x509.Certificate) -> PrivateKey:
    cn = str(cert.issuer.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value)
    return _key(CA_DIR / ("root-ca.key" if cn == "ca" else f"{cn}.key"))


def resign_leaf(leaf_id: str, now: dt.datetime) -> Identity:
    chain = x509.load_pem_x509_certificates((CERTS / "leaf" / f"{leaf_id}.chain.pem").read_bytes())
    old = chain[0]
    key = profiles.generate_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(old.subject)
        .issuer_name(old.issuer)
        .public_key(key.public_key())
        .serial_number(profiles.new_serial())
        .not_valid_before(now - dt.timedelta(seconds=10))
        .not_valid_after(now + dt.timedelta(seconds=300))
    )
    for ext in old.extensions:
        value = ext.value
        if isinstance(value, x509.SubjectKeyIdentifier):
            value = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        builder = builder.add_extension(value, ext.critical)
    leaf = builder.sign(_issuer_key(old), None)
    return Identity([leaf, *chain[1:]], key)


class VectorPki(Pki):
    """The captured root CA and server certificate, used as at the end of the capture.

    The captured intermediates and the server certificate expire a year after the
    capture: everything issued here, and both sides' verification, take the time
    the capture ended (:func:`tests.vectors.capture_end`), never today's.
    """

    def __post_init__(self) -> None:
        self.now = self.verify_time = capture_end()
        self.root = x509.load_pem_x509_certificate((CA_DIR / "root-cacert.pem").read_bytes())
        self.root_key = _key(CA_DIR / "root-ca.key")
        self.server = x509.load_pem_x509_certificate((CA_DIR / "root-server.pem").read_bytes())
        self.ca_file = CA_DIR / "root-cacert.pem"
        self.cert_file = CA_DIR / "root-server.pem"
        self.key_file = CA_DIR / "root-server.key"
