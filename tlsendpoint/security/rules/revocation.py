# Revocation (issue 6 point 5): which CRL counts for which certificate.
#
# albatross has no revocation (behaviour.md §9.1, albatross#52).  The endpoint
# refuses a verified chain if any of its certificates is listed in a CRL that
# counts for it; the CRLs come from the operator's directory and from delegates
# (state/crldir.py keeps both).
#
# Authority: a CRL counts for certificate C only if it verifies against C's
# *actual issuer in the verified chain* (the next certificate up, or the trust
# anchor for the top one) - same DN and a valid signature by that key.  So the
# root revokes what it issued, an intermediate revokes what it issued, and
# revoking an intermediate cuts off its whole subtree.  A delegate cannot
# revoke outside its subtree: its CRL never verifies against anyone else's key,
# whatever issuer DN it claims.  Revocations are permanent: an expired CRL
# (nextUpdate in the past) still revokes, and CRLs of one issuer are united.
#
# Submission: a delegate hands its own CRL to the endpoint over the
# authenticated channel, inside its leaf certificate (extension
# core.certs.CRL_EXTENSION_OID, non-critical, next to a read-only albatross
# command); see notes/readme-security.md.  It is taken only if it is signed by a
# CA of the delegate's verified chain (or the anchor) - the same authority rule -
# and is at least as new as the CRL installed for that issuer.
#
# Pure: certificates and CRLs in, a RevocationRefusal out.  No I/O and no clock
# (revocations are permanent, so the decision needs no time).  Signature checks
# are remembered per (CRL, issuer key), under a lock: the endpoint checks the same
# chains again and again, possibly from worker threads.
from __future__ import annotations

import datetime as dt
import hashlib
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from core.certs import CRL_EXTENSION_OID
from core.chainrules import subject_text
from core.errors import ParseError, UsageError
from core.pem import crl_from
from tlsendpoint.security import SecurityRefusal

__all__ = [
    "MAX_SUBMITTED_BYTES",
    "Crl",
    "RevocationError",
    "RevocationRefusal",
    "Revocations",
    "key_id",
    "parse_crl",
    "refuse_older",
    "submitted_crl",
]

#: The largest CRL a delegate may hand in (bytes of DER).
MAX_SUBMITTED_BYTES = 1024 * 1024


class RevocationRefusal(SecurityRefusal):
    """A certificate in the chain is revoked, or a submitted CRL is not acceptable."""


class RevocationError(UsageError):
    """A CRL, or the CRL directory, cannot be read; the previous CRLs stay in force."""


def parse_crl(data: bytes, what: str) -> x509.CertificateRevocationList:
    """A CRL from PEM or DER bytes (:func:`core.pem.crl_from`); raises :class:`RevocationError`."""
    try:
        return crl_from(data, what)
    except ParseError as exc:
        raise RevocationError(exc.message) from None


def submitted_crl(leaf: x509.Certificate) -> bytes | None:
    """The DER CRL a delegate put into its leaf (:data:`CRL_EXTENSION_OID`), or None."""
    try:
        ext = leaf.extensions.get_extension_for_oid(x509.ObjectIdentifier(CRL_EXTENSION_OID))
    except (x509.ExtensionNotFound, ValueError):
        return None
    value = ext.value
    return value.value if isinstance(value, x509.UnrecognizedExtension) else None


def key_id(cert: x509.Certificate) -> str:
    """A short hex digest of *cert*'s public key: names an issuer whatever its DN says."""
    der = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Crl:
    """A parsed CRL with its digest and an index of what it revokes."""

    digest: str
    crl: x509.CertificateRevocationList
    revoked: dict[int, dt.datetime]  # serial -> revocation date (an index: O(1) per check)

    @classmethod
    def of(cls, crl: x509.CertificateRevocationList) -> Crl:
        der = crl.public_bytes(serialization.Encoding.DER)
        revoked = {entry.serial_number: entry.revocation_date_utc for entry in crl}
        return cls(hashlib.sha256(der).hexdigest(), crl, revoked)


