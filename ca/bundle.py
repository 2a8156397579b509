# The delegation bundle: everything a friend needs to use a delegated CA, in one file.
#
# Security reasoning.  The bundle holds a private key, so the store writes it
# with mode 0600 and never over an existing file.  On import we check what a
# careless or malicious sender could get wrong: the key must belong to the
# first certificate, that certificate must be a CA carrying a `policy add`
# extension, each chain certificate must be issued by the next one, and the
# server CA must be a CA.  Header values are plain ASCII without whitespace so
# they cannot smuggle extra lines into a configuration file.
#
# Format (text, PEM-style, documented in notes/readme-ca.md):
#
#     Albatross-Bundle: 1
#     Name: alice
#     Endpoint: albatross.example:1025
#     Server-Name: albatross.example        (optional)
#
#     -----BEGIN CERTIFICATE-----           the delegated CA, then its issuers
#     ...                                   up to (not including) the root
#     -----BEGIN PRIVATE KEY-----           the delegated CA's key (PKCS#8)
#     ...
#     -----BEGIN ALBATROSS SERVER CA-----   trust anchor(s) for the endpoint (DER
#     ...                                   certificate, like a CERTIFICATE block)
#
# `openssl x509 -in alice.bundle` shows the delegated CA, and tools that pick
# the CERTIFICATE and PRIVATE KEY blocks (albatross-client's --ca/--ca-key) see
# the chain and the key.
from __future__ import annotations

import base64
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding

from ca.errors import StoreError
from ca.profiles import PrivateKey, key_matches
from core.certs import common_name, policy_of
from core.pem import (
    certificate_from_der,
    certificates_from,
    encode_certificates,
    encode_private_key,
    pem_blocks,
)
from core.pem import private_key_from as _private_key_from
from core.wire import check_label

__all__ = ["BUNDLE_VERSION", "SERVER_CA_LABEL", "Bundle", "encode_bundle", "parse_bundle"]

BUNDLE_VERSION = "1"
SERVER_CA_LABEL = "ALBATROSS SERVER CA"
_MAX_HEADER = 255


@dataclass(frozen=True, slots=True)
class Bundle:
    """A delegated CA with its key, the server's trust anchor and where to connect."""

    name: str
    chain: tuple[x509.Certificate, ...]
    key: PrivateKey
    server_ca: tuple[x509.Certificate, ...]
    endpoint: str
    server_name: str | None = None

    def __post_init__(self) -> None:
        check_bundle(self)


def _check_header(field: str, value: str) -> None:
    if (
        not value
        or len(value) > _MAX_HEADER
        or not value.isascii()
        or not value.isprintable()
        or any(c.isspace() for c in value)
    ):
        raise StoreError(
            f"bundle {field} {value!r} is not valid: use printable ASCII without spaces"
        )


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except (x509.ExtensionNotFound, ValueError):
        return False
    return constraints.ca


def check_bundle(bundle: Bundle) -> None:
    """Raise :class:`StoreError` unless the bundle is usable as described in the module comment."""
    check_label(bundle.name)
    _check_header("endpoint", bundle.endpoint)
    if bundle.server_name is not None:
        _check_header("server name", bundle.server_name)
    if not bundle.chain:
        raise StoreError("bundle has no certificate: it needs the delegated CA certificate")
    if not bundle.server_ca:
        raise StoreError("bundle has no server CA: it needs the endpoint's trust anchor")
    first = bundle.chain[0]
    if not key_matches(bundle.key, first.public_key()):
        raise StoreError("bundle key does not match its first certificate")
    if policy_of(first) is None or not _is_ca(first):
        raise StoreError("bundle's first certificate is not a delegated CA with a policy")
    if common_name(first.subject) != bundle.name:
        raise StoreError(
            f"bundle name {bundle.name!r} differs from its certificate's CN "
            f"{common_name(first.subject)!r}"
        )
    for child, parent in zip(bundle.chain, bundle.chain[1:], strict=False):
        try:
            child.verify_directly_issued_by(parent)
        except (ValueError, TypeError, InvalidSignature) as exc:
            raise StoreError(
                f"bundle chain is broken: {common_name(child.subject)!r} is not issued by "
                f"{common_name(parent.subject)!r} ({type(exc).__name__})"
            ) from None
    for anchor in bundle.server_ca:
        if not _is_ca(anchor):
            raise StoreError("bundle server CA is not a CA certificate")


def _block(label: str, der: bytes) -> bytes:
    body = base64.b64encode(der)
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return b"\n".join(
        [f"-----BEGIN {label}-----".encode(), *lines, f"-----END {label}-----".encode(), b""]
    )


def encode_bundle(bundle: Bundle) -> bytes:
    """The bundle file's bytes (see the module comment for the format)."""
    headers = [
        f"Albatross-Bundle: {BUNDLE_VERSION}",
        f"Name: {bundle.name}",
        f"Endpoint: {bundle.endpoint}",
    ]
    if bundle.server_name is not None:
        headers.append(f"Server-Name: {bundle.server_name}")
    anchors = b"".join(
        _block(SERVER_CA_LABEL, c.public_bytes(Encoding.DER)) for c in bundle.server_ca
    )
    return (
        "\n".join(headers).encode("ascii")
        + b"\n\n"
        + encode_certificates(bundle.chain)
        + encode_private_key(bundle.key)
        + anchors
    )


def _headers(data: bytes) -> dict[str, str]:
    head = data.split(b"-----BEGIN ", 1)[0]
    try:
        text = head.decode("ascii")
    except UnicodeDecodeError:
        raise StoreError("bundle header is not ASCII text") from None
    headers: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        field, sep, value = line.partition(":")
        if not sep:
            raise StoreError(f"bundle header line {line!r} is not 'Field: value'")
        headers[field.strip().lower()] = value.strip()
    return headers


def parse_bundle(data: bytes) -> Bundle:
    """Read and check a bundle file; raises :class:`StoreError` (or, for a PEM block that
    does not decode, :class:`ParseError`) naming what is wrong."""
    headers = _headers(data)
    version = headers.get("albatross-bundle")
    if version != BUNDLE_VERSION:
        raise StoreError(f"not an albatross bundle of version {BUNDLE_VERSION} (found {version!r})")
    for field in ("name", "endpoint"):
        if field not in headers:
            raise StoreError(f"bundle has no {field.title()}: header")
    blocks = pem_blocks(data)
    anchors = [
        certificate_from_der(der, "bundle server CA")
        for label, der in blocks
        if label == SERVER_CA_LABEL
    ]
    return Bundle(
        name=headers["name"],
        chain=tuple(certificates_from(data, "bundle")),
        key=_private_key_from(data, "bundle"),
        server_ca=tuple(anchors),
        endpoint=headers["endpoint"],
        server_name=headers.get("server-name"),
    )
