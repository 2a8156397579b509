"""``update NAME``: replace a unikernel by the latest build from builder-web."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any

import click
import trio

from client import builderweb
from client.cmd_unikernel import LEVEL, NAME
from client.commands import default_level
from client.destination import Csr, Destination, Local, Remote
from client.errors import ClientError, CliFailed, CommunicationFailed, HttpFailed, InternalError
from client.manifest import check_devices
from client.options import destination_options, make_settings, resolve_destination
from client.output import format_message
from client.run import execute
from client.session import Printer, Settings
from core.errors import AlbatrossError
from core.pemfiles import load_certificates
from core.wire import (
    BlockDevice,
    Message,
    Name,
    NetIf,
    Typ,
    UnikernelConfig,
    UnikernelCreate,
    UnikernelInfo,
    UnikernelInfoList,
)
from core.wire.compress import compress
from tlsendpoint.security.rules.pins import build_refusal, ca_pins

__all__ = ["update"]


@dataclass
class _Capture(Printer):
    messages: list[Message] = field(default_factory=list)

    def message(self, msg: Message) -> None:
        self.messages.append(msg)


async def _info(name: Name, dest: Destination, settings: Settings) -> Message:
    capture = _Capture(settings.printer.prog, settings.printer.out, settings.printer.err)
    quiet = replace(settings, printer=capture, progress=None)
    try:
        await execute(UnikernelInfo(), name, dest, quiet)
    except ClientError as exc:
        if not capture.messages:
            raise
        raise CommunicationFailed(
            "unexpected reply: " + format_message(capture.messages[0]).strip()
        ) from exc
    return capture.messages[0]


async def _update(
    name: Name, dest: Destination, settings: Settings, host: str, dryrun: bool, level: int
) -> None:
    printer = settings.printer
    reply = await _info(name, dest, settings)
    payload = reply.payload
    if (
        not isinstance(payload, UnikernelInfoList)
        or len(payload.unikernels) != 1
        or payload.unikernels[0][1].typ is not Typ.SOLO5
    ):
        raise CommunicationFailed("unexpected reply: " + format_message(reply).strip())
    info = payload.unikernels[0][1]
    try:
        build = await trio.to_thread.run_sync(builderweb.find_updates, host, info.digest.hex())
    except HttpFailed as exc:
        raise HttpFailed(f"error in HTTP interaction: {exc.message}") from None
    if build.old == build.new:
        printer.app("already up to date")
        return
    printer.app(f"compare at {host}/compare/{build.old}/{build.new}")
    if dryrun:
        return
    try:
        image = await trio.to_thread.run_sync(builderweb.fetch_binary, host, build)
    except HttpFailed as exc:
        raise HttpFailed(f"error in HTTP interaction: {exc.message}") from None
    _check_pins(dest, build.job, image)
    nets = frozenset(NetIf(n.name, n.bridge, n.mac) for n in info.bridges)
    blocks = frozenset(BlockDevice(b.name, b.device, b.sector_size) for b in info.blocks)
    try:
        check_devices(image, [n.name for n in nets], [b.name for b in blocks])
    except AlbatrossError as exc:
        raise InternalError(f"manifest failed: {exc.message}") from None
    config = UnikernelConfig(
        image=compress(image, level) if level > 0 else image,
        memory=info.memory,
        cpuids=info.cpuids,
        compressed=level > 0,
        typ=Typ.SOLO5,
        fail_behaviour=info.fail_behaviour,
        startup=info.startup,
        add_name=True,
        blocks=blocks,
        bridges=nets,
        argv=info.argv,
        numcpus=info.numcpus,
        linux_boot_partition=info.linux_boot_partition,
    )
    await execute(UnikernelCreate(config, force=True), name, dest, settings)


def _check_pins(dest: Destination, job: str, image: bytes) -> None:
    """Our chain's reproducible-build pins: the job (only we can check it) and the digest."""
    if not isinstance(dest, Remote):
        return
    cas = load_certificates(dest.ca, "CA file")  # the delegated CA first, then its issuers
    refused = build_refusal(ca_pins(cas[::-1]), job, hashlib.sha256(image).digest())
    if refused is not None:
        raise CliFailed(f"not deploying the latest build: {refused}")


@click.command("update")
@click.argument("name", type=NAME)
@click.option(
    "--http-host",
    default="https://builds.robur.coop",
    show_default=True,
    help="builder-web server with the builds.",
)
@click.option("--dryrun", "--dry-run", "dryrun", is_flag=True, help="Only say what would change.")
@LEVEL
@destination_options
@click.pass_context
def update(
    ctx: click.Context,
    /,
    name: Name,
    http_host: str,
    dryrun: bool,
    level: int | None,
    **params: Any,
) -> None:
    """Update a unikernel to the latest build of its job on builder-web."""
    try:
        host = builderweb.check_host(http_host)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--http-host'") from None
    dest = resolve_destination(params)
    if isinstance(dest, Csr):
        raise CliFailed("update with CSR not supported")
    lvl = default_level(level, isinstance(dest, Local))
    trio.run(_update, name, dest, make_settings(ctx, params), host, dryrun, lvl)
