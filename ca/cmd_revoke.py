"""The ``ca revoke``, ``ca crl`` and ``ca crl-leaf`` commands (mounted on the ``ca`` group).

The click side only: the CRL code and its files are :mod:`ca.revoke`.
"""

from __future__ import annotations

from pathlib import Path

import click
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from ca.invocation import now, our_errors
from ca.profiles import generate_key
from ca.revoke import CRL_DAYS, crl_leaf, parse_serial, revoke, serials_for_names, write_crl
from ca.store import load_signer, write_certificates, write_new
from cmdline import option
from core.errors import UsageError
from core.pem import crl_from
from core.pemfiles import read_file

__all__ = ["crl_command", "crl_leaf_command", "revoke_command"]

_file = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.command("revoke")
@click.argument("serials", nargs=-1)
@option("--ca", "cacert", aliases=("--cacert",), type=_file, required=True,
        help="The revoking CA's certificate.")  # fmt: skip
@click.option("--db", type=_file, default=None, help="Revoke by name: the database to look up.")
@click.option("--name", "names", multiple=True, help="Certificate name (CN) in --db; repeatable.")
def revoke_command(
    serials: tuple[str, ...], cacert: Path, db: Path | None, names: tuple[str, ...]
) -> None:
    """Revoke certificates this CA issued, by SERIAL (hex) or by --name in --db."""
    with our_errors():
        numbers = [parse_serial(s) for s in serials]
        if names:
            if db is None:
                raise UsageError("--name needs --db, the database that records the serials")
            numbers += serials_for_names(db, names)
        if not numbers:
            raise UsageError("nothing to revoke: give serials or --name with --db")
        new = revoke(cacert.parent, numbers, now())
    for serial in numbers:
        click.echo(f"{serial:x} {'revoked' if serial in new else 'was already revoked'}")
    click.echo("now run `ca crl` and install the CRL on the endpoint", err=True)


@click.command("crl")
@option("--ca", "cacert", aliases=("--cacert",), type=_file, required=True,
        help="The CA's certificate.")  # fmt: skip
@option("--ca-key", "cakey", aliases=("--cakey",), type=_file, required=True,
        help="The CA's private key.")  # fmt: skip
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Where to write the CRL (PEM).",
)
@click.option(
    "--days",
    type=click.IntRange(min=1),
    default=CRL_DAYS,
    show_default=True,
    help="Days until the CRL's nextUpdate.",
)
def crl_command(cacert: Path, cakey: Path, out: Path, days: int) -> None:
    """Write the CRL of every certificate revoked by this CA."""
    with our_errors():
        crl = write_crl(cacert, cakey, out, now(), days)
    click.echo(f"{out}: {len(list(crl))} revoked certificate(s)")


@click.command("crl-leaf")
@click.argument("crl_file", metavar="CRL", type=_file)
@option("--ca", "cacert", aliases=("--cacert",), type=_file, required=True,
        help="Your CA certificate and its chain.")  # fmt: skip
@option("--ca-key", "cakey", aliases=("--cakey",), type=_file, required=True,
        help="Your CA's private key.")  # fmt: skip
@click.option(
    "--out",
    default="crl-leaf",
    show_default=True,
    help="Writes OUT.pem (the leaf, then your chain) and OUT.key (mode 0600).",
)
def crl_leaf_command(crl_file: Path, cacert: Path, cakey: Path, out: str) -> None:
    """Wrap your CRL in a request certificate that hands it to the endpoint.

    Then run it: ``alba certificate OUT.pem OUT.key --destination HOST --server-ca cacert.pem``
    """
    with our_errors():
        signer = load_signer(cacert, cakey)
        crl = crl_from(read_file(crl_file, "CRL file"), f"CRL file {crl_file}")
        key = generate_key("ed25519")
        cert = crl_leaf(signer.cert, signer.key, crl, key, now())
        write_new(Path(f"{out}.key"), key.private_bytes(
            Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()), 0o600)  # fmt: skip
        write_certificates(Path(f"{out}.pem"), [cert, signer.cert, *signer.chain])
    click.echo(f"wrote {out}.pem and {out}.key; run them with `alba certificate`")
