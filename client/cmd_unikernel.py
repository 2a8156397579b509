"""Unikernel commands: info, get, create, restart, destroy."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from client.commands import (
    UnikernelOptions,
    build_arguments,
    build_create,
    default_level,
    parse_block,
    parse_name,
    parse_net,
)
from client.destination import Local
from client.errors import CliFailed
from client.options import destination_options, resolve_destination, run_command
from core.errors import AlbatrossError
from core.wire import (
    BlockDevice,
    Name,
    NetIf,
    Typ,
    UnikernelDestroy,
    UnikernelGet,
    UnikernelInfo,
)

__all__ = ["NAME", "OPT_NAME", "commands", "term"]

F = TypeVar("F", bound=Callable[..., Any])


def term(exc: AlbatrossError) -> CliFailed:
    """A command-line (cmdliner term) error: printed on stderr, exit 124."""
    return CliFailed(exc.message, log="term")


class NameType(click.ParamType[Any]):
    name = "NAME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Name:
        if isinstance(value, Name):
            return value
        try:
            return parse_name(str(value))
        except AlbatrossError as exc:
            self.fail(exc.message, param, ctx)


class _SpecType(click.ParamType[Any]):
    def __init__(self, name: str, parse: Callable[[str], Any]) -> None:
        self.name = name
        self._parse = parse

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return self._parse(value)
        except AlbatrossError as exc:
            self.fail(exc.message, param, ctx)


NAME = NameType()
BLOCK = _SpecType("name[:device][@sector]", parse_block)
NET = _SpecType("[name:]bridge[@mac]", parse_net)
OPT_NAME = click.option("-n", "--name", "name", type=NAME, default=":", help="Name of unikernel.")
LEVEL = click.option(
    "--compression-level",
    "level",
    type=click.IntRange(0, 9),
    help="0-9; default 0 for local sockets, 9 for remote and CSR.",
)


def unikernel_arguments(func: F) -> F:
    """The argument flags of create and restart (albatross names and defaults)."""
    opts = [
        click.option("--startup", type=int, help="Startup priority (lower first, default 50)."),
        click.option(
            "--no-add-name", is_flag=True, help="Do not add --name=NAME to the arguments."
        ),
        click.option("--cpu", "cpuids", type=int, multiple=True, help="CPU id (repeat) [0]."),
        click.option(
            "--mem", "memory", type=int, default=32, show_default=True, help="Memory in MB."
        ),
        click.option("--arg", "argv", multiple=True, help="Boot argument (repeat)."),
        click.option("--block", "blocks", type=BLOCK, multiple=True, help="Block device (repeat)."),
        click.option("--net", "nets", type=NET, multiple=True, help="Network device (repeat)."),
        click.option(
            "--restart-on-fail",
            "--restart",
            "restart_on_fail",
            is_flag=True,
            help="Restart the unikernel when it exits.",
        ),
        click.option(
            "--exit-code",
            "exit_codes",
            type=int,
            multiple=True,
            help="Exit codes to restart on (repeat).",
        ),
        click.option(
            "--cpus",
            "numcpus",
            type=int,
            default=1,
            show_default=True,
            help="Number of vCPUs (bhyve).",
        ),
        click.option("--linux-boot", help="Boot partition (bhyve, Linux)."),
    ]
    for opt in reversed(opts):
        func = opt(func)
    return func


def _unikernel_options(p: dict[str, Any]) -> UnikernelOptions:
    blocks: tuple[BlockDevice, ...] = p["blocks"]
    nets: tuple[NetIf, ...] = p["nets"]
    return UnikernelOptions(
        cpuids=p["cpuids"] or (0,),
        memory=p["memory"],
        argv=p["argv"],
        blocks=blocks,
        nets=nets,
        startup=p["startup"],
        no_add_name=p["no_add_name"],
        restart_on_fail=p["restart_on_fail"],
        exit_codes=p["exit_codes"],
        numcpus=p["numcpus"],
        linux_boot=p["linux_boot"],
    )


@click.command("info")
@OPT_NAME
@destination_options
@click.pass_context
def info(ctx: click.Context, /, name: Name, **params: Any) -> None:
    """Show information about unikernels."""
    run_command(ctx, params, UnikernelInfo(), name)


@click.command("get")
@click.argument("name", type=NAME)
@LEVEL
@destination_options
@click.pass_context
def get(ctx: click.Context, /, name: Name, level: int | None, **params: Any) -> None:
    """Download the image of a running unikernel to $TMPDIR."""
    dest = resolve_destination(params)
    command = UnikernelGet(default_level(level, isinstance(dest, Local)))
    run_command(ctx, params, command, name, dest=dest)


@click.command("destroy")
@click.argument("name", type=NAME)
@destination_options
@click.pass_context
def destroy(ctx: click.Context, /, name: Name, **params: Any) -> None:
    """Destroy a unikernel."""
    run_command(ctx, params, UnikernelDestroy(), name)


#: Largest image file we read; a unikernel this big cannot travel in a certificate anyway.
MAX_IMAGE_FILE = 64 * 1024 * 1024


def _read_image(path: Path) -> bytes:
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_IMAGE_FILE + 1)
    except FileNotFoundError:
        message = f"UNIKERNEL-IMAGE argument: no {path} file or directory"
        raise CliFailed(message, log="term") from None
    except OSError as exc:
        raise CliFailed(f"{path}: {exc.strerror or exc}", log="term") from None
    if len(data) > MAX_IMAGE_FILE:
        raise CliFailed(f"{path} is larger than {MAX_IMAGE_FILE >> 20} MiB", log="term")
    return data


@click.command("create")
@click.argument("name", type=NAME)
@click.argument("image", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--typ",
    type=click.Choice(["solo5", "bhyve"]),
    default="solo5",
    show_default=True,
    help="Type of the unikernel image.",
)
@click.option("-f", "--force", is_flag=True, help="Replace a unikernel of the same name.")
@LEVEL
@unikernel_arguments
@destination_options
@click.pass_context
def create(
    ctx: click.Context,
    /,
    name: Name,
    image: Path,
    typ: str,
    force: bool,
    level: int | None,
    **params: Any,
) -> None:
    """Create a unikernel (the image travels inside the request certificate)."""
    dest = resolve_destination(params)
    kind = Typ.SOLO5 if typ == "solo5" else Typ.BHYVE
    data = _read_image(image) if kind is Typ.SOLO5 else b""
    try:
        level = default_level(level, isinstance(dest, Local))
        command = build_create(_unikernel_options(params), data, level, force, kind)
    except AlbatrossError as exc:
        raise term(exc) from None
    run_command(ctx, params, command, name, dest=dest)


@click.command("restart")
@click.argument("name", type=NAME)
@click.option("--replace-arguments", is_flag=True, help="Replace all arguments by these flags.")
@unikernel_arguments
@destination_options
@click.pass_context
def restart(ctx: click.Context, /, name: Name, replace_arguments: bool, **params: Any) -> None:
    """Restart a unikernel, keeping or replacing its arguments."""
    try:
        command = build_arguments(_unikernel_options(params) if replace_arguments else None)
    except AlbatrossError as exc:
        raise term(exc) from None
    run_command(ctx, params, command, name)


commands = [info, get, create, restart, destroy]
