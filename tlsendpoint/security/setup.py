# The endpoint's security options and their start-up (issue 6).
#
# On by default: an endpoint started without these options still enforces the
# quota, name, anti-rollback and replay rules, with its state under
# DEFAULT_STATE_DIR; revocation needs --crl-dir and the audit log --audit-log.
# --no-security gives albatross's behaviour (for comparisons and benchmarks).
# A state that cannot be opened stops the start (exit 125, like albatross's
# other start-up errors) rather than running without it.
from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from tlsendpoint.errors import AlbatrossError
from tlsendpoint.security.hooks import Security, SecurityOptions

__all__ = ["DEFAULT_STATE_DIR", "SecuritySetupError", "open_security", "security_options"]

DEFAULT_STATE_DIR = Path("/var/lib/albatross-tls")


class SecuritySetupError(AlbatrossError):
    """The security state, CRL directory or audit log cannot be opened."""

    exit_code = 125


def security_options(func: Any) -> Any:
    """The click options of :func:`open_security` (``state_dir``, ``crl_dir``, ...)."""
    options = [
        click.option(
            "--state-dir",
            type=click.Path(file_okay=False, path_type=Path),
            default=DEFAULT_STATE_DIR,
            show_default=True,
            envvar="ALBATROSS_TLS_STATE_DIR",
            help="Security state: anti-rollback (rollback.json) and replay (replay.journal); "
            "created if missing.  Also $ALBATROSS_TLS_STATE_DIR.",
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
    from cryptography import x509  # only needed here

    try:
        anchor = x509.load_pem_x509_certificates(ca_file.read_bytes())[0]
    except (OSError, ValueError) as exc:
        raise SecuritySetupError(f"cannot read the CA certificate {ca_file}: {exc}") from None
    options = SecurityOptions(state_dir, anchor, crl_dir, audit_log, audit_fsync, shared)
    try:
        return Security(options)
    except OSError as exc:
        raise SecuritySetupError(
            f"cannot open the security state in {state_dir}: {exc.strerror or exc} "
            "(option --state-dir)"
        ) from None
    except AlbatrossError as exc:
        raise SecuritySetupError(exc.message) from None
