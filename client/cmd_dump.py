"""``inspect-dump`` and ``extract-dump``: read albatross's state file on the host.

Every layout albatross 2.7.2 reads is accepted (:mod:`core.wire.state`),
so a host upgraded from an older albatross can be inspected before albatrossd
rewrites its file; the output is ``albatross-client``'s (``inspect_dump`` and
``extract_dump`` in ``client/albatross_client.ml``).
"""

from __future__ import annotations

import os
import platform
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from client.cmd_unikernel import NAME
from client.errors import CliFailed
from client.options import make_printer, output_options
from client.output import format_config, json_line, record, rfc3339, to_json
from core.errors import ParseError
from core.wire import Name, UnikernelConfig
from core.wire.compress import decompress
from core.wire.state import State, decode_state

__all__ = ["commands"]

#: Largest state file we read (it holds every unikernel image).
MAX_STATE = 1 << 30

#: Largest image we inflate from the state file.
MAX_IMAGE = 1 << 30


def default_dbdir() -> Path:
    """``/var/lib/albatross`` on Linux, ``/var/db/albatross`` on FreeBSD and macOS."""
    return Path("/var/lib/albatross" if platform.system() == "Linux" else "/var/db/albatross")


def _read_state(file: str | None, dbdir: Path | None) -> State:
    # Vmm_unix.restore: a bare file name is looked up in the dbdir, any other path as given.
    name = file or "state"
    path = (dbdir or default_dbdir()) / name if "/" not in name else Path(name)
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_STATE + 1)
    except FileNotFoundError:
        raise CliFailed("dump file not found") from None
    except OSError as exc:
        raise CliFailed(f"error while reading dump file: {exc.strerror or exc}") from None
    if len(data) > MAX_STATE:
        raise CliFailed(f"error while reading dump file: larger than {MAX_STATE} octets")
    try:
        return decode_state(data)
    except ParseError as exc:
        raise CliFailed(f"couldn't parse dump file: {exc.message}") from None


def _config_json(config: UnikernelConfig) -> object:
    """The configuration as JSON (the image by length and SHA-256: it can be megabytes)."""
    return to_json(config)


def _dump_options(func: Any) -> Any:
    func = click.option(
        "--file", help="State file: a bare file name is read in --dbdir, a path as given [state]."
    )(func)
    func = click.option(
        "--dbdir",
        type=click.Path(file_okay=False, path_type=Path),
        help=f"albatross database directory (default {default_dbdir()}).",
    )(func)
    return output_options(func)


@click.command("inspect-dump")
@_dump_options
@click.pass_context
def inspect_dump(
    ctx: click.Context, /, file: str | None, dbdir: Path | None, **params: Any
) -> None:
    """Show the unikernels and policies in albatross's state file."""
    state = _read_state(file, dbdir)
    printer = make_printer(ctx, params)
    if printer.json:
        unikernels = [{"name": str(u.name), "config": _config_json(u.config)}
                      for u in state.unikernels]  # fmt: skip
        policies = [{"name": str(n), **to_json(p)} for n, p in state.policies]
        printer.out(json_line(record("state", unikernels=unikernels, policies=policies)))
        return
    printer.app(f"parsed {len(state.unikernels)} unikernels:")
    for unikernel in state.unikernels:
        printer.out(format_config(unikernel))
    printer.app(f"parsed {len(state.policies)} policies:")
    for name, policy in state.policies:
        printer.app(f"{name.pretty()}: {policy}")


@click.command("extract-dump")
@click.argument("name", type=NAME)
@_dump_options
@click.pass_context
def extract_dump(
    ctx: click.Context, /, name: Name, file: str | None, dbdir: Path | None, **params: Any
) -> None:
    """Write a unikernel's image from the state file to $TMPDIR and show its configuration."""
    state = _read_state(file, dbdir)
    # Vmm_trie.find: by trie node, so ``hello`` finds a unikernel stored as ``:hello``.
    found = [u for u in state.unikernels if u.name.key == name.key]
    if not found:
        raise CliFailed("unikernel not found")
    config = found[0].config
    printer = make_printer(ctx, params)
    tmpdir = Path(os.environ.get("TMPDIR") or "/tmp")
    path = tmpdir / f"{name}.{rfc3339(datetime.now().astimezone())}"
    try:
        image = decompress(config.image, MAX_IMAGE) if config.compressed else config.image
        path.write_bytes(image)
    except (ParseError, OSError) as exc:
        printer.error(f"failed to write image: {getattr(exc, 'message', exc)}")
    else:
        printer.app(f"dumped image to {path}", file=str(path))
    if printer.json:
        printer.out(json_line(record("unikernel", name=str(name), config=_config_json(config))))
    else:
        printer.out(format_config(found[0], argv=True))


commands = [inspect_dump, extract_dump]
