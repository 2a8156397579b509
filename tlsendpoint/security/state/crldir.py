# The CRL directory and the CRLs delegates hand in (issue 6 point 5, issue 11 point 3).
#
# Which CRL counts for which certificate is decided in rules/revocation.py; this
# module reads the operator's CRL directory into that rule's Revocations, keeps it
# current, and stores the CRLs delegates hand in.
#
# The directory: every entry is accounted for, because an
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
# Submission (accept_submitted): the CRL a delegate hands in (the rule says whether it
# is taken) is written to the directory as submitted-<issuer key>.crl, atomically and
# synced, replacing the older one of that issuer: we keep the newest CRL per issuer key.
from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from durable.files import write_file
from tlsendpoint.security.rules.revocation import (
    Crl,
    RevocationError,
    Revocations,
    key_id,
    parse_crl,
    refuse_older,
)

__all__ = ["MAX_CRL_BYTES", "MAX_FILES", "CrlStore"]

#: The largest file the directory may hold (bytes).
MAX_CRL_BYTES = 8 * 1024 * 1024
MAX_FILES = 10_000
#: Problems named in one error (the count says how many more).
MAX_NAMED = 10
_SUFFIXES = (".crl", ".pem", ".der")
_SUBMITTED_PREFIX = "submitted-"


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
    revocations: Revocations


class CrlStore:
    """CRLs from *directory*, checked against chains anchored at *anchor*."""

    def __init__(self, directory: Path, anchor: x509.Certificate) -> None:
        self.directory = directory
        self.anchor = anchor
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
        crls: list[Crl] = []
        problems: list[str] = []
        for entry in entries:
            problem = entry.problem
            if problem is None:
                try:
                    crl = parse_crl(_read(self.directory / entry.name), f"{entry.name}")
                    crls.append(Crl.of(crl))
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
        return _Loaded(signature, Revocations(self.anchor, crls))

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
        self._state = state  # one assignment: a check sees the old CRLs or the new ones
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

    @property
    def revocations(self) -> Revocations:
        """The CRLs in force now (the rule of rules/revocation.py over the directory)."""
        return self._state.revocations

    def check(self, chain: Sequence[x509.Certificate]) -> None:
        """Raise :class:`RevocationRefusal` naming the first revoked certificate (leaf first)."""
        self._state.revocations.check(chain)

    # -- a delegate's own CRL ------------------------------------------------------

    def accept_submitted(self, chain: Sequence[x509.Certificate], data: bytes) -> Path:
        """Install a CRL handed in over the authenticated channel; returns the file written.

        Call after the chain passed authorize and :meth:`check`.  Whether the CRL is
        taken is the rule's (:meth:`Revocations.submission`, :func:`refuse_older`): it
        raises :class:`RevocationRefusal`.
        """
        crl, issuer = self._state.revocations.submission(chain, data)
        target = self.directory / f"{_SUBMITTED_PREFIX}{key_id(issuer)}.crl"
        if target.exists():
            refuse_older(crl, parse_crl(target.read_bytes(), f"CRL file {target}"), issuer)
        try:  # the temporary file's name starts with ".": _load() ignores it
            write_file(target, crl.public_bytes(serialization.Encoding.PEM), mode=0o600)
        except OSError as exc:
            raise RevocationError(f"cannot write {target}: {exc.strerror}") from None
        self.reload()
        return target
