"""The destination and output options every remote-capable command takes.

albatross-client puts them on each subcommand (``info --destination h --ca c``),
so ``destination_options`` adds them to each of ours, plus ``--remote NAME``
(a named remote from remotes.toml), ``--server-name``, ``--json`` and
``--timeout``.  ``run_command`` turns them into a destination and runs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import trio
from click.shell_completion import CompletionItem

from ca.invocation import command_clock
from ca.profiles import KEY_TYPES
from client.destination import Csr, Destination, Local, Remote, default_tmpdir, parse_host_port
from client.errors import CliFailed
from client.output import chosen_format, output_format_options
from client.progress import make_meter
from client.remotes import load_remotes
from client.run import DataSource, execute
from client.session import REPLY_TIMEOUT, Printer, Settings
from cmdline import log_level
from core.errors import AlbatrossError
from core.wire import Command, Name

__all__ = [
    "destination_options",
    "make_printer",
    "make_settings",
    "output_options",
    "resolve_destination",
    "run_command",
]

F = TypeVar("F", bound=Callable[..., Any])

NET = "Networking options"


def output_options(func: F) -> F:
    func = output_format_options(func)
    func = click.option(
        "--timeout",
        type=click.FloatRange(min=0.1),
        default=REPLY_TIMEOUT,
        show_default=True,
        help="Seconds to wait for a reply (console and stats streams then follow forever).",
    )(func)
    return func


def _complete_remotes(
    _ctx: click.Context, _param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """Shell completion of ``--remote``: the names in remotes.toml."""
    try:
        names = sorted(load_remotes())
    except AlbatrossError:
        return []
    return [CompletionItem(n) for n in names if n.startswith(incomplete)]


def destination_options(func: F) -> F:
    opts: list[Callable[[F], F]] = [
        click.option("--socket", help='Local daemon socket ("-" prints the command).'),
        click.option(
            "--tmpdir",
            type=click.Path(file_okay=False, path_type=Path),
            help=f"albatross runtime directory (default {default_tmpdir()}).",
        ),
        click.option("-d", "--destination", metavar="HOST[:PORT]", help="Remote endpoint."),
        click.option("--csr", is_flag=True, help="Write a key and a CSR instead of running."),
        click.option(
            "--remote",
            "remote_name",
            metavar="NAME",
            help="A named remote (see 'remote list').",
            shell_complete=_complete_remotes,
        ),
        click.option(
            "--ca", type=click.Path(path_type=Path), help="CA certificate and chain [ca.pem]."
        ),
        click.option("--ca-key", type=click.Path(path_type=Path), help="CA private key [ca.key]."),
        click.option(
            "--server-ca",
            type=click.Path(path_type=Path),
            help="Server trust anchors [cacert.pem].",
        ),
        click.option("--server-name", help="Check the server certificate names this host."),
        click.option("--key-type", type=click.Choice(KEY_TYPES), help="Leaf key type [ed25519]."),
    ]
    for opt in reversed(opts):
        func = opt(func)
    return output_options(func)


def prog_name(ctx: click.Context) -> str:
    return ctx.find_root().info_name or "alba"


def make_printer(ctx: click.Context, params: dict[str, Any]) -> Printer:
    output_format = chosen_format(params)
    ctx.find_root().meta["alba.json"] = output_format == "json"
    # Logs_cli's levels (the common options, :mod:`cmdline`): -q (quiet) prints
    # nothing on stdout; debug (-vv) also shows unikernel arguments (argv).
    level = log_level(ctx)
    verbose = level == "debug"
    out = (lambda _s: None) if level == "quiet" else _out
    kind = _ErrorsOnly if level == "error" else Printer
    return kind(prog_name(ctx), out, _err, output_format, verbose)


class _ErrorsOnly(Printer):
    """``--verbosity=error``: Logs drops ``[WARNING]`` lines, errors and replies stay."""

    def warn(self, text: str) -> None:
        pass


def _out(text: str) -> None:
    click.echo(text, nl=False)


def _err(text: str) -> None:
    click.echo(text, nl=False, err=True)


def make_settings(
    ctx: click.Context, params: dict[str, Any], label: str = "transferred"
) -> Settings:
    return Settings(
        clock=command_clock(),
        printer=make_printer(ctx, params),
        reply_timeout=float(params.get("timeout") or REPLY_TIMEOUT),
        progress=None if chosen_format(params) == "json" else make_meter(label),
    )


def resolve_destination(params: dict[str, Any]) -> Destination:
    """Exactly one destination, with named-remote values as defaults for the flags."""
    remote_name = params.get("remote_name")
    chosen = [
        bool(params.get("csr")),
        params.get("destination") is not None,
        params.get("socket") is not None,
    ]
    if sum(chosen) > 1 or (remote_name and (chosen[0] or chosen[2])):
        raise CliFailed(
            "The options --csr, --destination, and --socket are mutually exclusive", log="term"
        )
    key_type = params.get("key_type")
    if params.get("csr"):
        return Csr(key_type or "ed25519")
    destination = params.get("destination")
    entry = None
    if remote_name:
        remotes = load_remotes()
        if remote_name not in remotes:
            known = ", ".join(sorted(remotes)) or "none"
            raise CliFailed(f"unknown remote {remote_name!r} (known: {known})", log="term")
        entry = remotes[remote_name]
        destination = destination or entry.destination
    if destination is None:
        return Local(params.get("socket"), params.get("tmpdir") or default_tmpdir())
    try:
        host, port = parse_host_port(destination)
    except AlbatrossError as exc:
        raise CliFailed(f"option '--destination': {exc.message}", log="term") from None

    def pick(flag: str, default: str) -> Path:
        value = params.get(flag)
        if value is not None:
            return Path(value)
        return Path(getattr(entry, flag)) if entry is not None else Path(default)

    server_name = params.get("server_name") or (entry.server_name if entry else None)
    ca, ca_key = pick("ca", "ca.pem"), pick("ca_key", "ca.key")
    if entry is None and not (ca.exists() and ca_key.exists()):
        _hint_generated_ca(ca if not ca.exists() else ca_key, params)
    return Remote(
        host,
        port,
        ca,
        ca_key,
        pick("server_ca", "cacert.pem"),
        key_type or (entry.key_type if entry and entry.key_type else "ed25519"),
        server_name,
    )


def _hint_generated_ca(missing: Path, params: dict[str, Any]) -> None:
    """The client's defaults (ca.pem, ca.key) are not what ``generate`` writes
    (cacert.pem, NAME.key): when those are here, say which options name them."""
    generated = Path("cacert.pem")
    if not generated.exists() or params.get("ca") or params.get("ca_key"):
        return
    from core.pemfiles import load_certificates  # only on this error path

    try:
        public = load_certificates(generated, "CA certificate")[0].public_key()
    except AlbatrossError:
        return  # no hint rather than a wrong one; the missing file is reported as before
    keys = [k.name for k in sorted(Path(".").glob("*.key")) if _matches(k, public)]
    if keys:
        kind = "CA certificate" if missing.suffix == ".pem" else "CA key"
        raise CliFailed(
            f"{kind} {missing} does not exist; `alba generate` wrote cacert.pem and"
            f" {keys[0]} here: pass --ca cacert.pem --ca-key {keys[0]}",
            log="term",
        )


def _matches(path: Path, public: object) -> bool:
    """Whether the key file *path* reads and is the private half of *public*."""
    from core.keys import key_matches
    from core.pemfiles import load_key

    try:
        return key_matches(load_key(path), public)
    except AlbatrossError:
        return False  # not a key of ours: another file that happens to end in .key


def run_command(
    ctx: click.Context,
    params: dict[str, Any],
    command: Command,
    name: Name,
    data: DataSource | None = None,
    dest: Destination | None = None,
    label: str = "downloaded",
) -> None:
    """Run *command* at the chosen destination; errors propagate to the CLI's main."""
    dest = dest if dest is not None else resolve_destination(params)
    settings = make_settings(ctx, params, label)
    try:
        trio.run(execute, command, name, dest, settings, data)
    finally:
        if settings.progress is not None:
            settings.progress.finish()
