"""Provisioning workflows: ``generate``, ``sign`` and ``delegate``.

Each workflow combines the pure profiles with the store, and reports the lines
albatross-client prints through a *say* callback (so the CLI decides where they
go and tests can collect them).  The clock is a parameter.

* ``generate`` (albatross ``generate``): ``<name>.key`` (reused if present,
  else created 0400), self-signed ``cacert.pem``, ``<server>.key``,
  ``<server>.pem`` and a database line ``<serial> <server>``.  Beyond albatross
  the server certificate may carry subjectAltNames.
* ``sign`` (albatross ``sign``): see :func:`ca.profiles.sign_csr` for the
  checks; writes ``<CN>.pem`` (the certificate, then the signer and its chain
  unless the signer is self-signed) and a database line.
* ``delegate``: a new key, an intermediate CA with a policy (usable and within
  the delegator's policy) and one bundle file for the friend.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from ca.bundle import Bundle
from ca.describe import describe_command, render
from ca.errors import StoreError
from ca.profiles import (
    INTERMEDIATE_DAYS,
    ROOT_DAYS,
    SERVER_DAYS,
    generate_key,
    intermediate,
    key_matches,
    root_ca,
    server_cert,
    sign_csr,
)
from ca.store import (
    Signer,
    append_db,
    ensure_key,
    file_name_for,
    load_bundle,
    load_signer,
    write_bundle,
    write_certificates,
)
from core.certs import albatross_command, common_name, policy_of
from core.pemfiles import load_certificates, load_csr, load_key
from core.pins import Pins
from core.wire import Policy, check_label

__all__ = [
    "CA_CERT_FILE",
    "Delegation",
    "DelegationSource",
    "Say",
    "delegate",
    "generate",
    "sign",
    "source_from_bundle",
    "source_from_files",
    "subject_text",
]

Say = Callable[[str], None]

#: albatross-client's fixed file name for the root certificate.
CA_CERT_FILE = "cacert.pem"

_SHORT_NAMES = {
    "2.5.4.3": "CN",
    "2.5.4.6": "C",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
}


def subject_text(name: x509.Name) -> str:
    """A subject as ocaml-x509 prints it: ``/CN=alice``."""
    parts = []
    for rdn in name.rdns:
        for attribute in rdn:
            short = _SHORT_NAMES.get(attribute.oid.dotted_string, attribute.oid.dotted_string)
            value = attribute.value
            text = value if isinstance(value, str) else value.hex()
            parts.append(f"/{short}={text}")
    return "".join(parts)


def _self_signed(cert: x509.Certificate) -> bool:
    return cert.subject == cert.issuer


def generate(
    directory: Path,
    name: str,
    db: Path,
    now: dt.datetime,
    *,
    days: int = ROOT_DAYS,
    server: str = "server",
    server_days: int = SERVER_DAYS,
    key_type: str = "ed25519",
    dns_names: Sequence[str] = (),
    ips: Sequence[str] = (),
) -> tuple[x509.Certificate, x509.Certificate]:
    """Create (or reuse) the CA and server keys, write ``cacert.pem`` and ``<server>.pem``."""
    if server in (name, CA_CERT_FILE.removesuffix(".pem")):
        raise StoreError(
            f"the server name {server!r} would share files with the CA: choose another --server"
        )
    key_path = file_name_for(directory, name, ".key")
    _keep_other_ca(directory / CA_CERT_FILE, key_path)
    ca_key, _ = ensure_key(key_path, key_type)
    root = root_ca(ca_key, name, now, days)
    write_certificates(directory / CA_CERT_FILE, [root])
    server_key, _ = ensure_key(file_name_for(directory, server, ".key"), key_type)
    cert = server_cert(
        root, ca_key, server_key.public_key(), server, now, server_days, dns_names, ips
    )
    append_db(db, cert, server)
    write_certificates(file_name_for(directory, server, ".pem"), [cert])
    return root, cert


def _keep_other_ca(ca_path: Path, key_path: Path) -> None:
    """Refuse to replace a ``cacert.pem`` made with another key (albatross would)."""
    if not ca_path.exists():
        return
    existing = load_certificates(ca_path, "CA certificate file")[0]
    if key_path.exists() and key_matches(load_key(key_path), existing.public_key()):
        return  # same CA key: a renewed root still verifies everything it signed
    raise StoreError(
        f"{ca_path} holds the CA {subject_text(existing.subject)} of another key: every "
        "certificate it signed depends on it; move it away before generating a new CA"
    )


def sign(
    directory: Path,
    cacert: Path,
    db: Path,
    cakey: Path,
    csr_path: Path,
    now: dt.datetime,
    say: Say,
    warn: Say,
    days: int | None = None,
) -> x509.Certificate:
    """albatross ``sign``: check and sign the CSR, write ``<CN>.pem``, append to *db*."""
    signer = load_signer(cacert, cakey)
    csr = load_csr(csr_path)
    if not csr.is_signature_valid:  # ocaml-x509 refuses it while decoding, before any output
        raise StoreError(f"CSR file {csr_path}: its self-signature does not verify")
    say(f"signing certificate with subject {subject_text(csr.subject)}")
    command = albatross_command(csr)
    if command is None:
        warn("signing certificate without albatross extension (e.g. host certificate)")
    cert = sign_csr(csr, signer.cert, signer.key, now, days=days)
    if command is not None:
        pieces = describe_command(command)
        say(render([f"signing {pieces[0]}", *pieces[1:]]))
    name = common_name(csr.subject)
    if name is None:
        raise StoreError("couldn't find name (no common name in CSR subject)")
    out = file_name_for(directory, name, ".pem")
    append_db(db, cert, name)
    chain = [c for c in (signer.cert, *signer.chain) if not _self_signed(c)]
    write_certificates(out, [cert, *chain])
    return cert


@dataclass(frozen=True, slots=True)
class Delegation:
    """What ``delegate`` produced."""

    bundle: Bundle
    path: Path
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DelegationSource:
    """Who delegates: the signing CA, the endpoint's trust anchors and its address."""

    signer: Signer
    server_ca: tuple[x509.Certificate, ...]
    endpoint: str
    server_name: str | None = None


