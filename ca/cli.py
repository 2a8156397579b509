"""Click commands of the CA toolkit, mounted by the client CLI (``alba``).

``generate`` and ``sign`` are albatross-client's: same arguments, defaults and
output lines.  albatross logs to **stdout** (``signing …``, and
``<program>: [WARNING] …`` / ``[ERROR] …``), so these two commands keep
that for scripts that parse it; exit code 0 or 124.  The ``ca`` group holds our
additions (``delegate``, ``inspect``): data on stdout, diagnostics on stderr.
Every failure exits with the code of its error class (124 for all of them,
albatross's "Cli_failed").
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from ca.cmd_revoke import crl_command, crl_leaf_command, revoke_command
from ca.inspect import describe_input, report
from ca.invocation import now, our_errors
from ca.profiles import INTERMEDIATE_DAYS, KEY_TYPES, ROOT_DAYS, SERVER_DAYS
from ca.provision import (
    DelegationSource,
    delegate,
    generate,
    sign,
    source_from_bundle,
    source_from_files,
)
from cmdline import option
from core.errors import AlbatrossError, UsageError, exit_code
from core.pemfiles import read_file, read_limited
from core.pins import make_pins
from core.wire import Policy

__all__ = [
    "LOG_PREFIX",
    "ca_group",
    "delegate_command",
    "generate_command",
    "inspect_command",
    "register",
    "sign_command",
]

#: The program name in albatross-style log lines when click knows none.
LOG_PREFIX = "albatross-client"


def _program() -> str:
    """The name the user ran us as, like Logs_fmt's prefix (``alba``, ``albatross-client``)."""
    context = click.get_current_context(silent=True)
    name = context.find_root().info_name if context is not None else None
    return name or LOG_PREFIX


def _say(message: str) -> None:
    click.echo(message)


def _warn(message: str) -> None:
    click.echo(f"{_program()}: [WARNING] {message}")


@contextmanager
def _albatross_errors(what: str) -> Iterator[None]:
    """Report our errors as albatross does (stdout, ``[ERROR] error while …``) and exit."""
    try:
        yield
    except AlbatrossError as exc:
        click.echo(f"{_program()}: [ERROR] error while {what}: {exc.message}")
        sys.exit(exit_code(exc))


_key_type = click.option(
    "--key-type",
    type=click.Choice(KEY_TYPES),
    default="ed25519",
    show_default=True,
    help="Type of the keys created.",
)
_path = click.Path(dir_okay=False, path_type=Path)


@click.command("generate")
@click.argument("name")
@click.argument("db", type=_path)
@click.option(
    "--days",
    type=click.IntRange(min=1),
    default=ROOT_DAYS,
    show_default=True,
    help="Days the CA certificate is valid.",
)
@click.option(
    "--server",
    default="server",
    show_default=True,
    help="Name (CN and file name) of the server certificate and key.",
)
@click.option(
    "--server-days",
    type=click.IntRange(min=1),
    default=SERVER_DAYS,
    show_default=True,
    help="Days the server certificate is valid.",
)
@click.option(
    "--server-name",
    "dns_names",
    multiple=True,
    help="DNS subjectAltName for the server certificate (repeatable).",
)
@click.option(
    "--server-ip",
    "ips",
    multiple=True,
    help="IP subjectAltName for the server certificate (repeatable).",
)
@_key_type
def generate_command(
    name: str,
    db: Path,
    days: int,
    server: str,
    server_days: int,
    dns_names: tuple[str, ...],
    ips: tuple[str, ...],
    key_type: str,
) -> None:
    """Create a root CA (NAME.key, cacert.pem) and the server certificate; append to DB."""
    with _albatross_errors("generating"):
        generate(
            Path("."),
            name,
            db,
            now(),
            days=days,
            server=server,
            server_days=server_days,
            key_type=key_type,
            dns_names=dns_names,
            ips=ips,
        )


@click.command("sign")
@click.argument("cacert", type=_path)
@click.argument("db", type=_path)
@click.argument("key", type=_path)
@click.argument("csr", type=_path)
@click.option(
    "--days",
    type=click.IntRange(min=1),
    default=None,
    help="Days the certificate is valid [default: 365 for CAs, 1 for leaves].",
)
def sign_command(cacert: Path, db: Path, key: Path, csr: Path, days: int | None) -> None:
    """Sign CSR with the CA in CACERT/KEY, write <CN>.pem and append to DB."""
    with _albatross_errors("signing"):
        sign(Path("."), cacert, db, key, csr, now(), _say, _warn, days)


