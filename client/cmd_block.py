"""Block device commands: block, create-block, set-block, dump-block, destroy-block."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from client.cmd_unikernel import LEVEL, NAME, term
from client.commands import default_level
from client.destination import Local
from client.errors import ClientError, CliFailed, RemoteCommandFailed
from client.options import destination_options, resolve_destination, run_command
from client.session import FileUpload
from core.errors import AlbatrossError
from core.wire import BlockAdd, BlockDump, BlockInfo, BlockRemove, BlockSet, Name

__all__ = ["commands"]


@click.command("block")
@click.option("--name", "name", type=NAME, default=":", help="Name of block device.")
@destination_options
@click.pass_context
def block(ctx: click.Context, /, name: Name, **params: Any) -> None:
    """Show block devices."""
    run_command(ctx, params, BlockInfo(), name)


def _set_block(
    ctx: click.Context, /, params: dict[str, Any], name: Name, path: Path, level: int | None
) -> None:
    dest = resolve_destination(params)
    level = default_level(level, isinstance(dest, Local))

    upload = FileUpload(path, level)
    run_command(ctx, params, BlockSet(level > 0), name, upload, dest, "uploaded")


@click.command("create-block")
@click.argument("name", type=NAME)
@click.argument("size", type=int, metavar="SIZE-MB")
@LEVEL
@click.option(
    "--data",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Initial content (a second connection uploads it).",
)
@destination_options
@click.pass_context
def create_block(
    ctx: click.Context,
    /,
    name: Name,
    size: int,
    level: int | None,
    data: Path | None,
    **params: Any,
) -> None:
    """Create a block device of SIZE-MB megabytes, optionally with content."""
    if data is not None and data.stat().st_size > size << 20:
        raise CliFailed("data exceeds size", log="term")
    failure: ClientError | None = None
    try:
        run_command(ctx, params, BlockAdd(size), name)
    except RemoteCommandFailed as exc:
        if data is None:
            raise
        failure = exc  # albatross uploads even if the add failed
    if data is not None:
        _set_block(ctx, params, name, data, level)
    if failure is not None:
        raise failure


@click.command("set-block")
@click.argument("name", type=NAME)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@LEVEL
@destination_options
@click.pass_context
def set_block(
    ctx: click.Context, /, name: Name, file: Path, level: int | None, **params: Any
) -> None:
    """Overwrite a block device with the content of FILE (streamed)."""
    try:
        _set_block(ctx, params, name, file, level)
    except ClientError:
        raise
    except AlbatrossError as exc:
        raise term(exc) from None


@click.command("dump-block")
@click.argument("name", type=NAME)
@LEVEL
@destination_options
@click.pass_context
def dump_block(ctx: click.Context, /, name: Name, level: int | None, **params: Any) -> None:
    """Download a block device to $TMPDIR."""
    dest = resolve_destination(params)
    command = BlockDump(default_level(level, isinstance(dest, Local)))
    run_command(ctx, params, command, name, dest=dest)


@click.command("destroy-block")
@click.argument("name", type=NAME)
@destination_options
@click.pass_context
def destroy_block(ctx: click.Context, /, name: Name, **params: Any) -> None:
    """Remove a block device."""
    run_command(ctx, params, BlockRemove(), name)


commands = [block, create_block, set_block, dump_block, destroy_block]
