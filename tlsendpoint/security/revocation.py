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
# The directory (issue 11 point 3): every entry is accounted for, because an
# entry we skipped could be the CRL the operator relies on.  A name starting
# with "." is ignored (editors' and our own temporary files); every other entry
# must be a readable regular file (a symlink to one is fine) named *.crl, *.pem
# or *.der (any case) that holds a CRL.  Anything else - a dangling symlink, a
# directory, a FIFO, another name such as README, an unreadable file, garbage -
# is a problem; _load() names every problem and fails.  Files are opened with
# O_NONBLOCK so a FIFO cannot hang the endpoint.
#
# Reload: reload() builds the new state completely, then swaps it; a problem
# makes reload() fail and the previous state stays (a damaged entry must never
# un-revoke).  At start that stops the endpoint (exit 125).  changed() compares
# each entry's name, type, size, mtime, ctime and inode - one scandir and a stat
# per entry, cheap enough per connection; maybe_reload() tries a failed state
# only once (the caller logs it once, not per connection); call reload() on
# SIGHUP, which always tries again.
#
# Submission (accept_submitted): a delegate hands its own CRL to the endpoint
# over the authenticated channel, inside its leaf certificate (extension
# CRL_EXTENSION_OID, non-critical, next to a read-only albatross command); see
# notes/readme-security.md.  We keep the newest CRL per issuer key.
from __future__ import annotations

import datetime as dt
import errno
import hashlib
import os
import stat
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from core.certs import CRL_EXTENSION_OID
from core.chainrules import subject_text
from core.errors import UsageError
from durable.files import write_file
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
MAX_CRL_BYTES = 8 * 1024 * 1024
MAX_SUBMITTED_BYTES = 1024 * 1024
MAX_FILES = 10_000
#: Problems named in one error (the count says how many more).
MAX_NAMED = 10
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


#: What changed() compares per entry: name, then type, size, mtime, ctime and inode
#: (or the problem's text).
_Signature = tuple[str, str, int, int, int, int]


@dataclass(frozen=True, slots=True)
class _Entry:
    name: str
    signature: _Signature
    problem: str | None  # None: a regular file with a CRL's name, to be read and parsed


def _examine(entry: os.DirEntry[str]) -> _Entry:
    """What one directory entry is, without opening it."""
    name = entry.name
    if not name.lower().endswith(_SUFFIXES):
        problem = f"{name}: not a CRL file name (move it out of the directory or rename it)"
        return _Entry(name, (name, "other", 0, 0, 0, 0), problem)
    try:
        info = entry.stat()  # follows a symlink to what it names
    except OSError as exc:
        if exc.errno == errno.ENOENT and entry.is_symlink():
            target = os.readlink(entry.path)
            problem = f"{name}: a symbolic link to {target}, which does not exist"
        else:
            problem = f"{name}: cannot examine it: {exc.strerror}"
        return _Entry(name, (name, problem, 0, 0, 0, 0), problem)
    signature = (name, stat.filemode(info.st_mode), info.st_size, info.st_mtime_ns,
                 info.st_ctime_ns, info.st_ino)  # fmt: skip
    if not stat.S_ISREG(info.st_mode):
        return _Entry(name, signature, f"{name}: {_kind(info.st_mode)}, not a CRL file")
    if info.st_size > MAX_CRL_BYTES:
        return _Entry(name, signature, f"{name}: larger than {MAX_CRL_BYTES} bytes")
    return _Entry(name, signature, None)


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a device or other special file"


