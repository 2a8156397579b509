"""``albatross-inspect``: explain what albatross content a file holds.

It reads a certificate, a chain, a CSR (PEM or DER) or a wire message (DER,
with or without its 4-byte length prefix; ``--hex`` for hex text) from a file
or ``-`` and prints it in plain words, as JSON (``--json``), or the hex of the
re-encoded message or extension value (``--reencode``) so that anyone can check
byte-exactness from the shell.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

import cmdline
from core.errors import AlbatrossError, ParseError, exit_code

if TYPE_CHECKING:
    from cryptography import x509

    from core.wire import Command, Message

__all__ = ["inspect_bytes", "inspect_exit_code", "main"]

# cryptography and the codec are imported where they are used, so that
# ``albatross-inspect --version`` and ``--help`` start without them (issue 13).


@dataclass(frozen=True)
class CertView:
    """What inspect reports about one certificate or CSR."""

    what: str  # "certificate" | "certificate request"
    subject: str
    issuer: str | None
    serial: int | None
    not_before: str | None
    not_after: str | None
    is_ca: bool | None
    sha256: str
    extension_critical: bool | None
    command: Command | None
    raw_extension: bytes | None
    extension_error: str | None

    def json(self) -> dict[str, Any]:
        from core.wire.describe import to_json

        return {
            "what": self.what,
            "subject": self.subject,
            "issuer": self.issuer,
            "serial": None if self.serial is None else f"0x{self.serial:x}",
            "not_before": self.not_before,
            "not_after": self.not_after,
            "is_ca": self.is_ca,
            "sha256": self.sha256,
            "albatross_extension": None
            if self.raw_extension is None
            else {
                "critical": self.extension_critical,
                "hex": self.raw_extension.hex(),
                "command": to_json(self.command) if self.command is not None else None,
                "error": self.extension_error,
            },
        }

    def words(self) -> str:
        from core.wire.describe import describe

        lines = [f"{self.what}: {self.subject}"]
        if self.issuer is not None:
            lines.append(f"  issuer: {self.issuer}, serial 0x{self.serial:x}")
            lines.append(f"  valid: {self.not_before} .. {self.not_after}")
            lines.append(f"  CA: {'yes' if self.is_ca else 'no'}")
        lines.append(f"  sha256: {self.sha256}")
        if self.raw_extension is None:
            lines.append("  albatross extension: none")
        elif self.command is None:
            lines.append(f"  albatross extension: undecodable: {self.extension_error}")
        else:
            crit = " (critical!)" if self.extension_critical else ""
            lines.append(f"  albatross extension{crit}: {describe(self.command)}")
        return "\n".join(lines)


def _view(obj: x509.Certificate | x509.CertificateSigningRequest) -> CertView:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    from core.wire import EXTENSION_OID, decode_extension

    try:
        ext = obj.extensions.get_extension_for_oid(x509.ObjectIdentifier(EXTENSION_OID))
    except x509.ExtensionNotFound:
        ext = None
    raw = ext.value.value if ext is not None else None  # type: ignore[attr-defined]
    command: Command | None = None
    error: str | None = None
    if raw is not None:
        try:
            command = decode_extension(raw)
        except ParseError as e:
            error = str(e)
    if isinstance(obj, x509.Certificate):
        bc = None
        with contextlib.suppress(x509.ExtensionNotFound):
            bc = obj.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        return CertView(
            "certificate",
            obj.subject.rfc4514_string(),
            obj.issuer.rfc4514_string(),
            obj.serial_number,
            obj.not_valid_before_utc.isoformat(),
            obj.not_valid_after_utc.isoformat(),
            bc,
            obj.fingerprint(hashes.SHA256()).hex(),
            None if ext is None else ext.critical,
            command,
            raw,
            error,
        )
    der = obj.public_bytes(serialization.Encoding.DER)
    return CertView(
        "certificate request",
        obj.subject.rfc4514_string(),
        None,
        None,
        None,
        None,
        None,
        hashlib.sha256(der).hexdigest(),
        None if ext is None else ext.critical,
        command,
        raw,
        error,
    )


def _load_x509(data: bytes) -> list[x509.Certificate | x509.CertificateSigningRequest] | None:
    """Certificates and CSRs in *data* (PEM, or one DER object); ``None`` if it holds none.

    Parsed by :mod:`core.pem`, the one reader of certificates; keys in a PEM file are skipped.
    """
    from cryptography import x509

    from core.pem import certificate_from_der, csr_from, objects_from

    if b"-----BEGIN" in data:
        objs = [
            o
            for o in objects_from(data)
            if isinstance(o, x509.Certificate | x509.CertificateSigningRequest)
        ]
        return objs or None
    with contextlib.suppress(ParseError):
        return [certificate_from_der(data, "input")]
    with contextlib.suppress(ParseError):
        return [csr_from(data, "input")]
    return None


def _load_message(data: bytes) -> Message:
    """A wire message, with or without its 4-byte length prefix."""
    from core.wire import decode_message

    if len(data) > 4 and int.from_bytes(data[:4], "big", signed=True) == len(data) - 4:
        return decode_message(data[4:])
    return decode_message(data)


def inspect_exit_code(exc: AlbatrossError) -> int:
    """albatross-inspect's exit code: every error of ours means the input is bad, 2."""
    return exit_code(exc, {AlbatrossError: 2})