def source_from_files(
    ca_cert: Path, ca_key: Path, server_ca: Path, endpoint: str, server_name: str | None = None
) -> DelegationSource:
    """The delegating CA from files (``--ca``, ``--ca-key``, ``--server-ca``)."""
    signer = load_signer(ca_cert, ca_key)
    anchors = tuple(load_certificates(server_ca, "server CA file"))
    return DelegationSource(signer, anchors, endpoint, server_name)


def source_from_bundle(
    path: Path, endpoint: str | None = None, server_name: str | None = None
) -> DelegationSource:
    """The delegating CA from its own bundle: a friend delegating further."""
    bundle = load_bundle(path)
    signer = Signer(bundle.chain[0], bundle.chain[1:], bundle.key)
    return DelegationSource(
        signer,
        bundle.server_ca,
        endpoint or bundle.endpoint,
        server_name if server_name is not None else bundle.server_name,
    )


def delegate(
    directory: Path,
    name: str,
    policy: Policy,
    source: DelegationSource,
    now: dt.datetime,
    *,
    key_type: str = "ed25519",
    days: int = INTERMEDIATE_DAYS,
    db: Path | None = None,
    out: Path | None = None,
    pins: Pins | None = None,
) -> Delegation:
    """Make *name*'s key and delegated CA (*policy*, *pins*) and write ``<name>.bundle``."""
    if check_label(name) != name:
        raise StoreError(f"delegate name {name!r} must be lower case: use {name.lower()!r}")
    policy.check_usable()
    signer = source.signer
    _check_signer(signer.cert, now)
    parent = policy_of(signer.cert)
    if parent is not None:
        policy.check_within(parent)
    path = out if out is not None else file_name_for(directory, name, ".bundle")
    if path.exists():
        raise StoreError(f"refusing to overwrite {path}: move it away or choose another name")
    key = generate_key(key_type)
    # A CA cannot usefully outlive its issuer (the chain stops verifying), so clamp.
    until = min(now + dt.timedelta(days=days), signer.cert.not_valid_after_utc)
    cert = intermediate(
        signer.cert, signer.key, key.public_key(), name, policy, now, not_after=until, pins=pins
    )
    chain = tuple(c for c in (signer.cert, *signer.chain) if not _self_signed(c))
    bundle = Bundle(
        name, (cert, *chain), key, source.server_ca, source.endpoint, source.server_name
    )
    write_bundle(path, bundle)
    if db is not None:
        append_db(db, cert, name)
    return Delegation(bundle, path, _warnings(bundle, now + dt.timedelta(days=days)))


def _check_signer(cert: x509.Certificate, now: dt.datetime) -> None:
    """The delegating certificate must be a CA that is valid now."""
    try:
        usable = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca and (
            cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
        )
    except x509.ExtensionNotFound:
        usable = False
    subject = subject_text(cert.subject)
    if not usable:
        raise StoreError(
            f"{subject} is not a CA certificate (needs CA:TRUE and keyCertSign): "
            "delegate with your CA certificate, not a leaf or server certificate"
        )
    if now < cert.not_valid_before_utc:
        raise StoreError(
            f"{subject} is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M:%S} UTC"
        )
    if now > cert.not_valid_after_utc:
        raise StoreError(
            f"{subject} expired at {cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC: renew it first"
        )


def _warnings(bundle: Bundle, wanted: dt.datetime) -> tuple[str, ...]:
    warnings = []
    cert = bundle.chain[0]
    if wanted - cert.not_valid_after_utc > dt.timedelta(days=1):
        issuer = subject_text(cert.issuer)
        warnings.append(
            f"the delegation ends with its issuer {issuer} on "
            f"{cert.not_valid_after_utc:%Y-%m-%d}, earlier than --days asked: renew {issuer} "
            "and delegate again before then"
        )
    top = bundle.chain[-1]
    if not any(_issued_by(top, anchor) for anchor in bundle.server_ca):
        warnings.append(
            "the chain does not lead to the server CA in the bundle; albatross-client would "
            "refuse it (exit 116) unless the friend gets the right --server-ca"
        )
    return tuple(warnings)


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True
