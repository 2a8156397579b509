"""``albatross-inspect``: explain what albatross content a file holds.

It reads a certificate, a chain, a CSR (PEM or DER) or a wire message (DER,
with or without its 4-byte length prefix; ``--hex`` for hex text) from a file
or ``-`` and prints it in plain words, as JSON (``--json``), or the hex of the
re-encoded message or extension value (``--reencode``) so that anyone can check
byte-exactness from the shell.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import sys
from typing import Any

import click
from cryptography import x509

from ca.inspect import describe_input, report
from ca.invocation import command_clock
from core.certs import albatross_command
from core.errors import AlbatrossError, ParseError, exit_code
from core.jsonout import json_line, record, to_json
from core.pem import certificate_from_der, csr_from, objects_from
from core.pemfiles import read_limited
from core.wire import DEFAULT_MAX_FRAME, Message, decode_message
from core.wire.describe import describe
from core.wire.grammar import encode_extension, encode_message

__all__ = ["inspect_bytes", "inspect_exit_code", "main"]

#: Largest input: the biggest frame we accept with its length prefix, as hex text with
#: a space after each octet (``--hex``); certificates and CSRs are smaller still.
MAX_INPUT = 3 * (DEFAULT_MAX_FRAME + 4)


def _load_x509(data: bytes) -> list[x509.Certificate | x509.CertificateSigningRequest] | None:
    """Certificates and CSRs in *data* (PEM, or one DER object); ``None`` if it holds none.

    Parsed by :mod:`core.pem`, the one reader of certificates; keys in a PEM file are skipped.
    """
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
    if len(data) > 4 and int.from_bytes(data[:4], "big", signed=True) == len(data) - 4:
        return decode_message(data[4:])
    return decode_message(data)


def inspect_exit_code(exc: AlbatrossError) -> int:
    """albatross-inspect's exit code: every error of ours means the input is bad, 2."""
    return exit_code(exc, {AlbatrossError: 2})


def inspect_bytes(
    data: bytes,
    *,
    as_json: bool = False,
    reencode: bool = False,
    now: dt.datetime | None = None,
    source: str = "-",
) -> str:
    """The report inspect prints for *data*; raises :class:`ParseError` for anything else.

    Certificates, chains and CSRs go through :mod:`ca.inspect`, the one certificate
    inspector (``alba ca inspect`` prints the same); *now* adds their status.
    """
    objs = _load_x509(data)
    if objs is not None:
        if reencode:
            commands = [albatross_command(o) for o in objs]
            return "\n".join(encode_extension(c).hex() if c is not None else "-" for c in commands)
        return report([(source, describe_input(data, now))], as_json).rstrip("\n")
    msg = _load_message(data)
    if reencode:
        return encode_message(msg).hex()
    if as_json:
        line = record("message", header=to_json(msg.header), payload=to_json(msg.payload))
        return json_line(line).rstrip("\n")
    return describe(msg)


def _source_name(source: Any) -> str:
    """The input's file name, ``-`` for standard input."""
    name = getattr(source, "name", "-")
    return name if isinstance(name, str) and not name.startswith("<") else "-"


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("source", type=click.File("rb"), default="-")
@click.option("--hex", "hex_input", is_flag=True, help="The input is hex text (spaces allowed).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines (README: JSON output).")
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
    try:
        data = read_limited(source, "the input", MAX_INPUT)
        if hex_input:
            try:
                data = bytes.fromhex("".join(data.decode("ascii").split()))
            except (UnicodeDecodeError, ValueError):
                raise ParseError("--hex: the input is not hex text") from None
        click.echo(
            inspect_bytes(
                data,
                as_json=as_json,
                reencode=reencode,
                now=command_clock()(),
                source=_source_name(source),
            )
        )
    except AlbatrossError as e:
        click.echo(f"albatross-inspect: {e}", err=True)
        sys.exit(inspect_exit_code(e))


if __name__ == "__main__":  # pragma: no cover - exercised by the subprocess smoke test
    main()
