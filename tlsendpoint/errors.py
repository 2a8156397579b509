"""The endpoint's one error for "cannot start", with albatross's exit code.

albatross-tls-endpoint exits 125 (cmdliner's internal error) when its setup
fails: a certificate or key it cannot use, a socket it cannot get, security
state it cannot open.  Those failures are :class:`SetupError` (the modules name
theirs: ``TLSSetupError``, ``ActivationError``, ``SecuritySetupError``), and the
CLI exits with the code the class carries (:func:`core.errors.exit_code`); a
command line click refuses exits 124, like cmdliner's.
"""

from __future__ import annotations

from core.errors import AlbatrossError, ExitStatus

__all__ = ["SetupError"]


class SetupError(AlbatrossError):
    """The endpoint cannot start with this configuration; ``message`` says what to fix."""

    exit_code = int(ExitStatus.INTERNAL_ERROR)
