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

Each class carries the exit code the command-line tools use for it, so the
CLI layer never has to guess.
"""

from __future__ import annotations

__all__ = [
    "AlbatrossError",
    "FileError",
    "ParseError",
    "PolicyError",
    "UsageError",
]


class AlbatrossError(Exception):
    """Root of every error this project raises on purpose."""

    #: Exit code of a command-line tool that stops because of this error.
    exit_code: int = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ParseError(AlbatrossError):
    """Untrusted bytes do not decode; the message names the field and the problem."""

    exit_code = 2

    def within(self, context: str) -> ParseError:
        """Return a copy whose message is prefixed by the enclosing field."""
        return type(self)(f"{context}: {self.message}")


class UsageError(AlbatrossError):
    """A value or request that the caller should not have made."""

    exit_code = 2


class FileError(UsageError):
    """A file we were pointed at cannot be read; ``reason`` is the cause without the file."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class PolicyError(AlbatrossError):
    """A request that a resource policy does not allow."""

    exit_code = 3