def inspect_bytes(data: bytes, *, as_json: bool = False, reencode: bool = False) -> str:
    """The report inspect prints for *data*; raises :class:`ParseError` for anything else."""
    from core.wire.describe import describe, to_json
    from core.wire.grammar import encode_extension, encode_message

    objs = _load_x509(data)
    if objs is not None:
        views = [_view(o) for o in objs]
        if reencode:
            return "\n".join(
                encode_extension(v.command).hex() if v.command is not None else "-" for v in views
            )
        if as_json:
            return json.dumps([v.json() for v in views], indent=2)
        return "\n".join(v.words() for v in views)
    msg = _load_message(data)
    if reencode:
        return encode_message(msg).hex()
    if as_json:
        return json.dumps(
            {"header": to_json(msg.header), "payload": to_json(msg.payload)}, indent=2
        )
    return describe(msg)


@click.command(cls=cmdline.Command)
@click.argument("source", type=click.File("rb"), default="-")
@click.option("--hex", "hex_input", is_flag=True, help="The input is hex text (spaces allowed).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
@click.option(
    "--reencode",
    is_flag=True,
    help="Print the hex of the re-encoded message (for a certificate or CSR: of its albatross "
    "extension value), to check byte-exactness.",
)
def main(source: Any, hex_input: bool, as_json: bool, reencode: bool) -> None:
    """Explain the albatross content of SOURCE (a file, or - for standard input).

    SOURCE may be a certificate, chain or CSR (PEM or DER) or a wire message
    (DER, with or without its 4-byte length prefix).
    """
    from core.pemfiles import read_limited
    from core.wire import DEFAULT_MAX_FRAME

    # Largest input: the biggest frame we accept with its length prefix, as hex text with
    # a space after each octet (``--hex``); certificates and CSRs are smaller still.
    max_input = 3 * (DEFAULT_MAX_FRAME + 4)
    try:
        data = read_limited(source, "the input", max_input)
        if hex_input:
            try:
                data = bytes.fromhex("".join(data.decode("ascii").split()))
            except (UnicodeDecodeError, ValueError):
                raise ParseError("--hex: the input is not hex text") from None
        click.echo(inspect_bytes(data, as_json=as_json, reencode=reencode))
    except AlbatrossError as e:
        click.echo(f"albatross-inspect: {e}", err=True)
        sys.exit(inspect_exit_code(e))


if __name__ == "__main__":  # pragma: no cover - exercised by the subprocess smoke test
    main()
