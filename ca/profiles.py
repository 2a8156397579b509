# Certificate profiles: what albatross puts into each kind of certificate.
#
# Security reasoning.  The TLS endpoint trusts a chain because of *these* bits:
# CA:TRUE + keyCertSign on delegation CAs, CA:FALSE + clientAuth on leaves,
# serverAuth on the endpoint, and the albatross extension (the policy of an
# intermediate, the command of a leaf).  So every profile below is data copied
# from albatross 2.7.2 (client/albatross_client.ml: d_exts, l_exts, s_exts,
# key_ids, timestamps) and checked against the captured certificates in
# vectors/certs: extension set, criticality and order, validity windows
# (not-before = now - 10 s), 10-octet positive serials, and a subject that is a
# single RDN holding one UTF8String CN.  The albatross extension is always
# non-critical (ocaml-x509 rejects unknown critical extensions).
#
# Everything here is pure: keys, names and the clock come in as parameters,
# nothing touches the disk (that is ca/store.py).
#
# One deliberate difference: ocaml-x509 writes KeyUsage as a 9-bit BIT STRING
# (`03 03 07 xx 00`); cryptography writes the minimal DER (`03 02 01 xx`).
# Both carry the same usages and every verifier accepts both.
from __future__ import annotations

import datetime as dt
import ipaddress
import secrets
import warnings
from collections.abc import Sequence

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ca.keys import (
    KEY_TYPES,
    PrivateKey,
    PublicKey,
    _hash_for,
    generate_key,
    key_matches,
)
from core.certs import ALBATROSS_OID, PIN_EXTENSION_OID, albatross_command, policy_of
from core.errors import UsageError
from core.keys import PUBLIC_KEY_TYPES
from core.pins import Pins, encode_pins
from core.wire import (
    Command,
    Policy,
    PolicyAdd,
    UnikernelCreate,
    encode_extension,
)

__all__ = [
    "CSR_LEAF_DAYS",
    "INTERMEDIATE_DAYS",
    "KEY_TYPES",
    "LEAF_SECONDS",
    "MAX_CERT_SIZE",
    "ROOT_DAYS",
    "SERVER_DAYS",
    "SKEW",
    "PrivateKey",
    "PublicKey",
    "generate_key",
    "intermediate",
    "key_matches",
    "leaf",
    "make_csr",
    "new_serial",
    "root_ca",
    "server_cert",
    "sign_csr",
]


#: Default lifetimes, as albatross-client (``generate --days``, ``--server-days``, ``sign``).
ROOT_DAYS = 3650
SERVER_DAYS = 365
INTERMEDIATE_DAYS = 365
CSR_LEAF_DAYS = 1
#: A generated request leaf lives 300 s (plus the 10 s of back-dating).
LEAF_SECONDS = 300
_SHA2 = (hashes.SHA256, hashes.SHA384, hashes.SHA512)
#: Every certificate starts 10 s before "now" so peers need not have synchronised clocks.
SKEW = dt.timedelta(seconds=10)
#: albatross-client refuses leaves whose DER exceeds 2^24 octets ("certificate too big for TLS").
MAX_CERT_SIZE = 1 << 24

_CA_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=True,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)
_END_ENTITY_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=True,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=False,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)


# -- small pieces -----------------------------------------------------------


def new_serial() -> int:
    """A serial from 10 random octets, positive, as ocaml-x509 draws it."""
    while True:
        serial = int.from_bytes(secrets.token_bytes(10), "big")
        if serial:
            return serial


def _subject(cn: str) -> x509.Name:
    # One RDN with one UTF8String CN, like albatross.  cryptography refuses CNs
    # outside 1..64 characters; albatross writes them (an empty CN for a remote
    # root-path ``policy`` command), so validation is skipped for those.
    if 1 <= len(cn.encode("utf-8")) <= 64:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn, _validate=False)])


def _ski(public_key: PublicKey) -> x509.SubjectKeyIdentifier:
    return x509.SubjectKeyIdentifier.from_public_key(public_key)


def _aki(issuer_key: PrivateKey) -> x509.AuthorityKeyIdentifier:
    # Only the keyIdentifier (SHA-1 of the issuer's key), as albatross's key_ids.
    digest = _ski(issuer_key.public_key()).digest
    return x509.AuthorityKeyIdentifier(digest, None, None)


def _albatross_ext(command: Command) -> x509.UnrecognizedExtension:
    return x509.UnrecognizedExtension(ALBATROSS_OID, encode_extension(command))


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: PublicKey,
    start: dt.datetime,
    end: dt.datetime,
    serial: int | None,
) -> x509.CertificateBuilder:
    if start.tzinfo is None:
        raise UsageError("the clock must be timezone-aware (UTC)")
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(new_serial() if serial is None else serial)
        .not_valid_before(start)
        .not_valid_after(end)
    )


def _add(
    builder: x509.CertificateBuilder, *exts: tuple[x509.ExtensionType, bool]
) -> x509.CertificateBuilder:
    for ext, critical in exts:
        builder = builder.add_extension(ext, critical=critical)
    return builder