class Revocations:
    """The CRLs in force for chains anchored at *anchor* (see the module comment)."""

    def __init__(self, anchor: x509.Certificate, crls: Iterable[Crl] = ()) -> None:
        self.anchor = anchor
        by_issuer: dict[bytes, list[Crl]] = {}
        for item in crls:
            by_issuer.setdefault(item.crl.issuer.public_bytes(), []).append(item)
        self._by_issuer = {k: tuple(v) for k, v in by_issuer.items()}  # issuer DN DER -> CRLs
        self._lock = threading.Lock()
        self._verified: dict[tuple[str, str], bool] = {}  # (CRL digest, issuer key) -> valid

    def _valid(self, item: Crl, issuer: x509.Certificate) -> bool:
        crl = item.crl
        key = (item.digest, key_id(issuer))
        with self._lock:
            known = self._verified.get(key)
        if known is None:
            try:
                known = crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
            except (TypeError, ValueError):
                known = False
            with self._lock:
                self._verified[key] = known
        return known

    def check(self, chain: Sequence[x509.Certificate]) -> None:
        """Raise :class:`RevocationRefusal` naming the first revoked certificate (leaf first)."""
        for index, cert in enumerate(chain):
            if cert.subject == cert.issuer:  # a root the client sent: the anchor, not revocable
                continue
            issuer = chain[index + 1] if index + 1 < len(chain) else self.anchor
            if issuer.subject != cert.issuer:
                continue
            for item in self._by_issuer.get(cert.issuer.public_bytes(), ()):
                when = item.revoked.get(cert.serial_number)
                if when is not None and self._valid(item, issuer):
                    role = "leaf certificate" if index == 0 else "intermediate certificate"
                    raise RevocationRefusal(
                        f"{role} {subject_text(cert)} (serial {cert.serial_number:x}) was revoked "
                        f"on {when:%Y-%m-%d %H:%M:%S} UTC by its issuer "
                        f"{subject_text(issuer)}"
                    )

    def submission(
        self, chain: Sequence[x509.Certificate], data: bytes
    ) -> tuple[x509.CertificateRevocationList, x509.Certificate]:
        """The CRL a delegate handed in, and the CA of its verified *chain* that signed it.

        Call after the chain passed authorize and :meth:`check`.  Raises
        :class:`RevocationRefusal` for a CRL too large, unparsable, or signed by no CA
        of the chain (nor the anchor).  Whether it is new enough is :func:`refuse_older`.
        """
        if len(data) > MAX_SUBMITTED_BYTES:
            raise RevocationRefusal(
                f"submitted CRL has {len(data)} bytes; at most {MAX_SUBMITTED_BYTES}"
            )
        try:
            crl = parse_crl(data, "submitted CRL")
        except RevocationError as exc:
            raise RevocationRefusal(exc.message) from None
        issuers = [c for c in chain[1:] if c.subject == crl.issuer] + (
            [self.anchor] if self.anchor.subject == crl.issuer else []
        )
        item = Crl.of(crl)
        issuer = next((c for c in issuers if self._valid(item, c)), None)
        if issuer is None:
            raise RevocationRefusal(
                f"submitted CRL from {_name_text(crl.issuer)} is not signed by a CA of "
                "your certificate chain: a delegate can only revoke what it issued"
            )
        return crl, issuer


def refuse_older(
    crl: x509.CertificateRevocationList,
    installed: x509.CertificateRevocationList,
    issuer: x509.Certificate,
) -> None:
    """A submitted *crl* must be at least as new as the one *installed* for its *issuer*."""
    if crl.last_update_utc < installed.last_update_utc:
        raise RevocationRefusal(
            f"submitted CRL of {subject_text(issuer)} was issued "
            f"{crl.last_update_utc:%Y-%m-%d %H:%M:%S} UTC, before the installed one "
            f"({installed.last_update_utc:%Y-%m-%d %H:%M:%S} UTC): send the newest CRL"
        )


def _name_text(name: x509.Name) -> str:
    try:
        return name.rfc4514_string() or "(empty subject)"
    except ValueError:
        return "(unparsable subject)"
