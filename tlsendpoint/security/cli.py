"""``albatross-audit``: verify the endpoint's audit log, explain a decision offline.

Data goes to stdout, diagnostics to stderr; exit 0 when the log verifies (or
the request would be allowed), 1 when it does not, 2 for usage errors.
"""

from __future__ import annotations

from pathlib import Path

import click

from tlsendpoint.security.audit import AuditError, verify

__all__ = ["main", "verify_command"]


@click.group(help="Tools for the endpoint's security records.")
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
    """Check that FILE's hash chain is intact; name the first bad line."""
    try:
        result = verify(file, head)
    except AuditError as exc:
        click.echo(f"{file}: {exc.message}", err=True)
        raise SystemExit(exc.exit_code) from None
    click.echo(f"{file}: ok, {result.lines} lines, head {result.head}")
