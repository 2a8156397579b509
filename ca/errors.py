"""Errors of the CA toolkit, in the project's one hierarchy (core.errors).

albatross-client ends every provisioning failure (generate, sign, a bad CA key
or CSR) with exit code 124 ("Cli_failed"), so the errors raised here carry 124.
Errors from the protocol core (a policy that is not within its parent, an
unusable policy, a CSR extension that does not decode) are mapped to the same
code by the CLI, see :data:`CLI_FAILED`.
"""

from __future__ import annotations

from core.errors import UsageError

__all__ = ["CLI_FAILED", "StoreError"]

#: albatross-client's exit code for command-line, signing and generation errors.
CLI_FAILED = 124


class StoreError(UsageError):
    """A file the CA reads or writes is missing, unreadable, malformed or already there."""

    exit_code = CLI_FAILED
