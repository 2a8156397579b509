"""Errors of the CA toolkit, in the project's one hierarchy (core.errors).

albatross-client ends every provisioning failure (generate, sign, a bad CA key
or CSR) with exit code 124 ("Cli_failed").  The toolkit's own error is a
:class:`core.errors.UsageError` and so carries 124, like the core's errors it
lets through (a file that cannot be read or parsed, a policy that is not within
its parent, a CSR extension that does not decode); the commands exit with the
code of the error's class (:func:`core.errors.exit_code`), as alba does.
"""

from __future__ import annotations

from core.errors import UsageError

__all__ = ["StoreError"]


class StoreError(UsageError):
    """A file the CA reads or writes is missing, unreadable, malformed or already there."""
