# The endpoint's security options and their start-up (issue 6).
#
# On by default: an endpoint started without these options still enforces the
# quota, name, anti-rollback and replay rules, with its state under
# DEFAULT_STATE_DIR; revocation needs --crl-dir and the audit log --audit-log.
# --no-security gives albatross's behaviour (for comparisons and benchmarks).
# A state that cannot be opened, written or trusted stops the start (exit 125, like
# albatross's other start-up errors) with what the operator can do, rather than running
# without it: the endpoint records every state-changing leaf before running it.
#
# The only security module that imports click (the endpoint's CLI, tlsendpoint/cli.py,
# uses it); it builds process.Security and may import the state's errors for advice.
from __future__ import annotations

#
# The options are built when the CLI starts, even for --version: what open_security needs
# (the stores, SQLite, cryptography) is imported when it runs (issue 13).
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from core.errors import AlbatrossError
from tlsendpoint.errors import SetupError

if TYPE_CHECKING:
    from durable.database import StoreError
    from tlsendpoint.security.process import Security

__all__ = ["DEFAULT_STATE_DIR", "SecuritySetupError", "open_security", "security_options"]

DEFAULT_STATE_DIR = Path("/var/lib/albatross-tls")

log = logging.getLogger("albatross.security")


class SecuritySetupError(SetupError):
    """The security state, CRL directory or audit log cannot be opened (exit 125)."""


def security_options(func: Any) -> Any:
    """The click options of :func:`open_security` (``state_dir``, ``crl_dir``, ...)."""
    options = [
        click.option(
            "--state-dir",
            type=click.Path(file_okay=False, path_type=Path),
            default=DEFAULT_STATE_DIR,
            show_default=True,
            envvar="ALBATROSS_TLS_STATE_DIR",
            help="Security state: replay records and anti-rollback table (security.db, "
            "SQLite); created if missing.  Also $ALBATROSS_TLS_STATE_DIR.",
        ),
        click.option(
            "--crl-dir",
            type=click.Path(exists=True, file_okay=False, path_type=Path),
            default=None,
            help="Directory of CRLs (*.crl, *.pem, *.der) to honour; any other entry not "
            "starting with '.' stops the start.  Re-read when it changes and on SIGHUP; "
            "delegates' handed-in CRLs are stored here.  [default: none]",
        ),
        click.option(
            "--audit-log",
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            help="Hash-chained JSON audit log (albatross-audit verify): a command is recorded "
            "before it runs, or refused when that fails.  [default: none]",
        ),
        click.option(
            "--audit-fsync",
            is_flag=True,
            help="fsync every audit record (an allow before its command is forwarded).",
        ),
        click.option(
            "--no-security",
            is_flag=True,
            help="albatross's behaviour: none of the security model's rules (no quotas over "
            "the whole subtree, no anti-rollback, revocation, replay protection or audit).",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def open_security(
    ca_file: Path,
    *,
    state_dir: Path,
    crl_dir: Path | None,
    audit_log: Path | None,
    audit_fsync: bool,
    no_security: bool,
    shared: bool = False,
) -> Security | None:
    """The endpoint's :class:`Security`, None with ``--no-security``.

    *shared*: several processes may serve at once (--workers, inetd, socket activation).
    """
    if no_security:
        if crl_dir is not None or audit_log is not None:
            raise SecuritySetupError(
                "--no-security cannot be combined with --crl-dir or --audit-log"
            )
        return None
    from core.pemfiles import load_certificates
    from durable.database import StoreError
    from tlsendpoint.security.process import Security, SecurityOptions
    from tlsendpoint.security.state.faults import FAULTS_ENV, Faults

    try:
        anchor = load_certificates(ca_file, "CA certificate")[0]
    except AlbatrossError as exc:  # core.pemfiles names the file and the cause
        raise SecuritySetupError(exc.message) from None
    try:
        faults = Faults.from_environ(os.environ)
    except ValueError as exc:
        raise SecuritySetupError(str(exc)) from None
    if faults.kill_at:
        log.warning("%s is set: this process kills itself at %s (tests only)",
                    FAULTS_ENV, ", ".join(sorted(faults.kill_at)))  # fmt: skip
    options = SecurityOptions(state_dir, anchor, crl_dir, audit_log, audit_fsync, shared, faults)
    try:
        return Security(options)
    except StoreError as exc:
        raise SecuritySetupError(
            f"cannot open the security state in {state_dir} (option --state-dir): "
            f"{exc.message}{_advice(exc, state_dir)}"
        ) from None
    except OSError as exc:
        raise SecuritySetupError(
            f"cannot open the security state in {state_dir}: {exc.strerror or exc} "
            "(option --state-dir)"
        ) from None
    except AlbatrossError as exc:
        raise SecuritySetupError(exc.message) from None


def _advice(exc: StoreError, state_dir: Path) -> str:
    """What the operator does about a store that stops the start (README, security model)."""
    from durable.database import StoreBusy, StoreDamaged, StoreUnwritable
    from tlsendpoint.security.state.legacy import OldFileDamaged
    from tlsendpoint.security.state.records import STORE_FILE

    store = state_dir / STORE_FILE
    if isinstance(exc, StoreDamaged) and not isinstance(exc, OldFileDamaged):  # they say it
        return (
            f".  Stop every endpoint process and keep a copy (cp -a {state_dir} "
            f"{state_dir}.damaged); `albatross-audit check-state --state-dir {state_dir}` "
            f"lists the damage.  Then restore {store} from a backup, or move it aside "
            f"(mv {store} {store}.damaged) to start with an empty state: leaves used before "
            "could then run again until they expire, and older delegations be accepted once"
        )
    if isinstance(exc, StoreUnwritable):
        return (
            ".  The endpoint records every state-changing leaf before running it and does "
            f"not start without that: free space or make {state_dir} writable for the "
            "endpoint's user"
        )
    if isinstance(exc, StoreBusy):
        return ".  Another process holds the state locked: try again"
    return ""