def _ca_exts() -> tuple[tuple[x509.ExtensionType, bool], ...]:
    return (_CA_USAGE, True), (x509.BasicConstraints(ca=True, path_length=None), True)


def _end_entity_exts() -> tuple[tuple[x509.ExtensionType, bool], ...]:
    return (
        (_END_ENTITY_USAGE, True),
        (x509.BasicConstraints(ca=False, path_length=None), True),
    )


def _sign(builder: x509.CertificateBuilder, key: PrivateKey) -> x509.Certificate:
    return builder.sign(key, _hash_for(key))


# -- profiles ---------------------------------------------------------------


def root_ca(key: PrivateKey, cn: str, now: dt.datetime, days: int = ROOT_DAYS) -> x509.Certificate:
    """Self-signed root CA: KeyUsage, BasicConstraints CA:TRUE (no key ids, like albatross)."""
    name = _subject(cn)
    builder = _builder(
        name, name, key.public_key(), now - SKEW, now + dt.timedelta(days=days), None
    )
    return _sign(_add(builder, *_ca_exts()), key)


def server_cert(
    ca_cert: x509.Certificate,
    ca_key: PrivateKey,
    public_key: PublicKey,
    cn: str,
    now: dt.datetime,
    days: int = SERVER_DAYS,
    dns_names: Sequence[str] = (),
    ips: Sequence[str] = (),
) -> x509.Certificate:
    """The endpoint's certificate: SKI, KeyUsage, CA:FALSE, AKI, serverAuth (+ optional SAN).

    The subjectAltName is our addition (albatross writes none); it comes last and is
    non-critical because the subject is not empty.
    """
    lifetime = dt.timedelta(days=days)
    alt_names = _alt_names(dns_names, ips)
    return _server_from(_subject(cn), ca_cert, ca_key, public_key, now, lifetime, alt_names)


def _alt_names(dns_names: Sequence[str], ips: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for dns in dns_names:
        if not dns or any(c.isspace() for c in dns):
            raise UsageError(f"bad server DNS name {dns!r}: give a host name like host.example")
        names.append(x509.DNSName(dns))
    for ip in ips:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(ip)))
        except ValueError:
            raise UsageError(
                f"bad server IP address {ip!r}: give an IPv4 or IPv6 address"
            ) from None
    return names


def intermediate(
    issuer_cert: x509.Certificate,
    issuer_key: PrivateKey,
    public_key: PublicKey,
    cn: str,
    policy: Policy,
    now: dt.datetime,
    days: int = INTERMEDIATE_DAYS,
    serial: int | None = None,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    pins: Pins | None = None,
) -> x509.Certificate:
    """A delegation CA carrying ``policy add``: albatross, SKI, KeyUsage, CA:TRUE, AKI.

    Valid from now - 10 s (or *not_before*) for *days* (or until *not_after*).  With
    *pins*, also our non-critical pin extension (:mod:`core.pins`; albatross ignores it).
    """
    lifetime = dt.timedelta(days=days) if not_after is None else not_after - now
    return _intermediate_from(
        _subject(cn),
        issuer_cert,
        issuer_key,
        public_key,
        PolicyAdd(policy),
        now,
        lifetime,
        serial,
        not_before,
        () if pins is None else (_pin_ext(pins),),
    )


def _pin_ext(pins: Pins) -> tuple[x509.ExtensionType, bool]:
    """The reproducible-build pins, non-critical: albatross must ignore, not refuse, it."""
    oid = x509.ObjectIdentifier(PIN_EXTENSION_OID)
    return x509.UnrecognizedExtension(oid, encode_pins(pins)), False


def _intermediate_from(
    subject: x509.Name,
    issuer_cert: x509.Certificate,
    issuer_key: PrivateKey,
    public_key: PublicKey,
    command: Command,
    now: dt.datetime,
    lifetime: dt.timedelta,
    serial: int | None = None,
    not_before: dt.datetime | None = None,
    extra: Sequence[tuple[x509.ExtensionType, bool]] = (),
) -> x509.Certificate:
    start = now - SKEW if not_before is None else not_before
    builder = _builder(subject, issuer_cert.subject, public_key, start, now + lifetime, serial)
    builder = _add(
        builder,
        (_albatross_ext(command), False),
        (_ski(public_key), False),
        *_ca_exts(),
        (_aki(issuer_key), False),
        *extra,
    )
    return _sign(builder, issuer_key)


def leaf(
    issuer_cert: x509.Certificate,
    issuer_key: PrivateKey,
    public_key: PublicKey,
    cn: str,
    command: Command,
    now: dt.datetime,
    seconds: int = LEAF_SECONDS,
    extra: Sequence[tuple[x509.ExtensionType, bool]] = (),
) -> x509.Certificate:
    """A request leaf: albatross, SKI, KeyUsage, CA:FALSE, AKI, clientAuth.

    Valid from now - 10 s until now + *seconds*, like albatross-client.  *extra*
    extensions (with their criticality) follow albatross's; none by default.
    """
    return _leaf_from(
        _subject(cn),
        issuer_cert,
        issuer_key,
        public_key,
        command,
        now,
        dt.timedelta(seconds=seconds),
        extra,
    )


