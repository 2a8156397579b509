"""``albatross-audit``: verify the endpoint's audit log, explain a decision offline.

Data goes to stdout, diagnostics to stderr; exit 0 when the log verifies (or
the request would be allowed), 1 when it does not, 2 for usage errors
(:func:`audit_exit_code`, also for ``albatross-explain``).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, ClassVar

import click
import trio

from ca.invocation import command_clock
from ca.store import load_bundle
from cmdline import Group, option
from core.errors import AlbatrossError, exit_code
from core.jsonout import json_line, record
from core.pemfiles import load_certificates, load_key
from core.wire import (
    BlockAdd,
    BlockInfo,
    BlockRemove,
    Command,
    Name,
    NetIf,
    PolicyInfo,
    UnikernelConfig,
    UnikernelCreate,
    UnikernelDestroy,
    UnikernelInfo,
    UnikernelRestart,
)
from durable.database import StoreError
from tlsendpoint.security.daemonquery import daemon_query, host_usage
from tlsendpoint.security.explain import Verdict, explain_bundle, explain_chain, explain_signer
from tlsendpoint.security.rules.auditformat import MAX_LINE, AuditError
from tlsendpoint.security.rules.rollback import Seen
from tlsendpoint.security.setup import DEFAULT_STATE_DIR
from tlsendpoint.security.state.auditlog import verify
from tlsendpoint.security.state.crldir import CrlStore
from tlsendpoint.security.state.legacy import (
    OLD_REPLAY_FILE,
    OLD_ROLLBACK_FILE,
    read_journal,
    read_rollback,
)
from tlsendpoint.security.state.records import STORE_FILE, SecurityStore

__all__ = [
    "audit_exit_code",
    "check_state_command",
    "explain_command",
    "main",
    "verify_command",
    "who_command",
]

_file = click.Path(exists=True, dir_okay=False, path_type=Path)
#: Deadline for each of explain's three vmmd queries.
VMMD_TIMEOUT = 10.0
#: Allowed commands without outcome that verify lists one by one.
MAX_NOTES = 20


_SQLITE_MAGIC = b"SQLite format 3\x00"


def audit_exit_code(exc: AlbatrossError) -> int:
    """albatross-audit's (and albatross-explain's) exit code for *exc*.

    A log that does not verify is the tool's "no", 1 (the code :class:`AuditError`
    carries); any other error of ours means the input is bad, 2.
    """
    return exit_code(exc, {AuditError: AuditError.exit_code, AlbatrossError: 2})


@click.group(cls=Group, help="Tools for the endpoint's security records.")
def main() -> None:
    pass


@main.command("verify")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--head",
    metavar="SHA256",
    default=None,
    help="The head hash you recorded earlier; detects lines cut from the end.",
)
def verify_command(file: Path, head: str | None) -> None:
    """Check that FILE's hash chain is intact; name the first bad line.

    Exit 0 when it is: incomplete lines a crash left (recovered or not) and allowed
    commands without an outcome are listed on stdout ("crash:", "note:").  Exit 1
    for tampering (an edited, removed, inserted or reordered line), named on stderr.
    """
    try:
        result = verify(file, head)
    except AuditError as exc:
        click.echo(f"{file}: {exc.message}", err=True)
        raise SystemExit(audit_exit_code(exc)) from None
    click.echo(f"{file}: ok, {result.lines} lines, head {result.head}")
    for crash in result.crashes:
        click.echo(f"{file}: crash: {crash.text()}")
    opened = result.open_decisions
    for decision in opened[:MAX_NOTES]:
        click.echo(f"{file}: note: {decision.text()}")
    if len(opened) > MAX_NOTES:
        click.echo(
            f"{file}: note: and {len(opened) - MAX_NOTES} more allowed commands without outcome"
        )


@main.command("who")
@click.argument("name")
@click.option(
    "--log",
    "log_file",
    type=_file,
    required=True,
    help="The endpoint's audit log (its --audit-log).",
)
@click.option("--head", metavar="SHA256", default=None, help="As for verify: the head you kept.")
@click.option(
    "--json", "json_output", is_flag=True, help="Print one JSON record (README: JSON output)."
)
def who_command(name: str, log_file: Path, head: str | None, json_output: bool) -> None:
    """Who created, restarted, updated or destroyed the unikernel or block device NAME.

    NAME is the full name (``alice:bob:web``).  The audit log must verify first
    (as ``verify`` checks it); if it does not, nothing is answered and the first
    bad line is named (exit 1).  Each event: its time, what was done, the chain
    that asked (subjects from the top down, and per certificate its serial and
    SHA-256 fingerprint), the decision and the daemon's answer.
    """
    from client.provenance import history  # only this command needs it

    try:
        wanted = Name.parse(name)
    except AlbatrossError as exc:
        raise click.BadParameter(exc.message, param_hint="NAME") from None
    try:
        with log_file.open("rb") as handle:
            found = history(iter(lambda: handle.readline(MAX_LINE + 2), b""), wanted, head)
    except OSError as exc:
        click.echo(f"{log_file}: cannot read the audit log: {exc.strerror}", err=True)
        raise SystemExit(1) from None
    except AuditError as exc:
        click.echo(f"{log_file}: does not verify, no answer given: {exc.message}", err=True)
        raise SystemExit(audit_exit_code(exc)) from None
    if json_output:
        events = [e.as_json() for e in found.events]
        line = record("who", name=str(wanted), log=str(log_file), head=found.verified.head,
                      events=events)  # fmt: skip
        click.echo(json_line(line), nl=False)
        return
    if not found.events:
        click.echo(f"{wanted}: no create, restart, update or destroy in {log_file} (verified)")
        return
    for event in found.events:
        click.echo(f"{event.time}  {event.action} {wanted}  {event.result}")
        click.echo(f"  command: {event.command}")
        click.echo(f"  chain: {event.cn_path}  (peer {event.peer})")
        for cert in event.chain:
            serial = cert.get("serial", "not recorded")
            click.echo(
                f"    {cert.get('subject', '?')}  serial {serial}  sha256 {cert.get('sha256', '?')}"
            )


@main.command("check-state")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_STATE_DIR,
    show_default=True,
    envvar="ALBATROSS_TLS_STATE_DIR",
    help="The endpoint's --state-dir.  Also $ALBATROSS_TLS_STATE_DIR.",
)
def check_state_command(state_dir: Path) -> None:
    """Check the endpoint's security state: SQLite's integrity check and every record.

    Exit 0 if intact, 1 if not (each problem on stderr, then what to do).  Run it as
    the endpoint's user; it changes nothing.
    """
    path = state_dir / STORE_FILE
    problems: list[str] = []
    store = SecurityStore(path)
    try:
        store.database.open_existing()
        problems = store.problems()
        counts = None if problems else store.counts()
    except StoreError as exc:
        problems, counts = [exc.message], None
    finally:
        store.close()
    for name, reader in ((OLD_REPLAY_FILE, read_journal), (OLD_ROLLBACK_FILE, read_rollback)):
        old = state_dir / name
        if old.exists():
            try:
                reader(old)
                click.echo(f"{old}: not migrated yet (the endpoint does it at its next start)")
            except StoreError as exc:
                problems.append(exc.message)
    if problems or counts is None:
        for problem in problems:
            click.echo(f"{path}: {problem}", err=True)
        click.echo(
            "what to do: stop every endpoint process, keep a copy of the state directory, then "
            "restore the file from a backup or move it aside (README: Security model, "
            "damaged state)",
            err=True,
        )
        raise SystemExit(1)
    click.echo(f"{path}: ok, {counts.replay} replay records, {counts.rollback} delegation paths")


def _rollback_table(file: Path) -> dict[str, Seen]:
    """The anti-rollback table of a store file, or of an old rollback.json."""
    try:
        with file.open("rb") as handle:
            head = handle.read(len(_SQLITE_MAGIC))
    except OSError as exc:
        raise click.UsageError(f"cannot read {file}: {exc.strerror}") from None
    if head != _SQLITE_MAGIC:
        return read_rollback(file)
    store = SecurityStore(file)
    try:
        store.database.open_existing()
        return store.all_seen()
    finally:
        store.close()


def now() -> dt.datetime:
    """The time explain judges at (:func:`command_clock`)."""
    return command_clock()()


class _CommandChoice(click.Choice[str]):
    """alba's command names; the old ``block-info``/``block-add``/``block-remove`` still work."""

    OLD: ClassVar[dict[str, str]] = {
        "block-info": "block",
        "block-add": "create-block",
        "block-remove": "destroy-block",
    }

    def __init__(self) -> None:
        names = ["info", "create", "destroy", "restart", "policy"]
        super().__init__([*names, "block", "create-block", "destroy-block"])

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        return super().convert(self.OLD.get(value, value), param, ctx)


