# Revoking certificates and issuing CRLs (issue 6 point 5).
#
# A CA (the root, or a delegate with its bundle's CA key) keeps the list of
# serials it revoked in ``revoked.txt`` next to its certificate - one line
# "<serial hex> <revocation time ISO 8601>", append-only, the serial written as
# in albatross's database file - and a counter in ``crlnumber``.  ``make_crl``
# turns the list into a CRL signed by that CA; put the PEM into the endpoint's
# CRL directory (or hand it in over the authenticated channel, see
# notes/readme-security.md).  The endpoint honours a CRL only for certificates
# the signing CA issued itself, so revoking a delegation cuts off its subtree.
#
# Pure parts (parse_serial, make_crl, crl_leaf) take the clock as a parameter;
# revoke() and write_crl() are the disk side.  The commands are ca/cmd_revoke.py.
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from ca.errors import StoreError
from ca.profiles import PrivateKey, leaf
from ca.store import load_signer
from core.certs import CRL_EXTENSION_OID
from core.errors import UsageError
from core.wire import PolicyInfo
from durable.files import append_file, write_file

__all__ = [
    "CRL_DAYS",
    "CRL_NUMBER_FILE",
    "REVOKED_FILE",
    "crl_leaf",
    "make_crl",
    "parse_serial",
    "read_revoked",
    "revoke",
    "serials_for_names",
    "write_crl",
]

REVOKED_FILE = "revoked.txt"
CRL_NUMBER_FILE = "crlnumber"
#: Days until a CRL's nextUpdate (the endpoint honours older CRLs too).
CRL_DAYS = 30


def parse_serial(text: str) -> int:
    """A serial in hex, as albatross's database and ``ca inspect`` write it (``0x``/``:`` ok)."""
    cleaned = text.strip().lower().removeprefix("0x").replace(":", "")
    try:
        value = int(cleaned, 16)
    except ValueError:
        raise UsageError(f"serial {text!r} is not hexadecimal: copy it from the database") from None
    if value <= 0:
        raise UsageError(f"serial {text!r} must be positive")
    return value


def serials_for_names(db: Path, names: Sequence[str]) -> list[int]:
    """The serials the database *db* (``<serial hex> <name>`` lines) records for *names*."""
    try:
        lines = db.read_text("utf-8").splitlines()
    except OSError as exc:
        raise StoreError(f"cannot read database {db}: {exc.strerror}") from None
    found: list[int] = []
    for name in names:
        matches = [parse_serial(s) for s, _, n in (x.partition(" ") for x in lines) if n == name]
        if not matches:
            raise StoreError(f"no certificate named {name!r} in {db}")
        found += matches
    return found


def read_revoked(directory: Path) -> dict[int, dt.datetime]:
    """serial -> revocation time, from ``directory/revoked.txt`` (empty if missing)."""
    path = directory / REVOKED_FILE
    try:
        lines = path.read_text("ascii").splitlines()
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise StoreError(f"cannot read {path}: {exc}") from None
    revoked: dict[int, dt.datetime] = {}
    for number, line in enumerate(lines, 1):
        serial, _, when = line.partition(" ")
        try:
            revoked.setdefault(parse_serial(serial), dt.datetime.fromisoformat(when))
        except (UsageError, ValueError):
            raise StoreError(f"{path} line {number} is damaged: {line!r}") from None
    return revoked


def revoke(directory: Path, serials: Sequence[int], now: dt.datetime) -> list[int]:
    """Add *serials* to ``directory/revoked.txt``; returns those not revoked before."""
    known = read_revoked(directory)
    new = [s for s in dict.fromkeys(serials) if s not in known]
    if new:
        text = "".join(
            f"{s:x} {now.astimezone(dt.UTC).isoformat(timespec='seconds')}\n" for s in new
        )
        try:
            append_file(directory / REVOKED_FILE, text.encode("ascii"), mode=0o644)
        except OSError as exc:
            raise StoreError(f"cannot write {directory / REVOKED_FILE}: {exc.strerror}") from None
    return new


def _hash_for(key: PrivateKey) -> hashes.HashAlgorithm | None:
    if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        return None
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size > 384:
        return hashes.SHA512()
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size > 256:
        return hashes.SHA384()
    assert isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
    return hashes.SHA256()


def make_crl(
    issuer: x509.Certificate,
    key: PrivateKey,
    revoked: dict[int, dt.datetime],
    now: dt.datetime,
    number: int,
    days: int = CRL_DAYS,
) -> x509.CertificateRevocationList:
    """A CRL by *issuer* listing *revoked*, with CRL number *number* and AKI."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.subject)
        .last_update(now)
        .next_update(now + dt.timedelta(days=days))
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False
        )
    )
    for serial, when in sorted(revoked.items()):
        entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when)
        builder = builder.add_revoked_certificate(entry.build())
    return builder.sign(key, _hash_for(key))  # type: ignore[arg-type]


def _next_number(directory: Path) -> int:
    path = directory / CRL_NUMBER_FILE
    try:
        current = int(path.read_text("ascii").strip() or "0")
    except FileNotFoundError:
        current = 0
    except (OSError, ValueError) as exc:
        raise StoreError(f"cannot read {path}: {exc}") from None
    try:
        write_file(path, f"{current + 1}\n".encode("ascii"), mode=0o644)
    except OSError as exc:
        raise StoreError(f"cannot write {path}: {exc.strerror}") from None
    return current + 1


def write_crl(
    cacert: Path, cakey: Path, out: Path, now: dt.datetime, days: int = CRL_DAYS
) -> x509.CertificateRevocationList:
    """Sign the CRL of the CA in *cacert* (revoked.txt next to it) and write it to *out* (PEM)."""
    signer = load_signer(cacert, cakey)
    directory = cacert.parent
    crl = make_crl(
        signer.cert, signer.key, read_revoked(directory), now, _next_number(directory), days
    )
    try:
        write_file(out, crl.public_bytes(Encoding.PEM), mode=0o644)
    except OSError as exc:
        raise StoreError(f"cannot write {out}: {exc.strerror}") from None
    return crl


def crl_leaf(
    signer_cert: x509.Certificate,
    signer_key: PrivateKey,
    crl: x509.CertificateRevocationList,
    key: PrivateKey,
    now: dt.datetime,
) -> x509.Certificate:
    """A leaf that hands *crl* to our endpoint: ``policy info`` plus the CRL extension.

    The endpoint (tlsendpoint/security/rules/revocation.py) takes the CRL only if a CA
    of the verified chain signed it; the read-only command is served as usual, so
    the same leaf is harmless at an albatross endpoint, which ignores the extension.
    """
    if crl.issuer != signer_cert.subject:
        raise UsageError(
            f"the CRL was issued by {crl.issuer.rfc4514_string()}, not by this CA "
            f"({signer_cert.subject.rfc4514_string()}): hand in your own CRL"
        )
    extension = x509.UnrecognizedExtension(
        x509.ObjectIdentifier(CRL_EXTENSION_OID), crl.public_bytes(Encoding.DER)
    )
    return leaf(
        signer_cert,
        signer_key,
        key.public_key(),
        ".",
        PolicyInfo(),
        now,
        extra=[(extension, False)],
    )