@click.command("delegate")
@click.argument("name")
@click.argument("unikernels", type=click.IntRange(min=0))
@click.option("--mem", type=int, default=512, show_default=True, help="Memory in MB.")
@click.option(
    "--cpu",
    "cpus",
    type=click.IntRange(min=0),
    multiple=True,
    help="CPU id the friend may use (repeatable) [default: 0].",
)
@click.option(
    "--size", type=click.IntRange(min=0), default=None, help="Block storage in MB [default: none]."
)
@click.option("--bridge", "bridges", multiple=True, help="Bridge the friend may use (repeatable).")
@click.option(
    "--bundle",
    type=_path,
    default=None,
    help="Delegate from your own bundle (sets --ca, --ca-key, --server-ca, --destination).",
)
@click.option(
    "--ca",
    "ca_cert",
    type=_path,
    default=None,
    help="Your CA certificate (first) and its chain [default: ca.pem].",
)
@click.option("--ca-key", type=_path, default=None, help="Your CA's private key [default: ca.key].")
@click.option(
    "--server-ca",
    type=_path,
    default=None,
    help="Trust anchor of the endpoint, put into the bundle [default: cacert.pem].",
)
@option("-d", "--destination", "endpoint", aliases=("--endpoint",), metavar="HOST[:PORT]",
        default=None, help="The endpoint, put into the bundle (port 1025).")  # fmt: skip
@click.option("--server-name", default=None, help="Name in the server certificate's SAN.")
@click.option(
    "--days",
    type=click.IntRange(min=1),
    default=INTERMEDIATE_DAYS,
    show_default=True,
    help="Days the delegated CA certificate is valid.",
)
@click.option("--db", type=_path, default=None, help="Serial database to append to.")
@click.option("--out", type=_path, default=None, help="Bundle file [default: NAME.bundle].")
@click.option(
    "--pin-digest",
    "pin_digests",
    multiple=True,
    metavar="SHA256",
    help="Image the subtree may run, as 64 hex digits (repeatable; enforced by our endpoint).",
)
@click.option(
    "--pin-job",
    "pin_jobs",
    multiple=True,
    metavar="JOB",
    help="builder-web job the subtree may deploy (repeatable; checked by alba update).",
)
@_key_type
def delegate_command(
    name: str,
    unikernels: int,
    mem: int,
    cpus: tuple[int, ...],
    size: int | None,
    bridges: tuple[str, ...],
    bundle: Path | None,
    ca_cert: Path | None,
    ca_key: Path | None,
    server_ca: Path | None,
    endpoint: str | None,
    server_name: str | None,
    days: int,
    db: Path | None,
    out: Path | None,
    pin_digests: tuple[str, ...],
    pin_jobs: tuple[str, ...],
    key_type: str,
) -> None:
    """Delegate a sub-quota: key, CA certificate and one bundle file for NAME."""
    policy = Policy(unikernels, frozenset(cpus or (0,)), mem, size, frozenset(bridges))
    with our_errors():
        pins = make_pins(pin_digests, pin_jobs)
        source = _delegation_source(bundle, ca_cert, ca_key, server_ca, endpoint, server_name)
        if not bridges:
            click.echo("warning: policy without any network access", err=True)
        if pins is not None and pins.digests is None:
            click.echo(
                "warning: job pins only: the endpoint cannot tie an image to a builder-web job,"
                " so it enforces nothing; alba update checks them (add --pin-digest to enforce)",
                err=True,
            )
        done = delegate(
            Path("."), name, policy, source, now(), key_type=key_type, days=days, db=db,
            out=out, pins=pins,
        )  # fmt: skip
    for warning in done.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"wrote {done.path}: delegated CA {name} with {policy}")
    if pins is not None:
        click.echo(f"pinned: {pins.text()}")


def _delegation_source(
    bundle: Path | None,
    ca_cert: Path | None,
    ca_key: Path | None,
    server_ca: Path | None,
    endpoint: str | None,
    server_name: str | None,
) -> DelegationSource:
    if bundle is not None:
        if (ca_cert, ca_key, server_ca) != (None, None, None):
            raise UsageError(
                "--bundle already holds the CA, its key and the server CA: "
                "drop --ca, --ca-key and --server-ca"
            )
        return source_from_bundle(bundle, endpoint, server_name)
    if endpoint is None:
        raise UsageError("give the endpoint's address with --destination HOST[:PORT]")
    return source_from_files(
        ca_cert or Path("ca.pem"),
        ca_key or Path("ca.key"),
        server_ca or Path("cacert.pem"),
        endpoint,
        server_name,
    )


def _read_input(name: str) -> bytes:
    if name == "-":
        return read_limited(sys.stdin.buffer, "standard input")
    return read_file(Path(name), "input file")


@click.command("inspect")
@click.argument("files", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines (README: JSON output).")
def inspect_command(files: tuple[str, ...], as_json: bool) -> None:
    """Describe certificates, CSRs, chains, keys or bundles (PEM or DER; '-' = stdin)."""
    with our_errors():
        described = [(name, describe_input(_read_input(name), now())) for name in files]
    click.echo(report(described, as_json), nl=False)


@click.group("ca")
def ca_group() -> None:
    """Certificate authority tools beyond albatross: delegate, inspect, revoke, crl."""


ca_group.add_command(delegate_command)
ca_group.add_command(inspect_command)
ca_group.add_command(revoke_command)
ca_group.add_command(crl_command)
ca_group.add_command(crl_leaf_command)


def register(group: click.Group) -> None:
    """Mount ``generate``, ``sign`` and the ``ca`` group on *group*."""
    for command in (generate_command, sign_command, ca_group):
        group.add_command(command)