def _read(path: Path) -> bytes:
    """The bytes of a CRL file; O_NONBLOCK: what was a file at scan time may now be a FIFO."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise RevocationError(f"{path.name}: cannot read it: {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise RevocationError(f"{path.name}: not a regular file")
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_CRL_BYTES:
            chunk = os.read(fd, MAX_CRL_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise RevocationError(f"{path.name}: cannot read it: {exc.strerror}") from None
    finally:
        os.close(fd)
    if size > MAX_CRL_BYTES:
        raise RevocationError(f"{path.name}: larger than {MAX_CRL_BYTES} bytes")
    return b"".join(chunks)


@dataclass(frozen=True, slots=True)
class _Loaded:
    signature: tuple[_Signature, ...]
    by_issuer: dict[bytes, tuple[_Crl, ...]]  # issuer DN DER -> CRLs


class CrlStore:
    """CRLs from *directory*, checked against chains anchored at *anchor*."""

    def __init__(self, directory: Path, anchor: x509.Certificate) -> None:
        self.directory = directory
        self.anchor = anchor
        self._lock = threading.Lock()
        self._verified: dict[tuple[str, str], bool] = {}  # (CRL digest, issuer key) -> valid
        # the directory state (or scan error) a reload last failed on: reported once
        self._failed: tuple[_Signature, ...] | str | None = None
        self._state = self._load()

    # -- loading -------------------------------------------------------------------

    def _scan(self) -> list[_Entry]:
        """Every entry except hidden ones, sorted by name (one scandir, a stat each)."""
        try:
            with os.scandir(self.directory) as listing:
                entries = [_examine(e) for e in listing if not e.name.startswith(".")]
        except OSError as exc:
            raise RevocationError(
                f"cannot read CRL directory {self.directory}: {exc.strerror}"
            ) from None
        if len(entries) > MAX_FILES:
            raise RevocationError(
                f"CRL directory {self.directory} holds {len(entries)} entries; at most {MAX_FILES}"
            )
        return sorted(entries, key=lambda e: e.signature)

    def _signature(self) -> tuple[_Signature, ...]:
        return tuple(e.signature for e in self._scan())

    def _load(self) -> _Loaded:
        entries = self._scan()
        by_issuer: dict[bytes, list[_Crl]] = {}
        problems: list[str] = []
        for entry in entries:
            problem = entry.problem
            if problem is None:
                try:
                    crl = parse_crl(_read(self.directory / entry.name), f"{entry.name}")
                    by_issuer.setdefault(crl.issuer.public_bytes(), []).append(_Crl.of(crl))
                except RevocationError as exc:
                    problem = exc.message
            if problem is not None:
                problems.append(problem)
        if problems:
            shown = "; ".join(problems[:MAX_NAMED])
            more = f"; and {len(problems) - MAX_NAMED} more" if len(problems) > MAX_NAMED else ""
            raise RevocationError(
                f"CRL directory {self.directory}: {len(problems)} "
                f"{'entry is' if len(problems) == 1 else 'entries are'} not a readable CRL: "
                f"{shown}{more} (every entry must be a CRL file named *.crl, *.pem or *.der; "
                "names starting with '.' are ignored)"
            )
        signature = tuple(e.signature for e in entries)
        return _Loaded(signature, {k: tuple(v) for k, v in by_issuer.items()})

    def changed(self) -> bool:
        """Whether the directory differs from what is loaded (cheap: one scandir)."""
        return self._signature() != self._state.signature

    def reload(self) -> None:
        """Load the directory again; on error the previous CRLs stay and the error is raised."""
        try:
            state = self._load()
        except RevocationError as exc:
            try:
                self._failed = self._signature()
            except RevocationError:
                self._failed = exc.message
            raise
        with self._lock:
            self._state = state
            self._verified.clear()
            self._failed = None

    def maybe_reload(self) -> bool:
        """Reload if the directory changed; True if it did.

        A directory state that failed to load is tried (and reported) once: until it
        changes again the previous CRLs stay in force without a new error.
        """
        try:
            signature = self._signature()
        except RevocationError as exc:  # e.g. the directory itself went away
            if exc.message == self._failed:
                return False
            self._failed = exc.message
            raise
        if signature in (self._state.signature, self._failed):
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
        try:  # the temporary file's name starts with ".": _load() ignores it
            write_file(target, crl.public_bytes(serialization.Encoding.PEM), mode=0o600)
        except OSError as exc:
            raise RevocationError(f"cannot write {target}: {exc.strerror}") from None
        self.reload()
        return target


def _name_text(name: x509.Name) -> str:
    try:
        return name.rfc4514_string() or "(empty subject)"
    except ValueError:
        return "(unparsable subject)"
