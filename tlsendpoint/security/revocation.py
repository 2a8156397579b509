# Revocation with CRLs (issue 6 point 5).
#
# albatross has no revocation (behaviour.md §9.1, albatross#52).  We read CRLs
# (PEM or DER, *.crl / *.pem / *.der) from a directory and refuse a verified
# chain if any of its certificates is listed.
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
# Reload: reload() builds the new state completely, then swaps it; a file that
# does not parse makes reload() fail and the previous state stays (a damaged
# file must never un-revoke).  changed() compares names, sizes and mtimes -
# cheap enough to call per connection; call reload() on SIGHUP too.
#
# Submission (accept_submitted): a delegate hands its own CRL to the endpoint
# over the authenticated channel, inside its leaf certificate (extension
# CRL_EXTENSION_OID, non-critical, next to a read-only albatross command); see
# notes/readme-security.md.  We keep the newest CRL per issuer key.
from __future__ import annotations

import datetime as dt
import hashlib
import os
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tlsendpoint.chainrules import subject_text
from tlsendpoint.errors import UsageError
from tlsendpoint.security import SecurityRefusal

__all__ = [
    "CRL_EXTENSION_OID",
    "MAX_CRL_BYTES",
    "CrlStore",
    "RevocationError",
    "RevocationRefusal",
    "parse_crl",
    "submitted_crl",
]

#: Leaf extension carrying a delegate's CRL (DER).  A UUID OID (ITU-T X.667, arc 2.25),
#: so it needs no registration and collides with nobody's.
CRL_EXTENSION_OID = "2.25.166282467214839263785720133745207185441"
MAX_CRL_BYTES = 8 * 1024 * 1024
MAX_SUBMITTED_BYTES = 1024 * 1024
MAX_FILES = 10_000
_SUFFIXES = (".crl", ".pem", ".der")
_SUBMITTED_PREFIX = "submitted-"


class RevocationRefusal(SecurityRefusal):
    """A certificate in the chain is revoked, or a submitted CRL is not acceptable."""


class RevocationError(UsageError):
    """The CRL directory cannot be (re)loaded; the previous state stays in force."""


def parse_crl(data: bytes, what: str) -> x509.CertificateRevocationList:
    """A CRL from PEM or DER bytes; raises :class:`RevocationError`."""
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_crl(data)
        return x509.load_der_x509_crl(data)
    except ValueError as exc:
        raise RevocationError(f"{what} is not a CRL (PEM or DER): {exc}") from None


def submitted_crl(leaf: x509.Certificate) -> bytes | None:
    """The DER CRL a delegate put into its leaf (:data:`CRL_EXTENSION_OID`), or None."""
    try:
        ext = leaf.extensions.get_extension_for_oid(x509.ObjectIdentifier(CRL_EXTENSION_OID))
    except (x509.ExtensionNotFound, ValueError):
        return None
    value = ext.value
    return value.value if isinstance(value, x509.UnrecognizedExtension) else None


def _key_id(cert: x509.Certificate) -> str:
    der = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class _Crl:
    digest: str
    crl: x509.CertificateRevocationList
    revoked: dict[int, dt.datetime]  # serial -> revocation date (an index: O(1) per check)

    @classmethod
    def of(cls, crl: x509.CertificateRevocationList) -> _Crl:
        der = crl.public_bytes(serialization.Encoding.DER)
        revoked = {entry.serial_number: entry.revocation_date_utc for entry in crl}
        return cls(hashlib.sha256(der).hexdigest(), crl, revoked)


@dataclass(frozen=True, slots=True)
class _Loaded:
    signature: tuple[tuple[str, int, int], ...]
    by_issuer: dict[bytes, tuple[_Crl, ...]]  # issuer DN DER -> CRLs


