"""PEM and DER in and out of cryptography objects, pure (bytes in, objects out).

The one parser of certificates, chains, CSRs, private keys and CRLs for every
package: the CA toolkit, the client, the endpoint and the inspect tools.  Every
reader raises :class:`ParseError` with a message naming what was expected, never
a cryptography ``ValueError``, because the bytes come from files a user handed
us.  Reading the files is left to the callers.
Keys are written as unencrypted PKCS#8 PEM, which is what albatross-client
writes (``X509.Private_key.encode_pem``).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import re
import warnings
from collections.abc import Sequence
from typing import TypeAlias

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from core.errors import ParseError
from core.keys import PRIVATE_KEY_TYPES, PrivateKey

__all__ = [
    "PemObject",
    "certificate_from_der",
    "certificates_from",
    "crl_from",
    "csr_from",
    "encode_certificates",
    "encode_private_key",
    "integer_octets",
    "objects_from",
    "pem_blocks",
    "private_key_from",
]

PemObject: TypeAlias = x509.Certificate | x509.CertificateSigningRequest | PrivateKey

_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.DOTALL)
#: What cryptography raises for malformed certificates and requests.
_BAD_X509 = (ValueError, UnsupportedAlgorithm, x509.InvalidVersion, x509.DuplicateExtension)
_CSR_LABELS = (b"CERTIFICATE REQUEST", b"NEW CERTIFICATE REQUEST")
_KEY_LABELS = (b"PRIVATE KEY", b"EC PRIVATE KEY", b"RSA PRIVATE KEY")


def pem_blocks(data: bytes) -> list[tuple[str, bytes]]:
    """The (label, DER) of every PEM block in *data*, in order."""
    blocks = []
    for match in _BLOCK.finditer(data):
        try:
            der = base64.b64decode(b"".join(match.group(2).split()), validate=True)
        except (binascii.Error, ValueError):
            label = match.group(1).decode("ascii")
            raise ParseError(f"bad base64 in PEM block {label}") from None
        blocks.append((match.group(1).decode("ascii"), der))
    return blocks


def _is_pem(data: bytes) -> bool:
    return b"-----BEGIN " in data


def certificate_from_der(der: bytes, what: str) -> x509.Certificate:
    try:
        cert = x509.load_der_x509_certificate(der)
        # cryptography parses fields lazily: touch them so a bad one fails here.  It warns
        # about CNs outside 1..64 characters; albatross writes empty ones (case 002).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            _ = (cert.subject, cert.issuer)
        _ = (cert.not_valid_before_utc, cert.not_valid_after_utc)
        _ = (cert.signature_algorithm_oid, cert.public_key(), list(cert.extensions))
    except _BAD_X509 as exc:
        raise ParseError(f"{what}: not a valid X.509 certificate ({exc})") from None
    return cert


def certificates_from(data: bytes, what: str = "certificate file") -> list[x509.Certificate]:
    """All certificates in a PEM file (in order) or the one certificate of a DER file."""
    if not _is_pem(data):
        return [certificate_from_der(data, what)]
    certs = [
        certificate_from_der(der, what) for label, der in pem_blocks(data) if label == "CERTIFICATE"
    ]
    if not certs:
        raise ParseError(f"{what}: no CERTIFICATE block found")
    return certs


def csr_from(data: bytes, what: str = "CSR file") -> x509.CertificateSigningRequest:
    """The certificate signing request in a PEM or DER file."""
    ders = [der for label, der in pem_blocks(data) if label.encode() in _CSR_LABELS]
    if _is_pem(data) and not ders:
        raise ParseError(f"{what}: no CERTIFICATE REQUEST block found")
    try:
        csr = x509.load_der_x509_csr(ders[0] if ders else data)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            _ = csr.subject
        _ = (csr.public_key(), list(csr.extensions), csr.is_signature_valid)
    except _BAD_X509 as exc:
        raise ParseError(f"{what}: not a valid certificate signing request ({exc})") from None
    return csr


def private_key_from(data: bytes, what: str = "key file") -> PrivateKey:
    """The (unencrypted) private key in a PEM or DER file."""
    try:
        if _is_pem(data):
            blocks = [
                (label, der) for label, der in pem_blocks(data) if label.encode() in _KEY_LABELS
            ]
            if not blocks:
                raise ParseError(f"{what}: no PRIVATE KEY block found")
            key = serialization.load_pem_private_key(_reencode(*blocks[0]), None)
        else:
            key = serialization.load_der_private_key(data, None)
    except TypeError:
        raise ParseError(f"{what}: the key is encrypted; give an unencrypted key") from None
    except _BAD_X509 as exc:
        raise ParseError(f"{what}: not a valid private key ({exc})") from None
    if not isinstance(key, PRIVATE_KEY_TYPES):
        raise ParseError(f"{what}: unsupported key type; use ed25519, p256/p384/p521 or RSA")
    return key


def crl_from(data: bytes, what: str = "CRL file") -> x509.CertificateRevocationList:
    """A CRL from PEM or DER bytes."""
    try:
        if _is_pem(data):
            return x509.load_pem_x509_crl(data)
        return x509.load_der_x509_crl(data)
    except ValueError as exc:
        raise ParseError(f"{what} is not a CRL (PEM or DER): {exc}") from None


def _reencode(label: str, der: bytes) -> bytes:
    body = base64.encodebytes(der).replace(b"\n", b"")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return b"\n".join(
        [f"-----BEGIN {label}-----".encode(), *lines, f"-----END {label}-----".encode(), b""]
    )


def objects_from(data: bytes) -> list[PemObject]:
    """Every certificate, CSR and key in a PEM file, or the one object of a DER file."""
    if not _is_pem(data):
        with contextlib.suppress(ParseError):
            return [certificate_from_der(data, "input")]
        with contextlib.suppress(ParseError):
            return [csr_from(data, "input")]
        try:
            return [private_key_from(data, "input")]
        except ParseError:
            raise ParseError(
                "no certificate, certificate request or private key found in the input "
                "(neither PEM nor DER)"
            ) from None
    found: list[PemObject] = []
    for label, der in pem_blocks(data):
        if label == "CERTIFICATE" or label.endswith(" CA"):
            found.append(certificate_from_der(der, f"PEM block {label}"))
        elif label.encode() in _CSR_LABELS:
            found.append(csr_from(der, f"PEM block {label}"))
        elif label.encode() in _KEY_LABELS:
            found.append(private_key_from(_reencode(label, der), f"PEM block {label}"))
    if not found:
        raise ParseError("no certificate, certificate request or private key found in the input")
    return found


def integer_octets(value: int) -> bytes:
    """The content octets of a DER INTEGER (minimal two's complement), as in albatross's db."""
    return value.to_bytes((value + (value < 0)).bit_length() // 8 + 1, "big", signed=True)


def encode_certificates(certs: Sequence[x509.Certificate]) -> bytes:
    """PEM of *certs*, concatenated in order."""
    return b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in certs)


def encode_private_key(key: PrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM, like albatross-client writes its keys."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
