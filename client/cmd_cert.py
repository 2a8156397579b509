"""``certificate CERT KEY``: run the command of a pre-signed leaf (from the CSR flow)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import trio

from client.destination import Remote, parse_host_port
from client.errors import CliFailed
from client.options import make_settings, output_options
from client.run import execute_certificate
from core.errors import AlbatrossError

__all__ = ["certificate"]


@click.command("certificate")
@click.argument("cert", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("key", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-d", "--destination", metavar="HOST[:PORT]", help="Remote endpoint.")
@click.option(
    "--server-ca",
    type=click.Path(path_type=Path),
    default="cacert.pem",
    show_default=True,
    help="Server trust anchors.",
)
@click.option("--server-name", help="Check the server certificate names this host.")
@output_options
@click.pass_context
def certificate(
    ctx: click.Context,
    /,
    cert: Path,
    key: Path,
    destination: str | None,
    server_ca: Path,
    server_name: str | None,
    **params: Any,
) -> None:
    """Connect with the chain CERT (leaf first) and KEY, and run the leaf's command."""
    if destination is None:
        raise CliFailed("no destination provided", log="term")
    try:
        host, port = parse_host_port(destination)
    except AlbatrossError as exc:
        raise CliFailed(exc.message, log="term") from None
    dest = Remote(host, port, Path(), Path(), server_ca, server_name=server_name)
    trio.run(execute_certificate, cert, key, dest, make_settings(ctx, params))