def _leaf_from(
    subject: x509.Name,
    issuer_cert: x509.Certificate,
    issuer_key: PrivateKey,
    public_key: PublicKey,
    command: Command,
    now: dt.datetime,
    lifetime: dt.timedelta,
    extra: Sequence[tuple[x509.ExtensionType, bool]] = (),
) -> x509.Certificate:
    builder = _builder(subject, issuer_cert.subject, public_key, now - SKEW, now + lifetime, None)
    builder = _add(
        builder,
        (_albatross_ext(command), False),
        (_ski(public_key), False),
        *_end_entity_exts(),
        (_aki(issuer_key), False),
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), True),
        *extra,
    )
    cert = _sign(builder, issuer_key)
    size = len(cert.public_bytes(Encoding.DER))
    if size > MAX_CERT_SIZE:
        raise UsageError(
            f"certificate too big for TLS: {size} octets, at most {MAX_CERT_SIZE}: "
            "use a smaller or compressed image"
        )
    return cert


def _server_from(
    subject: x509.Name,
    issuer_cert: x509.Certificate,
    issuer_key: PrivateKey,
    public_key: PublicKey,
    now: dt.datetime,
    lifetime: dt.timedelta,
    alt_names: Sequence[x509.GeneralName] = (),
) -> x509.Certificate:
    builder = _builder(subject, issuer_cert.subject, public_key, now - SKEW, now + lifetime, None)
    builder = _add(
        builder,
        (_ski(public_key), False),
        *_end_entity_exts(),
        (_aki(issuer_key), False),
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), True),
    )
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    return _sign(builder, issuer_key)


# -- requests ---------------------------------------------------------------


def make_csr(key: PrivateKey, cn: str, command: Command) -> x509.CertificateSigningRequest:
    """A CSR with subject CN and the albatross extension requested (non-critical)."""
    builder = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(_subject(cn))
        .add_extension(_albatross_ext(command), critical=False)
    )
    return builder.sign(key, _hash_for(key))


def sign_csr(
    csr: x509.CertificateSigningRequest,
    issuer_cert: x509.Certificate,
    issuer_key: PrivateKey,
    now: dt.datetime,
    issuer_policy: Policy | None = None,
    days: int | None = None,
) -> x509.Certificate:
    """Sign *csr* the way ``albatross-client sign`` does.

    * ``policy add p``: p must be usable and within the issuer's policy; CA profile, 365 days.
    * unikernel create: must fit the issuer's policy; leaf profile, 1 day.
    * any other command: leaf profile, 1 day.
    * no albatross extension: server profile, 365 days.

    *issuer_policy* defaults to the policy in *issuer_cert* (none for a root CA).
    The subject is copied verbatim.  Raises UsageError / PolicyError with albatross's texts.
    """
    try:
        algorithm = csr.signature_hash_algorithm
    except UnsupportedAlgorithm:
        raise UsageError("the CSR's signature algorithm is not supported: use SHA-2") from None
    if algorithm is not None and not isinstance(algorithm, _SHA2):  # ocaml-x509: SHA-2 only
        raise UsageError(
            f"the CSR is signed with {algorithm.name.upper()}; ask for one signed with SHA-2"
        )
    if not csr.is_signature_valid:
        raise UsageError("the CSR's self-signature does not verify: ask for a new request")
    if not key_matches(issuer_key, issuer_cert.public_key()):
        raise UsageError("Public key of certificate doesn't match private key")
    public_key = csr.public_key()
    if not isinstance(public_key, PUBLIC_KEY_TYPES):
        raise UsageError("unsupported key type in CSR: use ed25519, ECDSA or RSA")
    policy = policy_of(issuer_cert) if issuer_policy is None else issuer_policy
    command = albatross_command(csr)
    if command is None:
        lifetime = dt.timedelta(days=SERVER_DAYS if days is None else days)
        return _server_from(csr.subject, issuer_cert, issuer_key, public_key, now, lifetime)
    if isinstance(command, PolicyAdd):
        command.policy.check_usable()
        if policy is not None:
            command.policy.check_within(policy)
        lifetime = dt.timedelta(days=INTERMEDIATE_DAYS if days is None else days)
        return _intermediate_from(
            csr.subject, issuer_cert, issuer_key, public_key, command, now, lifetime
        )
    if isinstance(command, UnikernelCreate) and policy is not None:
        config = command.config
        config_bridges = config.effective_bridges()
        policy.check_fits(config.cpuids, config.memory, config_bridges)
    lifetime = dt.timedelta(days=CSR_LEAF_DAYS if days is None else days)
    return _leaf_from(csr.subject, issuer_cert, issuer_key, public_key, command, now, lifetime)
