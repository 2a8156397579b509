"""Reading the files a user points us at: certificates, chains, keys, CSRs, bundles, CRLs.

The one bounded reader of these files for every package (the CA toolkit, the
client, the endpoint, the inspect tools), and loaders that read and parse
(:mod:`core.pem`) in one step.  Its job is to read a file, so it is the one
place of the core that opens one.

The bound, :data:`MAX_PEM_FILE`, is stated once.  The biggest legitimate file
is a request chain whose leaf carries a ``unikernel create`` with its image:
albatross-client refuses leaves over 2^24 octets of DER (the 24-bit length of a
TLS handshake message), the CA certificates above it add a little (the endpoint
takes at most 17 MiB of DER chain, tlsendpoint.tlscontext), and PEM's base64
with a newline every 64 characters turns 17 MiB into 17 * 4/3 * 65/64 = 23 MiB.
A CSR carrying the same image is smaller.  Anything bigger is none of our files,
and reading it whole would only cost memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from cryptography import x509

from core.errors import FileError
from core.keys import PrivateKey
from core.pem import certificates_from, csr_from, private_key_from

__all__ = [
    "MAX_PEM_FILE",
    "load_certificates",
    "load_csr",
    "load_key",
    "read_file",
    "read_limited",
]

#: Largest certificate, chain, key, CSR, bundle or CRL file we read (see the module text).
MAX_PEM_FILE = 24 * 1024 * 1024


def read_limited(handle: BinaryIO, what: str, limit: int = MAX_PEM_FILE) -> bytes:
    """All of an open file (e.g. standard input), refusing more than *limit* octets."""
    data = handle.read(limit + 1)
    if len(data) > limit:
        raise FileError(f"{what} is larger than {limit} bytes", f"larger than {limit} bytes")
    return data


def read_file(path: Path, what: str, limit: int = MAX_PEM_FILE) -> bytes:
    """The contents of *path*, at most *limit* octets; *what* names it in errors."""
    try:
        with open(path, "rb") as handle:
            return read_limited(handle, f"{what} {path}", limit)
    except FileNotFoundError as exc:
        raise FileError(f"{what} {path} does not exist", exc.strerror or str(exc)) from None
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise FileError(f"cannot read {what} {path}: {reason}", reason) from None


def load_certificates(path: Path, what: str = "certificate file") -> list[x509.Certificate]:
    """Every certificate of a PEM file, in order, or the one of a DER file."""
    return certificates_from(read_file(path, what), f"{what} {path}")


def load_key(path: Path, what: str = "key file") -> PrivateKey:
    """The unencrypted private key of a PEM or DER file."""
    return private_key_from(read_file(path, what), f"{what} {path}")


def load_csr(path: Path, what: str = "CSR file") -> x509.CertificateSigningRequest:
    """The certificate signing request of a PEM or DER file."""
    return csr_from(read_file(path, what), f"{what} {path}")
