"""The project's one error hierarchy.

Every error we raise on purpose derives from :class:`AlbatrossError`. The split
follows h11's Local/RemoteProtocolError:

* :class:`ParseError` - the *peer* sent bytes we refuse (a frame, a DER
  message, a certificate extension).  Decoders of untrusted bytes raise this
  and nothing else.
* :class:`UsageError` - *we* (or our user) asked for something invalid: a bad
  name, a value that cannot be encoded, a command line that makes no sense.
  :class:`FileError` is the usage error of a file we were pointed at that
  cannot be read (missing, unreadable, too big).
* :class:`PolicyError` - a request that is well formed but not allowed by a
  resource policy.

Exit codes.  Each class carries the code of the command-line tool that stops
on it, in that tool's conventions.  The core's classes follow albatross's
(cmdliner's :class:`ExitStatus`): 124 for input or a command line the user must
fix, 125 for a failure nobody classified; albatross-client's 116-122 are on the
client's classes (:mod:`client.errors`), the endpoint's 125 on its setup errors.
Every CLI turns an error into its exit status with :func:`exit_code`, one call
per CLI, given the codes that CLI uses for other packages' errors (our own tools
answer 1 or 2 where albatross's would say 124); the README lists them per CLI.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

__all__ = [
    "AlbatrossError",
    "ExitStatus",
    "FileError",
    "ParseError",
    "PolicyError",
    "UsageError",
    "exit_code",
]


class ExitStatus(enum.IntEnum):
    """albatross's exit codes: albatross-client's (client/albatross_client.ml), cmdliner's."""

    SUCCESS = 0
    CHAIN_FAILURE = 116
    REMOTE_COMMAND_FAILED = 117
    HTTP_FAILED = 118
    LOCAL_AUTHENTICATION_FAILED = 119
    REMOTE_AUTHENTICATION_FAILED = 120
    COMMUNICATION_FAILED = 121
    CONNECT_FAILED = 122
    #: cmdliner's ``cli_error``: a command line, or input named on it, to fix.
    CLI_FAILED = 124
    #: cmdliner's ``internal_error``: albatross's tools exit so when they cannot start.
    INTERNAL_ERROR = 125


class AlbatrossError(Exception):
    """Root of every error this project raises on purpose."""

    #: Exit code of a command-line tool that stops because of this error (see above):
    #: an error nobody classified is albatross's internal error.
    exit_code: int = int(ExitStatus.INTERNAL_ERROR)

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ParseError(AlbatrossError):
    """Untrusted bytes do not decode; the message names the field and the problem."""

    exit_code = int(ExitStatus.CLI_FAILED)  # the input named on the command line is unusable

    def within(self, context: str) -> ParseError:
        """Return a copy whose message is prefixed by the enclosing field."""
        return type(self)(f"{context}: {self.message}")


class UsageError(AlbatrossError):
    """A value or request that the caller should not have made."""

    exit_code = int(ExitStatus.CLI_FAILED)


class FileError(UsageError):
    """A file we were pointed at cannot be read; ``reason`` is the cause without the file."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class PolicyError(AlbatrossError):
    """A request that a resource policy does not allow."""

    exit_code = int(ExitStatus.CLI_FAILED)  # albatross-client refuses it before connecting


def exit_code(exc: AlbatrossError, codes: Mapping[type[AlbatrossError], int] | None = None) -> int:
    """*exc*'s exit status in a CLI whose conventions for other packages' errors are *codes*.

    The code of the nearest class of *exc* (its method resolution order) that *codes*
    lists, else the code its own class carries.  alba and the endpoint pass no
    *codes*: they follow albatross's conventions, which the classes carry.
    """
    for cls in type(exc).__mro__:
        if codes is not None and cls in codes:
            return codes[cls]
    return int(exc.exit_code)