def _command(what: str, memory: int, cpuids: tuple[int, ...], bridges: tuple[str, ...],
             size: int) -> Command:  # fmt: skip
    if what == "create":
        nets = frozenset(NetIf(b) for b in bridges)
        config = UnikernelConfig(b"", memory, frozenset(cpuids or (0,)), bridges=nets)
        return UnikernelCreate(config)
    table: dict[str, Command] = {
        "info": UnikernelInfo(),
        "destroy": UnikernelDestroy(),
        "restart": UnikernelRestart(None),
        "policy": PolicyInfo(),
        "block": BlockInfo(),
        "create-block": BlockAdd(size),
        "destroy-block": BlockRemove(),
    }
    return table[what]


@main.command("explain")
@click.argument("chain_file", required=False, type=_file)
@click.option("--bundle", type=_file, help="Explain a command this delegation bundle would sign.")
@click.option("--remote", help="Explain a command this `alba remote` would sign.")
@click.option(
    "--name", "cn", default=".", show_default=True, help="With --bundle/--remote: leaf CN."
)
@click.option(
    "--command",
    "what",
    type=_CommandChoice(),
    default="info",
    show_default=True,
    help="With --bundle/--remote: the command.",
)
@option("--mem", "memory", aliases=("--memory",), type=int, default=32, show_default=True,
        help="create: memory in MB.")  # fmt: skip
