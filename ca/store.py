# The one module of the CA toolkit that touches the disk.
#
# Security reasoning.  Private keys are the CA's authority, so:
# * a key file is created with its mode set on the open file descriptor (0400
#   where albatross-client uses it, 0600 for our own files), so it is never
#   readable by others, not even for a moment, appears whole or not at all, and
#   never replaces an existing file (a clear error instead): durable.write_file;
# * a key loaded together with a certificate must match it (albatross's text
#   "Public key of certificate doesn't match private key"), so a mixed-up pair
#   fails here and not later with an opaque TLS error;
# * certificates are public and replaced atomically (durable.write_file),
#   like albatross-client overwrites `<name>.pem`;
# * the serial database is appended to with O_APPEND, as albatross does (and
#   fsync'd: durable.append_file);
# * every read is bounded (core.pemfiles, the one reader of these files) and file
#   names derived from a CSR's CN are refused if they could leave the directory.
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from ca.bundle import Bundle, encode_bundle, parse_bundle
from ca.errors import StoreError
from ca.profiles import PrivateKey, generate_key, key_matches
from core.errors import ParseError
from core.pem import encode_certificates, encode_private_key, integer_octets
from core.pemfiles import load_certificates, load_key, read_file
from durable.files import append_file, write_file

__all__ = [
    "ALBATROSS_KEY_MODE",
    "CERT_MODE",
    "SECRET_MODE",
    "Signer",
    "append_db",
    "db_line",
    "ensure_key",
    "file_name_for",
    "load_bundle",
    "load_signer",
    "write_bundle",
    "write_certificates",
    "write_new",
]

#: albatross-client writes its keys read-only for the owner.
ALBATROSS_KEY_MODE = 0o400
#: Our own secret files (delegation bundles, friends' keys).
SECRET_MODE = 0o600
CERT_MODE = 0o644


@dataclass(frozen=True, slots=True)
class Signer:
    """A CA that signs: its certificate, the chain above it (may be empty) and its key."""

    cert: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    key: PrivateKey


def load_signer(cert_path: Path, key_path: Path) -> Signer:
    """The CA in *cert_path* (first certificate; the rest is its chain) and its matching key."""
    certs = load_certificates(cert_path, "CA certificate file")
    key = load_key(key_path, "CA key file")
    if not key_matches(key, certs[0].public_key()):
        raise StoreError("Public key of certificate doesn't match private key")
    return Signer(certs[0], tuple(certs[1:]), key)


def write_new(path: Path, data: bytes, mode: int) -> None:
    """Create *path* with exactly *mode*, atomically; refuse if it exists."""
    try:
        write_file(path, data, mode=mode, overwrite=False)
    except FileExistsError:
        raise StoreError(
            f"refusing to overwrite {path}: move it away or choose another name"
        ) from None
    except OSError as exc:
        raise StoreError(f"cannot create {path}: {exc.strerror}") from None


def ensure_key(
    path: Path, key_type: str, mode: int = ALBATROSS_KEY_MODE
) -> tuple[PrivateKey, bool]:
    """albatross's ``priv_key``: reuse the key at *path*, or create one; returns (key, created)."""
    if path.exists():
        return load_key(path), False
    key = generate_key(key_type)
    write_new(path, encode_private_key(key), mode)
    return key, True


def write_certificates(path: Path, certs: list[x509.Certificate]) -> None:
    """Write PEM certificates to *path*, replacing it atomically (mode 0644)."""
    try:
        write_file(path, encode_certificates(certs), mode=CERT_MODE)
    except OSError as exc:
        raise StoreError(f"cannot write {path}: {exc.strerror}") from None


def db_line(cert: x509.Certificate, name: str) -> str:
    """``<hex of the serial's INTEGER content octets> <name>``, as albatross appends it."""
    return f"{integer_octets(cert.serial_number).hex()} {name}\n"


def append_db(path: Path, cert: x509.Certificate, name: str) -> None:
    """Append the serial line for *cert* to the database file *path* (created if missing)."""
    try:
        append_file(path, db_line(cert, name).encode("utf-8"), mode=CERT_MODE)
    except OSError as exc:
        raise StoreError(f"cannot append to database {path}: {exc.strerror}") from None


def file_name_for(directory: Path, name: str, suffix: str) -> Path:
    """``directory/<name><suffix>``, refusing names that would leave *directory*."""
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise StoreError(
            f"cannot use {name!r} as a file name: the common name must not be empty or contain '/'"
        )
    return directory / f"{name}{suffix}"


def write_bundle(path: Path, bundle: Bundle) -> None:
    """Write a delegation bundle (it holds a key: mode 0600, never overwritten)."""
    write_new(path, encode_bundle(bundle), SECRET_MODE)


def load_bundle(path: Path) -> Bundle:
    data = read_file(path, "bundle file")
    try:
        return parse_bundle(data)
    except (ParseError, StoreError) as exc:
        raise type(exc)(f"bundle file {path}: {exc.message}") from None
