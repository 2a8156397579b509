"""``alba remote add/list/remove/import``: manage named remotes (remotes.toml)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from ca.invocation import command_clock
from client.destination import parse_host_port
from client.errors import CliFailed
from client.expiry import Expiry, soonest
from client.output import chosen_format, json_line, output_format_options, record, table
from client.remotes import RemoteEntry, config_path, load_remotes, save_remotes
from core.errors import AlbatrossError
from core.pemfiles import load_certificates, read_file
from durable.files import write_file

__all__ = ["remote"]


@click.group("remote")
def remote() -> None:
    """Manage named remotes (used with --remote NAME)."""


def _check_name(name: str) -> str:
    if not name or not all(c.isalnum() or c in "-_." for c in name):
        raise CliFailed(f"remote name {name!r}: use letters, digits, '-', '_' and '.'", log="term")
    return name


@remote.command("add")
@click.argument("name")
@click.option(
    "-d", "--destination", required=True, metavar="HOST[:PORT]", help="The remote endpoint."
)
@click.option(
    "--ca",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Your CA certificate and its chain.",
)
@click.option(
    "--ca-key",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Your CA's private key.",
)
@click.option(
    "--server-ca",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Trust anchors of the endpoint's certificate.",
)
@click.option("--server-name", help="Host name the server certificate must carry.")
@click.option("--key-type", help="Leaf key type.")
@click.option("--force", is_flag=True, help="Replace an existing remote of that name.")
def add(
    name: str,
    destination: str,
    ca: Path,
    ca_key: Path,
    server_ca: Path,
    server_name: str | None,
    key_type: str | None,
    force: bool,
) -> None:
    """Add a remote NAME."""
    _store(
        name,
        RemoteEntry(
            destination,
            str(ca.resolve()),
            str(ca_key.resolve()),
            str(server_ca.resolve()),
            server_name,
            key_type,
        ),
        force,
    )


def _store(name: str, entry: RemoteEntry, force: bool) -> None:
    _check_name(name)
    try:
        parse_host_port(entry.destination)
    except AlbatrossError as exc:
        raise CliFailed(f"destination {entry.destination!r}: {exc.message}", log="term") from None
    remotes = load_remotes()
    if name in remotes and not force:
        raise CliFailed(f"remote {name!r} exists already (use --force to replace it)", log="term")
    remotes[name] = entry
    path = save_remotes(remotes)
    click.echo(f"remote {name} saved in {path}")


@remote.command("list")
@output_format_options
def list_(**params: object) -> None:
    """List the remotes."""
    remotes = load_remotes()
    output_format = chosen_format(params)
    now = command_clock()()
    expiries = {n: _expiry(e) for n, e in remotes.items()}
    if output_format == "json":
        for name, entry in sorted(remotes.items()):
            x = expiries[name]
            fields = {**vars(entry), "expires": _expiry_json(x), "expires_soon": _soon(x, now)}
            click.echo(json_line(record("remote", name=name, **fields)), nl=False)
        return
    if output_format == "table":
        rows = [[n, e.destination, e.server_name or "-", e.key_type or "-",
                 _expiry_text(expiries[n], now)]
                for n, e in sorted(remotes.items())]  # fmt: skip
        header = ["NAME", "DESTINATION", "SERVER-NAME", "KEY-TYPE", "EXPIRY"]
        click.echo(table(header, rows), nl=False)
        return
    if not remotes:
        click.echo(f"no remotes in {config_path()}")
    for name, entry in sorted(remotes.items()):
        extra = f" (server name {entry.server_name})" if entry.server_name else ""
        click.echo(f"{name}: {entry.destination}{extra}, {_expiry_text(expiries[name], now)}")


def _expiry(entry: RemoteEntry) -> Expiry | str:
    """The soonest end of validity in the remote's chain, or why it cannot be read."""
    try:
        found = soonest(load_certificates(Path(entry.ca), "CA certificate"))
    except AlbatrossError as exc:
        return exc.message
    return found if found is not None else "empty chain"


def _soon(expiry: Expiry | str, now: dt.datetime) -> bool:
    return isinstance(expiry, Expiry) and expiry.soon(now)


def _expiry_json(expiry: Expiry | str) -> dict[str, str]:
    if isinstance(expiry, str):
        return {"error": expiry}
    return {"cn": expiry.cn, "not_after": expiry.not_after.isoformat()}


def _expiry_text(expiry: Expiry | str, now: dt.datetime) -> str:
    if isinstance(expiry, str):
        return f"chain unreadable: {expiry}"
    if expiry.expired(now):
        return f"EXPIRED on {expiry.date()} ({expiry.cn})"
    text = f"expires {expiry.date()} ({expiry.cn})"
    return f"{text} !EXPIRES in {expiry.days_left(now)} days" if _soon(expiry, now) else text


@remote.command("remove")
@click.argument("name")
def remove(name: str) -> None:
    """Remove the remote NAME."""
    remotes = load_remotes()
    if name not in remotes:
        raise CliFailed(f"no remote {name!r} in {config_path()}", log="term")
    del remotes[name]
    save_remotes(remotes)
    click.echo(f"remote {name} removed")


@remote.command("import")
@click.argument("bundle", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", help="Remote name (default: the bundle's Name).")
@click.option("--force", is_flag=True, help="Replace an existing remote of that name.")
def import_(bundle: Path, name: str | None, force: bool) -> None:
    """Import a delegation bundle made by ``alba ca delegate``.

    The chain, key (mode 0600) and server CA go to a directory beside remotes.toml.
    """
    from ca.bundle import parse_bundle

    data = read_file(bundle, "delegation bundle")
    try:
        parsed = parse_bundle(data)
    except AlbatrossError as exc:
        raise CliFailed(f"delegation bundle {bundle}: {exc.message}", log="term") from None
    name = _check_name(name or parsed.name)
    directory = config_path().parent / name
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    pem = Encoding.PEM
    files = {
        "chain.pem": (b"".join(c.public_bytes(pem) for c in parsed.chain), 0o644),
        "key.pem": (
            parsed.key.private_bytes(pem, PrivateFormat.PKCS8, NoEncryption()),
            0o600,
        ),
        "server-ca.pem": (b"".join(c.public_bytes(pem) for c in parsed.server_ca), 0o644),
    }
    if not force and name in load_remotes():
        raise CliFailed(f"remote {name!r} exists already (use --force to replace it)", log="term")
    for fname in files:
        if (directory / fname).exists() and not force:
            raise CliFailed(f"{directory / fname} exists (use --force to replace)", log="term")
        (directory / fname).unlink(missing_ok=True)
    for fname, (content, mode) in files.items():
        write_file(directory / fname, content, mode=mode, overwrite=False)
    entry = RemoteEntry(
        parsed.endpoint,
        str(directory / "chain.pem"),
        str(directory / "key.pem"),
        str(directory / "server-ca.pem"),
        parsed.server_name,
    )
    _store(name, entry, force)