@option("--cpu", "cpuids", aliases=("--cpuid",), type=int, multiple=True,
        help="create: CPU id (repeatable).")  # fmt: skip
@click.option("--bridge", "bridges", multiple=True, help="create: bridge (repeatable).")
@click.option("--size", type=int, default=1, show_default=True, help="create-block: MB.")
@click.option(
    "--ca", "ca_file", type=_file, help="The endpoint's CA certificate (checks signatures)."
)
@click.option(
    "--crl-dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="The endpoint's CRL directory (needs --ca).",
)
@click.option(
    "--rollback-state",
    type=_file,
    help="The endpoint's state file (security.db, or an old rollback.json).",
)
@click.option(
    "--state-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="The endpoint's --state-dir (reads its anti-rollback table; as --rollback-state).",
)
@click.option(
    "--vmmd",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Ask this vmmd socket for the host's policy and usage (online; e.g. "
    "/run/albatross/util/vmmd.sock).",
)
def explain_command(
    chain_file: Path | None,
    bundle: Path | None,
    remote: str | None,
    cn: str,
    what: str,
    memory: int,
    cpuids: tuple[int, ...],
    bridges: tuple[str, ...],
    size: int,
    ca_file: Path | None,
    crl_dir: Path | None,
    rollback_state: Path | None,
    state_dir: Path | None,
    vmmd: Path | None,
) -> None:
    """Say whether the endpoint would allow CHAIN_FILE's request (leaf first), and why not.

    Exit 0 if allowed, 1 if refused, 2 for bad input.
    """
    try:
        anchor = load_certificates(ca_file, "CA file")[0] if ca_file else None
        if crl_dir is not None and anchor is None:
            raise click.UsageError("--crl-dir needs --ca")
        crls = (
            CrlStore(crl_dir, anchor).revocations
            if crl_dir is not None and anchor is not None
            else None
        )
        if rollback_state is None and state_dir is not None:
            candidates = [state_dir / STORE_FILE, state_dir / OLD_ROLLBACK_FILE]
            rollback_state = next((c for c in candidates if c.exists()), None)
        guard = _rollback_table(rollback_state) if rollback_state else None
        root_policy, usage = None, None
        if vmmd is not None:
            query = daemon_query(vmmd, lambda: 0, timeout=VMMD_TIMEOUT)
            root_policy, usage = trio.run(host_usage, query)
        verdict: Verdict
        command = _command(what, memory, cpuids, bridges, size)
        if bundle is not None:
            verdict = explain_bundle(
                load_bundle(bundle), cn, command, now(),
                crls=crls, rollback=guard, root_policy=root_policy, usage=usage,
            )  # fmt: skip
        elif remote is not None:
            from client.remotes import load_remotes  # only this option needs the client

            entry = load_remotes().get(remote)
            if entry is None:
                raise click.UsageError(f"no remote named {remote!r}: see `alba remote list`")
            verdict = explain_signer(
                load_certificates(Path(entry.ca), "remote CA file"),
                load_key(Path(entry.ca_key), "remote CA key"),
                cn, command, now(),
                anchors=load_certificates(Path(entry.server_ca), "remote server CA"),
                crls=crls, rollback=guard, root_policy=root_policy, usage=usage,
            )  # fmt: skip
        elif chain_file is not None:
            chain = load_certificates(chain_file, "chain file")
            verdict = explain_chain(
                chain, now(), anchor=anchor,
                crls=crls, rollback=guard, root_policy=root_policy, usage=usage,
            )  # fmt: skip
        else:
            raise click.UsageError("give a CHAIN_FILE, --bundle or --remote")
    except AlbatrossError as exc:
        click.echo(f"error: {exc.message}", err=True)
        raise SystemExit(audit_exit_code(exc)) from None
    click.echo(verdict.text())
    raise SystemExit(0 if verdict.allowed else 1)
