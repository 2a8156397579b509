"""``alba tree``: the delegation tree under the caller's path, with usage and headroom.

Three requests albatross already answers (policy info, unikernel info, block
info), one connection each as albatross-client makes them, so it works against
the OCaml endpoint as well as ours; :mod:`client.tree` puts the replies together.
Over a remote, the tree starts at the caller's delegation (the path of its
``--ca`` chain; vmmd ignores the leaf's label for policy info, wire.md §12, so
any label will do); on a local socket at ``--path``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import click
import trio

from client.cmd_console import PathType
from client.destination import Csr, Destination, Remote, parse_host_port
from client.errors import CliFailed, CommunicationFailed
from client.expiry import Expiry, delegation_paths
from client.options import destination_options, make_settings, resolve_destination
from client.output import json_line, record
from client.remotes import load_remotes
from client.run import execute
from client.session import Printer, Settings
from client.tree import build_tree, render_text, tree_json
from core.errors import AlbatrossError
from core.pemfiles import load_certificates
from core.wire import (
    BlockDeviceEntry,
    BlockDeviceList,
    BlockInfo,
    Command,
    Failure,
    Message,
    Name,
    Policy,
    PolicyInfo,
    PolicyList,
    UnikernelInfo,
    UnikernelInfoList,
    UnikernelInfoRecord,
)

__all__ = ["commands", "tree"]

#: The label of the remote policy-info leaf (vmmd ignores it; it must be a valid label).
POLICY_LEAF_LABEL = "tree"


@dataclass
class _Collector(Printer):
    """A printer that keeps the success replies instead of printing them."""

    replies: list[Message] = field(default_factory=list)

    def message(self, msg: Message) -> None:
        if isinstance(msg.payload, Failure):
            super().message(msg)
        else:
            self.replies.append(msg)


@dataclass(frozen=True)
class Replies:
    policies: tuple[tuple[Name, Policy], ...]
    unikernels: tuple[tuple[Name, UnikernelInfoRecord], ...]
    blocks: tuple[BlockDeviceEntry, ...]


async def _ask(command: Command, name: Name, dest: Destination, settings: Settings) -> object:
    collector = _Collector(settings.printer.prog, settings.printer.out, settings.printer.err)
    await execute(command, name, dest, replace(settings, printer=collector))
    if len(collector.replies) != 1:
        raise CommunicationFailed(f"expected one reply to {type(command).__name__}")
    return collector.replies[0].payload


async def fetch(dest: Destination, path: tuple[str, ...], settings: Settings) -> Replies:
    """The three replies, asked at *path* (local) or at the caller's own path (remote)."""
    if isinstance(dest, Remote):
        policy_name, name = Name((POLICY_LEAF_LABEL,), None), Name()
    else:
        policy_name = name = Name(path, None)
    policies = await _ask(PolicyInfo(), policy_name, dest, settings)
    unikernels = await _ask(UnikernelInfo(), name, dest, settings)
    blocks = await _ask(BlockInfo(), name, dest, settings)
    if not (
        isinstance(policies, PolicyList)
        and isinstance(unikernels, UnikernelInfoList)
        and isinstance(blocks, BlockDeviceList)
    ):
        raise CommunicationFailed("unexpected reply type to an info request")
    return Replies(policies.policies, unikernels.unikernels, blocks.devices)


def _chain_paths(files: list[Path]) -> dict[tuple[str, ...], Expiry]:
    out: dict[tuple[str, ...], Expiry] = {}
    for file in files:
        out.update(delegation_paths(load_certificates(file, "certificate chain")))
    return out


def _same_host(dest: Remote) -> dict[tuple[str, ...], Expiry]:
    """What the named remotes of the same host and port tell (those that read)."""
    try:
        remotes = load_remotes()
    except AlbatrossError:
        return {}
    out: dict[tuple[str, ...], Expiry] = {}
    for entry in remotes.values():
        try:
            if parse_host_port(entry.destination) == (dest.host, dest.port):
                out.update(_chain_paths([Path(entry.ca)]))
        except AlbatrossError:
            continue
    return out


@click.command("tree")
@click.option(
    "-p",
    "--path",
    "path",
    type=PathType(),
    default=":",
    help="Local socket only: the path to start at (default: the root).",
)
@click.option(
    "--chain",
    "chains",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A delegation certificate or chain (PEM) whose expiry to show (repeat).",
)
@destination_options
@click.pass_context
def tree(ctx: click.Context, /, path: Name, chains: tuple[Path, ...], **params: Any) -> None:
    """Show the delegation tree under your path: policies, usage, headroom.

    Each node shows its policy, what its whole subtree uses of it, what is left,
    its unikernels and block devices, and its children.  Markers: !FULL(...) a
    limit reached, !OVER(...) usage beyond the policy, !OVERCOMMITTED(...) the
    children's policies add up to more than this one, !EXPIRES the delegation's
    certificate (seen locally: your --ca chain, the named remotes of the same
    host, --chain) ends within 14 days.
    """
    dest = resolve_destination(params)
    if isinstance(dest, Csr):
        raise CliFailed("tree asks the host three questions: use a socket or a remote", log="term")
    settings = make_settings(ctx, params)
    files = list(chains)
    base = path.path
    seen: dict[tuple[str, ...], Expiry] = {}
    if isinstance(dest, Remote):
        if base:
            raise CliFailed(
                "--path works with a local socket; over a remote the tree starts at the path "
                "of your delegation",
                log="term",
            )
        files.insert(0, dest.ca)
        seen = _same_host(dest)
        try:
            own = delegation_paths(load_certificates(dest.ca, "CA certificate"))
        except AlbatrossError:
            own = {}  # execute reports the unreadable file with albatross's text
        base = max(own, key=len) if own else ()
    replies = trio.run(fetch, dest, base, settings)
    try:
        expiries = {**seen, **_chain_paths(files)}
    except AlbatrossError as exc:
        raise CliFailed(exc.message, log="term") from None
    root = build_tree(
        base,
        replies.policies,
        replies.unikernels,
        replies.blocks,
        settings.clock(),
        expiries,
    )
    printer = settings.printer  # -q, --verbosity and --format as every command has them
    printer.out(json_line(record("tree", **tree_json(root))) if printer.json else render_text(root))


commands = [tree]