class CrlStore:
    """CRLs from *directory*, checked against chains anchored at *anchor*."""

    def __init__(self, directory: Path, anchor: x509.Certificate) -> None:
        self.directory = directory
        self.anchor = anchor
        self._lock = threading.Lock()
        self._verified: dict[tuple[str, str], bool] = {}  # (CRL digest, issuer key) -> valid
        self._state = self._load()

    # -- loading -------------------------------------------------------------------

    def _signature(self) -> tuple[tuple[str, int, int], ...]:
        try:
            entries = [
                (e.name, e.stat().st_size, e.stat().st_mtime_ns)
                for e in os.scandir(self.directory)
                if e.name.endswith(_SUFFIXES) and not e.name.startswith(".") and e.is_file()
            ]
        except OSError as exc:
            raise RevocationError(f"cannot read CRL directory {self.directory}: {exc}") from None
        if len(entries) > MAX_FILES:
            raise RevocationError(
                f"CRL directory {self.directory} holds {len(entries)} CRLs; at most {MAX_FILES}"
            )
        return tuple(sorted(entries))

    def _load(self) -> _Loaded:
        signature = self._signature()
        by_issuer: dict[bytes, list[_Crl]] = {}
        for name, size, _ in signature:
            if size > MAX_CRL_BYTES:
                raise RevocationError(f"CRL file {name} is larger than {MAX_CRL_BYTES} bytes")
            path = self.directory / name
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise RevocationError(f"cannot read CRL file {path}: {exc.strerror}") from None
            crl = parse_crl(data, f"CRL file {path}")
            by_issuer.setdefault(crl.issuer.public_bytes(), []).append(_Crl.of(crl))
        return _Loaded(signature, {k: tuple(v) for k, v in by_issuer.items()})

    def changed(self) -> bool:
        """Whether the directory differs from what is loaded (cheap: one scandir)."""
        return self._signature() != self._state.signature

    def reload(self) -> None:
        """Load the directory again; on error the previous CRLs stay and the error is raised."""
        state = self._load()
        with self._lock:
            self._state = state
            self._verified.clear()

    def maybe_reload(self) -> bool:
        """Reload if the directory changed; True if it did."""
        if not self.changed():
            return False
        self.reload()
        return True

    # -- checking ------------------------------------------------------------------

    def _valid(self, item: _Crl, issuer: x509.Certificate) -> bool:
        crl = item.crl
        key = (item.digest, _key_id(issuer))
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
        state = self._state
        for index, cert in enumerate(chain):
            if cert.subject == cert.issuer:  # a root the client sent: the anchor, not revocable
                continue
            issuer = chain[index + 1] if index + 1 < len(chain) else self.anchor
            if issuer.subject != cert.issuer:
                continue
            for item in state.by_issuer.get(cert.issuer.public_bytes(), ()):
                when = item.revoked.get(cert.serial_number)
                if when is not None and self._valid(item, issuer):
                    role = "leaf certificate" if index == 0 else "intermediate certificate"
                    raise RevocationRefusal(
                        f"{role} {subject_text(cert)} (serial {cert.serial_number:x}) was revoked "
                        f"on {when:%Y-%m-%d %H:%M:%S} UTC by its issuer "
                        f"{subject_text(issuer)}"
                    )

    # -- a delegate's own CRL ------------------------------------------------------

    def accept_submitted(self, chain: Sequence[x509.Certificate], data: bytes) -> Path:
        """Install a CRL handed in over the authenticated channel; returns the file written.

        Call after the chain passed authorize and :meth:`check`.  The CRL must be
        signed by a CA of this verified *chain* (or the anchor) and be at least as new
        as the one installed for that issuer.  Raises :class:`RevocationRefusal`.
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
        item = _Crl.of(crl)
        issuer = next((c for c in issuers if self._valid(item, c)), None)
        if issuer is None:
            raise RevocationRefusal(
                f"submitted CRL from {_name_text(crl.issuer)} is not signed by a CA of "
                "your certificate chain: a delegate can only revoke what it issued"
            )
        target = self.directory / f"{_SUBMITTED_PREFIX}{_key_id(issuer)}.crl"
        if target.exists():
            current = parse_crl(target.read_bytes(), f"CRL file {target}")
            if crl.last_update_utc < current.last_update_utc:
                raise RevocationRefusal(
                    f"submitted CRL of {subject_text(issuer)} was issued "
                    f"{crl.last_update_utc:%Y-%m-%d %H:%M:%S} UTC, before the installed one "
                    f"({current.last_update_utc:%Y-%m-%d %H:%M:%S} UTC): send the newest CRL"
                )
        fd, temporary = tempfile.mkstemp(prefix=".submitted.", dir=self.directory)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(crl.public_bytes(serialization.Encoding.PEM))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, target)
        except OSError as exc:
            Path(temporary).unlink(missing_ok=True)
            raise RevocationError(f"cannot write {target}: {exc.strerror}") from None
        self.reload()
        return target


def _name_text(name: x509.Name) -> str:
    try:
        return name.rfc4514_string() or "(empty subject)"
    except ValueError:
        return "(unparsable subject)"
